//! The writer thread's end of its queue.

use super::tables::QUEUE;
use super::writer::Command;
use super::*;

/// The writer's end of the queue: gives back a record's slot ([`Writer::slots`]) as the writer
/// takes it, and closes the slots when the writer ends (senders then fail rather than wait).
pub(super) struct Inbox {
    pub(super) rx: mpsc::Receiver<Command>,
    pub(super) slots: Arc<tokio::sync::Semaphore>,
    /// [`Writer::awaited`]: counted down as the writer takes a flush, prune or close.
    pub(super) awaited: Arc<std::sync::atomic::AtomicUsize>,
}

impl Inbox {
    fn took(&self, c: Command) -> Command {
        self.slots.add_permits(c.records());
        if matches!(c, Command::Flush(_) | Command::Prune(..) | Command::Close) {
            self.awaited
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
        c
    }

    pub(super) fn blocking_recv(&mut self) -> Option<Command> {
        self.rx.blocking_recv().map(|c| self.took(c))
    }

    pub(super) fn try_recv(&mut self) -> Result<Command, mpsc::error::TryRecvError> {
        self.rx.try_recv().map(|c| self.took(c))
    }

    /// Whether a flush, prune or close waits in the queue: its sender waits for the commit.
    pub(super) fn awaited(&self) -> bool {
        self.awaited.load(std::sync::atomic::Ordering::Acquire) > 0
    }

    /// Records sent and not yet taken.
    pub(super) fn queued(&self) -> usize {
        QUEUE.saturating_sub(self.slots.available_permits())
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.slots.close();
    }
}
