//! One loaded plugin and its calls.
//!
//! A call runs on an instance taken from the plugin's small pool of warm
//! instances, or on a fresh one made from the pre-instantiated component
//! (~10–30 µs). An instance goes back to the pool only after a call that
//! returned normally (a score, a generated list, or the plugin's own `err`);
//! after a trap, a timeout or a memory overrun its store is thrown away,
//! since a trapped instance cannot be entered again and its state is
//! suspect. Reuse is what makes a trivial call cost about a microsecond
//! instead of an instantiation; it also means a plugin must not rely on its
//! globals being fresh, or being kept, between calls.

use std::sync::{Arc, Mutex, PoisonError};

use wasmtime::Store;

use crate::bindings::generator::evald::plugin::types as generated;
use crate::bindings::generator::{Generator, GeneratorPre};
use crate::bindings::scorer::evald::plugin::types as wit;
use crate::bindings::scorer::{Scorer, ScorerPre};
use crate::error::PluginError;
use crate::error::one_line;
use crate::sandbox::{self, Sandbox, Stop};
use crate::{Case, Limits, Message, Observation, PluginKind, Score};

/// Idle warm instances kept per plugin. Each holds its linear memory (about
/// 1 MiB for a small Rust plugin), so this bounds a plugin's idle footprint;
/// more concurrent calls than this still run, on fresh instances.
const MAX_IDLE: usize = 8;

/// A warm instance holding more linear memory than this is dropped after
/// its call instead of pooled: a plugin that once needed a lot must not keep
/// `MAX_IDLE` times its memory limit resident while idle.
const MAX_IDLE_MEMORY: u64 = 8 * 1024 * 1024;

/// The longest plugin-supplied text (error reason or score note) kept, in
/// bytes; the rest is cut so one plugin cannot bloat every request record.
const MAX_TEXT: usize = 4096;

/// A loaded plugin, ready to call. Cheap to clone (clones share the warm
/// instance pool); `Send + Sync`, so one plugin can serve concurrent calls.
///
/// Calls must run inside a tokio runtime with timers enabled: the time
/// limit falls back to a tokio timer while a plugin waits in a host call.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<Inner>,
}

struct Inner {
    /// The file stem, used in logs.
    name: String,
    /// Whether loading avoided a compile.
    from_cache: bool,
    /// The pre-instantiated component, typed by world.
    pre: Pre,
    /// Instances whose last call returned normally, ready for the next.
    idle: Mutex<Vec<Warm>>,
    /// Keeps the engine and its epoch ticker alive as long as the plugin.
    shared: Arc<dyn EngineHandle>,
}

/// The host's side a plugin holds on to: the engine its stores are made in. Holding it keeps
/// the host's epoch ticker running for as long as the plugin can be called.
pub(crate) trait EngineHandle: Send + Sync {
    /// The one engine of the host.
    fn engine(&self) -> &wasmtime::Engine;
}

/// A component linked and type-checked against one world.
pub(crate) enum Pre {
    Scorer(ScorerPre<Sandbox>),
    Generator(GeneratorPre<Sandbox>),
}

/// A live instance: its store and the typed handle to its exports.
struct Warm {
    store: Store<Sandbox>,
    exports: Exports,
}

enum Exports {
    Scorer(Scorer),
    Generator(Generator),
}

/// One call's arguments, borrowed from the caller.
enum Request<'a> {
    Score(wit::Observation<'a>, &'a str),
    Generate(&'a str),
}

/// One call's result as the guest returned it.
enum Response {
    Score(Result<wit::Score, String>),
    Generate(Result<Vec<generated::Case>, String>),
}

impl Plugin {
    pub(crate) fn new(
        shared: Arc<dyn EngineHandle>,
        name: &str,
        from_cache: bool,
        pre: Pre,
    ) -> Plugin {
        Plugin {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                from_cache,
                pre,
                idle: Mutex::new(Vec::new()),
                shared,
            }),
        }
    }

    /// The plugin's file stem (`json-keys` for `json-keys.wasm`), as used in
    /// logs.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether loading found the plugin already compiled (on disk or in
    /// memory) rather than compiling it.
    pub fn from_cache(&self) -> bool {
        self.inner.from_cache
    }

    /// The world the plugin was loaded as.
    pub fn kind(&self) -> PluginKind {
        match self.inner.pre {
            Pre::Scorer(_) => PluginKind::Scorer,
            Pre::Generator(_) => PluginKind::Generator,
        }
    }

    /// Scores one observation. `config_json` is the scorer's job config as
    /// JSON (`{}` for none). The returned score is checked: NaN or a value
    /// outside 0..=1 is [`PluginError::BadScore`].
    pub async fn score(
        &self,
        observation: &Observation,
        config_json: &str,
        limits: Limits,
    ) -> Result<Score, PluginError> {
        self.expect_kind(PluginKind::Scorer)?;
        let messages = borrow_messages(&observation.case.messages);
        let observation = borrow_observation(observation, &messages);
        match self
            .call(Request::Score(observation, config_json), limits)
            .await?
        {
            Response::Score(Ok(score)) => check_score(score),
            Response::Score(Err(reason)) => Err(PluginError::Guest(clip(&one_line(&reason)))),
            Response::Generate(_) => Err(self.wrong_kind(PluginKind::Scorer)),
        }
    }

    /// Produces cases. `config_json` is the generator's job config as JSON
    /// (`{}` for none). The cases are returned as the plugin made them; the
    /// caller checks ids and the like as it does for cases from job files.
    pub async fn generate(
        &self,
        config_json: &str,
        limits: Limits,
    ) -> Result<Vec<Case>, PluginError> {
        self.expect_kind(PluginKind::Generator)?;
        match self.call(Request::Generate(config_json), limits).await? {
            Response::Generate(Ok(cases)) => Ok(cases.into_iter().map(from_wit).collect()),
            Response::Generate(Err(reason)) => Err(PluginError::Guest(clip(&one_line(&reason)))),
            Response::Score(_) => Err(self.wrong_kind(PluginKind::Generator)),
        }
    }

    fn expect_kind(&self, expected: PluginKind) -> Result<(), PluginError> {
        if self.kind() == expected {
            Ok(())
        } else {
            Err(self.wrong_kind(expected))
        }
    }

    fn wrong_kind(&self, expected: PluginKind) -> PluginError {
        PluginError::WrongKind {
            expected,
            found: self.kind(),
        }
    }

    /// Runs one call under `limits` on a warm or fresh instance, and sorts
    /// out how it ended.
    async fn call(&self, request: Request<'_>, limits: Limits) -> Result<Response, PluginError> {
        let (mut store, mut exports) = match self.take_idle(limits.memory_bytes) {
            Some(warm) => (warm.store, Some(warm.exports)),
            None => (
                sandbox::new_store(self.inner.shared.engine(), limits.memory_bytes),
                None,
            ),
        };
        let deadline = sandbox::arm(&mut store, limits.timeout);
        // The epoch callback stops a guest that computes too long; this
        // timer stops one that waits too long inside a host call (a WASI
        // sleep), where no epoch check runs.
        let deadline = tokio::time::Instant::from_std(deadline);
        let outcome = tokio::time::timeout_at(deadline, async {
            let exports = match &mut exports {
                Some(exports) => exports,
                None => exports.insert(self.instantiate(&mut store).await?),
            };
            invoke(&mut store, exports, request).await
        })
        .await;
        store.data().flush_output(&self.inner.name);
        match outcome {
            Ok(Ok(response)) => {
                if let Some(exports) = exports {
                    self.put_idle(Warm { store, exports });
                }
                Ok(response)
            }
            Ok(Err(error)) => {
                tracing::debug!(
                    target: "evald::plugin",
                    plugin = %self.inner.name,
                    error = ?error,
                    "plugin call failed"
                );
                Err(match store.data().stop() {
                    Some(Stop::Timeout) => PluginError::Timeout(limits.timeout),
                    Some(Stop::Memory) => PluginError::MemoryLimit(limits.memory_bytes),
                    None => PluginError::Trap(trap_reason(&error)),
                })
            }
            Err(_elapsed) => Err(PluginError::Timeout(limits.timeout)),
        }
    }

    async fn instantiate(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<Exports> {
        Ok(match &self.inner.pre {
            Pre::Scorer(pre) => Exports::Scorer(pre.instantiate_async(store).await?),
            Pre::Generator(pre) => Exports::Generator(pre.instantiate_async(store).await?),
        })
    }

    /// An idle instance made with the same memory cap, if any.
    fn take_idle(&self, memory_bytes: u64) -> Option<Warm> {
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let index = idle
            .iter()
            .rposition(|warm| warm.store.data().memory_cap() == memory_bytes)?;
        Some(idle.swap_remove(index))
    }

    fn put_idle(&self, warm: Warm) {
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE && warm.store.data().memory_used() <= MAX_IDLE_MEMORY {
            idle.push(warm);
        }
    }
}

/// Calls the export `request` asks for.
async fn invoke(
    store: &mut Store<Sandbox>,
    exports: &Exports,
    request: Request<'_>,
) -> wasmtime::Result<Response> {
    match (exports, request) {
        (Exports::Scorer(scorer), Request::Score(observation, config)) => Ok(Response::Score(
            scorer.call_score(store, observation, config).await?,
        )),
        (Exports::Generator(generator), Request::Generate(config)) => Ok(Response::Generate(
            generator.call_generate(store, config).await?,
        )),
        // `score` and `generate` check the kind before calling.
        _ => wasmtime::bail!("call does not match the plugin's world"),
    }
}

/// The host's check of a returned score.
fn check_score(score: wit::Score) -> Result<Score, PluginError> {
    if score.value.is_nan() {
        return Err(PluginError::BadScore("NaN is not a score".into()));
    }
    if !(0.0..=1.0).contains(&score.value) {
        return Err(PluginError::BadScore(format!(
            "{} is outside 0..=1",
            score.value
        )));
    }
    Ok(Score {
        value: score.value,
        note: score.note.map(|note| clip(&note)),
    })
}

/// A trap's reason in one line: the trap code when there is one (wasmtime's
/// own text carries a multi-line wasm backtrace).
fn trap_reason(error: &wasmtime::Error) -> String {
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        let text = trap.to_string();
        return text.strip_prefix("wasm trap: ").unwrap_or(&text).to_owned();
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return format!("called exit({})", exit.0);
    }
    clip(&one_line(&format!("{error:#}")))
}

/// Cuts plugin-supplied text to [`MAX_TEXT`] bytes on a char boundary.
fn clip(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The WIT view of the observation's messages, borrowing their text.
fn borrow_messages(messages: &[Message]) -> Vec<wit::Message<'_>> {
    messages
        .iter()
        .map(|message| wit::Message {
            role: &message.role,
            content: &message.content,
        })
        .collect()
}

/// The WIT view of an observation, borrowing its text: lowering copies the
/// strings straight into the plugin's memory.
fn borrow_observation<'a>(
    observation: &'a Observation,
    messages: &'a [wit::Message<'a>],
) -> wit::Observation<'a> {
    let case = &observation.case;
    wit::Observation {
        case: wit::Case {
            id: &case.id,
            messages,
            reference: case.reference.as_deref(),
        },
        target: &observation.target,
        response: &observation.response,
        latency_ms: observation.latency_ms,
        ttft_ms: observation.ttft_ms,
        prompt_tokens: observation.prompt_tokens,
        completion_tokens: observation.completion_tokens,
        finish_reason: observation.finish_reason.as_deref(),
        error: observation.error.as_deref(),
    }
}

fn from_wit(case: generated::Case) -> Case {
    Case {
        id: case.id,
        messages: case
            .messages
            .into_iter()
            .map(|message| Message {
                role: message.role,
                content: message.content,
            })
            .collect(),
        reference: case.reference,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_and_their_calls_can_move_between_threads() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        fn check(plugin: &Plugin, observation: &Observation) {
            send_sync(plugin);
            send(&plugin.score(observation, "{}", Limits::default()));
            send(&plugin.generate("{}", Limits::default()));
        }
        let _ = check;
        fn host_is_send_sync(host: &crate::Host) {
            send_sync(host);
        }
        let _ = host_is_send_sync;
    }

    #[test]
    fn scores_outside_the_unit_range_are_refused() {
        let score = |value| wit::Score { value, note: None };
        assert!(check_score(score(0.0)).is_ok());
        assert!(check_score(score(1.0)).is_ok());
        assert!(matches!(
            check_score(score(f64::NAN)),
            Err(PluginError::BadScore(_))
        ));
        assert!(matches!(
            check_score(score(7.0)),
            Err(PluginError::BadScore(reason)) if reason == "7 is outside 0..=1"
        ));
        assert!(matches!(
            check_score(score(-0.5)),
            Err(PluginError::BadScore(_))
        ));
    }

    #[test]
    fn clip_cuts_on_a_char_boundary() {
        let long = "é".repeat(MAX_TEXT);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_TEXT + "…".len());
        assert!(clipped.ends_with('…'));
    }
}
