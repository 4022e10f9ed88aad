//! Hostile and broken components, written as WAT text so that each is a few
//! lines and compiles in milliseconds: each is stopped or refused with the
//! right error, and none disturbs the host.

use evald_plugin_host::{Limits, LoadError, PluginError, PluginKind};

use super::{assert_stopped_at, host, observation, quick_limits};

/// A component of the `scorer` world whose core `score` function (taking a
/// pointer to its lowered arguments, returning a pointer to its result) has
/// `body`. The result area is at address 16: discriminant at 16, the score's
/// value at 24, the note's option discriminant at 32.
fn scorer(body: &str) -> String {
    scorer_for_version("0.1.0", body)
}

fn scorer_for_version(version: &str, body: &str) -> String {
    format!(
        r#"
(component
  (import "evald:plugin/types@{version}" (instance $types
    (type $message-def (record (field "role" string) (field "content" string)))
    (export "message" (type $message (eq $message-def)))
    (type $case-def (record
      (field "id" string)
      (field "messages" (list $message))
      (field "reference" (option string))))
    (export "case" (type $case (eq $case-def)))
    (type $observation-def (record
      (field "case" $case)
      (field "target" string)
      (field "response" string)
      (field "latency-ms" f64)
      (field "ttft-ms" (option f64))
      (field "prompt-tokens" (option u32))
      (field "completion-tokens" (option u32))
      (field "finish-reason" (option string))
      (field "error" (option string))))
    (export "observation" (type $observation (eq $observation-def)))
    (type $score-def (record (field "value" f64) (field "note" (option string))))
    (export "score" (type $score (eq $score-def)))))
  (alias export $types "observation" (type $observation))
  (alias export $types "score" (type $score))
  (core module $m
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 1024))
    ;; A bump allocator: enough for the host to lower one small observation.
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $ptr i32)
      (local.set $ptr
        (i32.and
          (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get 2))))
      (global.set $heap (i32.add (local.get $ptr) (local.get 3)))
      (local.get $ptr))
    (func $recurse (param i32) (result i32)
      (call $recurse (i32.add (local.get 0) (i32.const 1))))
    (func (export "score") (param i32) (result i32)
      {body}))
  (core instance $i (instantiate $m))
  (func $score (param "observation" $observation) (param "config" string)
    (result (result $score (error string)))
    (canon lift (core func $i "score") (memory (core memory $i "memory"))
      (realloc (core func $i "realloc"))))
  (export "score" (func $score)))
"#
    )
}

/// A body returning `ok(score {{ value, note: none }})`.
fn returning(value: &str) -> String {
    format!(
        "(i32.store8 (i32.const 16) (i32.const 0))
         (f64.store (i32.const 24) (f64.const {value}))
         (i32.store8 (i32.const 32) (i32.const 0))
         (i32.const 16)"
    )
}

async fn score_with(wat: &str, limits: Limits) -> Result<f64, PluginError> {
    let (host, _dir) = host();
    let plugin = host
        .load_bytes("fixture.wasm", wat.as_bytes(), PluginKind::Scorer)
        .unwrap();
    plugin
        .score(&observation("x", Some("y")), "{}", limits)
        .await
        .map(|score| score.value)
}

#[tokio::test]
async fn the_fixture_itself_scores() {
    assert_eq!(
        score_with(&scorer(&returning("0.25")), quick_limits()).await,
        Ok(0.25)
    );
}

#[tokio::test]
async fn an_endless_loop_stops_at_its_time_limit() {
    let limits = quick_limits();
    let wat = scorer("(loop $forever (br $forever)) (i32.const 16)");
    let (host, _dir) = host();
    let plugin = host
        .load_bytes("fixture.wasm", wat.as_bytes(), PluginKind::Scorer)
        .unwrap();
    // Timed around the call alone: loading (compiling) is not part of the limit.
    let start = std::time::Instant::now();
    let outcome = plugin
        .score(&observation("x", Some("y")), "{}", limits)
        .await
        .map(|score| score.value);
    assert_stopped_at(start, limits.timeout);
    assert_eq!(outcome, Err(PluginError::Timeout(limits.timeout)));
}

#[tokio::test]
async fn a_memory_bomb_stops_at_its_memory_limit() {
    let limits = quick_limits();
    let wat = scorer("(loop $more (drop (memory.grow (i32.const 16))) (br $more)) (i32.const 16)");
    assert_eq!(
        score_with(&wat, limits).await,
        Err(PluginError::MemoryLimit(limits.memory_bytes))
    );
}

#[tokio::test]
async fn a_trap_is_reported_with_its_reason() {
    let err = score_with(&scorer("unreachable"), quick_limits())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        PluginError::Trap("wasm `unreachable` instruction executed".into())
    );
    assert!(!err.to_string().contains('\n'), "one line: {err}");
}

#[tokio::test]
async fn endless_recursion_overflows_the_bounded_stack() {
    let err = score_with(&scorer("(call $recurse (i32.const 0))"), quick_limits())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::Trap(reason) if reason == "call stack exhausted"),
        "{err:?}"
    );
}

#[tokio::test]
async fn nan_and_out_of_range_scores_are_refused() {
    for (value, reason) in [
        ("nan", "NaN is not a score"),
        ("7.0", "7 is outside 0..=1"),
        ("-0.5", "-0.5 is outside 0..=1"),
        ("inf", "inf is outside 0..=1"),
    ] {
        assert_eq!(
            score_with(&scorer(&returning(value)), quick_limits()).await,
            Err(PluginError::BadScore(reason.into())),
            "value {value}"
        );
    }
}

#[tokio::test]
async fn a_component_of_another_world_is_refused_with_what_it_exports() {
    let (host, _dir) = host();
    let wat = r#"
(component
  (core module $m (func (export "hello") (result i32) (i32.const 1)))
  (core instance $i (instantiate $m))
  (func $hello (result u32) (canon lift (core func $i "hello")))
  (export "hello" (func $hello)))
"#;
    let err = host
        .load_bytes("hello.wasm", wat.as_bytes(), PluginKind::Scorer)
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "plugin hello.wasm exports no evald:plugin world (its functions: hello) \
         but a scorer was expected"
    );
}

#[tokio::test]
async fn a_plugin_for_another_wit_version_is_refused_with_the_version() {
    let (host, _dir) = host();
    let wat = scorer_for_version("0.2.0", &returning("1.0"));
    let err = host
        .load_bytes("future.wasm", wat.as_bytes(), PluginKind::Scorer)
        .err()
        .unwrap();
    assert!(
        matches!(&err, LoadError::WrongVersion { found, .. } if found == "0.2.0"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "plugin future.wasm was built for evald:plugin@0.2.0; this evald hosts 0.1.0"
    );
    // A later patch of the same series is accepted.
    let wat = scorer_for_version("0.1.3", &returning("1.0"));
    assert!(
        host.load_bytes("patch.wasm", wat.as_bytes(), PluginKind::Scorer)
            .is_ok()
    );
}

#[tokio::test]
async fn a_scorer_with_another_signature_is_refused() {
    let (host, _dir) = host();
    let wat = r#"
(component
  (core module $m (func (export "score") (result i32) (i32.const 1)))
  (core instance $i (instantiate $m))
  (func $score (result u32) (canon lift (core func $i "score")))
  (export "score" (func $score)))
"#;
    let err = host
        .load_bytes("odd.wasm", wat.as_bytes(), PluginKind::Scorer)
        .err()
        .unwrap();
    assert!(
        matches!(&err, LoadError::WrongWorld { found, .. } if found.starts_with("a `score` function whose signature")),
        "{err:?}"
    );
}

#[tokio::test]
async fn core_modules_and_garbage_are_not_components() {
    let (host, _dir) = host();
    let module = b"\0asm\x01\0\0\0";
    let err = host
        .load_bytes("module.wasm", module, PluginKind::Scorer)
        .err()
        .unwrap();
    assert!(
        matches!(&err, LoadError::Invalid { reason, .. } if reason.contains("core WebAssembly module")),
        "{err:?}"
    );
    let err = host
        .load_bytes("junk.wasm", b"not wasm at all", PluginKind::Scorer)
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::Invalid { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unknown_import_is_named() {
    let (host, _dir) = host();
    let wat = r#"
(component
  (import "acme:net/http@1.0.0" (instance (export "get" (func (result u32)))))
  (core module $m (func (export "score") (result i32) (i32.const 1)))
  (core instance $i (instantiate $m))
  (func $score (result u32) (canon lift (core func $i "score")))
  (export "score" (func $score)))
"#;
    let err = host
        .load_bytes("net.wasm", wat.as_bytes(), PluginKind::Scorer)
        .err()
        .unwrap();
    assert!(
        matches!(&err, LoadError::Invalid { reason, .. } if reason.contains("acme:net/http@1.0.0")),
        "{err:?}"
    );
}
