//! The writer thread's end of its queue, and how long it waits there for records to commit
//! together (group commit).

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
        if c.awaited() {
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

/// The most records one commit takes.
pub(super) const BATCH: usize = QUEUE;

/// A commit of at least this many says records are streaming in (see `writer_loop`).
pub(super) const BUSY: usize = 64;

/// How long a record waits for company before its commit (group commit).
pub(super) struct Windows {
    /// A record arriving alone: a twentieth of the commit interval (5 ms by default), so a busy
    /// run costs one commit per few thousand records.
    alone: std::time::Duration,
    /// While records stream in (the last commit took [`BUSY`] or more): half the interval, or
    /// until half a batch has queued, so a commit and its fsync serve ~2,000 records of a
    /// benchmark at full speed; the record that waits longest is still committed within the
    /// interval (docs/benchmark.md). Half as many commits as quarter windows: −5 % of evald's
    /// CPU per request with the writer's hashing (A/B in docs/benchmark.md).
    busy: std::time::Duration,
}

impl Windows {
    pub(super) fn of(commit_interval: std::time::Duration) -> Windows {
        let alone = (commit_interval / 20).clamp(
            std::time::Duration::from_millis(1),
            std::time::Duration::from_millis(50),
        );
        Windows {
            alone,
            busy: (commit_interval / 2).max(alone),
        }
    }

    /// Waits out the window (the busy one if `busy`), until half a batch has queued, or until
    /// someone waits on a flush, prune or close, looking at the queue every `alone`.
    pub(super) fn gather(&self, inbox: &Inbox, busy: bool) {
        let until = std::time::Instant::now() + if busy { self.busy } else { self.alone };
        while inbox.queued() < BATCH / 2 && !inbox.awaited() {
            let now = std::time::Instant::now();
            if now >= until {
                break;
            }
            std::thread::sleep((until - now).min(self.alone));
        }
    }
}
