//! The example plugins, built for wasm32-wasip2, do their jobs; the `nosy`
//! test plugin finds the sandbox empty and is stopped when it misbehaves.

use std::time::Duration;

use evald_plugin_host::{Limits, LoadError, PluginError, PluginKind};

use super::{assert_stopped_at, example, host, observation, quick_limits};

#[tokio::test]
async fn json_keys_scores_the_share_of_required_keys() {
    let (host, _dir) = host();
    let plugin = host
        .load(&example("json_keys"), PluginKind::Scorer)
        .unwrap();
    assert_eq!(plugin.name(), "json_keys");
    let config = r#"{"required": ["capital", "country"]}"#;
    let limits = Limits::default();

    let half = plugin
        .score(
            &observation(r#"{"capital": "Tokyo"}"#, None),
            config,
            limits,
        )
        .await
        .unwrap();
    assert_eq!(half.value, 0.5);
    assert_eq!(half.note.as_deref(), Some("missing: country"));

    let fenced = "```json\n{\"capital\": \"Tokyo\", \"country\": \"Japan\"}\n```";
    let full = plugin
        .score(&observation(fenced, None), config, limits)
        .await
        .unwrap();
    assert_eq!(full.value, 1.0);

    let prose = plugin
        .score(&observation("Tokyo.", None), config, limits)
        .await
        .unwrap();
    assert_eq!(prose.value, 0.0);
    assert_eq!(prose.note.as_deref(), Some("response is not a JSON object"));
}

#[tokio::test]
async fn a_config_that_does_not_parse_is_the_plugins_error() {
    let (host, _dir) = host();
    let plugin = host
        .load(&example("json_keys"), PluginKind::Scorer)
        .unwrap();
    let err = plugin
        .score(
            &observation("{}", None),
            r#"{"requird": []}"#,
            Limits::default(),
        )
        .await
        .unwrap_err();
    match &err {
        PluginError::Guest(reason) => assert!(reason.contains("invalid config"), "{reason}"),
        other => panic!("expected a guest error, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("plugin returned an error: invalid config")
    );
}

#[tokio::test]
async fn word_overlap_is_f1_against_the_reference() {
    let (host, _dir) = host();
    let plugin = host
        .load(&example("word_overlap"), PluginKind::Scorer)
        .unwrap();
    let limits = Limits::default();
    let reference = Some("Paris is the capital of France");

    let same = plugin
        .score(
            &observation("the CAPITAL of France is Paris!", reference),
            "{}",
            limits,
        )
        .await
        .unwrap();
    assert_eq!(same.value, 1.0);

    // 2 of 6 reference words in a 2-word answer: P = 1, R = 1/3, F1 = 0.5.
    let part = plugin
        .score(&observation("Paris, France", reference), "{}", limits)
        .await
        .unwrap();
    assert!((part.value - 0.5).abs() < 1e-9, "{}", part.value);
    let recall = plugin
        .score(
            &observation("Paris, France", reference),
            r#"{"metric": "recall"}"#,
            limits,
        )
        .await
        .unwrap();
    assert!((recall.value - 1.0 / 3.0).abs() < 1e-9, "{}", recall.value);

    let none = plugin
        .score(&observation("Berlin", reference), "{}", limits)
        .await
        .unwrap();
    assert_eq!(none.value, 0.0);

    let err = plugin
        .score(&observation("Paris", None), "{}", limits)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        PluginError::Guest("the case has no reference to compare with".into())
    );
}

#[tokio::test]
async fn arith_generates_the_same_questions_for_the_same_seed() {
    let (host, _dir) = host();
    let plugin = host.load(&example("arith"), PluginKind::Generator).unwrap();
    let limits = Limits::default();
    let cases = plugin
        .generate(r#"{"count": 20, "seed": 7}"#, limits)
        .await
        .unwrap();
    assert_eq!(cases.len(), 20);
    let again = plugin
        .generate(r#"{"count": 20, "seed": 7}"#, limits)
        .await
        .unwrap();
    assert_eq!(cases, again);
    let other = plugin
        .generate(r#"{"count": 20, "seed": 8}"#, limits)
        .await
        .unwrap();
    assert_ne!(cases, other);

    let mut ids: Vec<&str> = cases.iter().map(|case| case.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 20, "ids are unique");
    for case in &cases {
        // "What is A op B? ..." and the reference is the answer.
        let [message] = case.messages.as_slice() else {
            panic!("one message per case: {case:?}");
        };
        assert_eq!(message.role, "user");
        let question = message.content.strip_prefix("What is ").unwrap();
        let expr = question.split('?').next().unwrap();
        let parts: Vec<&str> = expr.split(' ').collect();
        let (a, b): (i64, i64) = (parts[0].parse().unwrap(), parts[2].parse().unwrap());
        let answer = match parts[1] {
            "+" => a + b,
            "-" => a - b,
            "*" => a * b,
            op => panic!("unexpected operator {op}"),
        };
        assert_eq!(case.reference.as_deref(), Some(answer.to_string().as_str()));
    }

    let err = plugin
        .generate(r#"{"count": 1000000}"#, limits)
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::Guest(_)), "{err:?}");
}

#[tokio::test]
async fn a_generator_is_refused_where_a_scorer_is_expected() {
    let (host, _dir) = host();
    let err = host
        .load(&example("arith"), PluginKind::Scorer)
        .err()
        .expect("arith is not a scorer");
    assert!(
        matches!(&err, LoadError::WrongWorld { expected: PluginKind::Scorer, found, .. }
            if found == "evald:plugin/generator@0.1.0"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "plugin arith.wasm exports evald:plugin/generator@0.1.0 but a scorer was expected"
    );

    let scorer = host.load(&example("length"), PluginKind::Scorer).unwrap();
    let err = scorer.generate("{}", Limits::default()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin is a scorer, not a generator",
        "calling the other world's function is an error, not a panic"
    );
}

#[tokio::test]
async fn a_missing_plugin_file_is_reported_by_path() {
    let (host, dir) = host();
    let path = dir.path().join("no-such-plugin.wasm");
    let err = host.load(&path, PluginKind::Scorer).err().unwrap();
    assert!(matches!(err, LoadError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-plugin.wasm"));
}

#[tokio::test]
async fn a_plugin_sees_no_files_environment_network_or_clock() {
    let (host, _dir) = host();
    let nosy = host.load(&example("nosy"), PluginKind::Scorer).unwrap();
    let score = nosy
        .score(&observation("x", None), "{}", Limits::default())
        .await
        .unwrap();
    let note = score.note.unwrap_or_default();
    assert_eq!(score.value, 1.0, "the plugin saw something: {note}");
    for expected in [
        r#""env":0"#,
        r#""args":0"#,
        r#""passwd":false"#,
        r#""root_listing":null"#,
        r#""tcp":false"#,
        r#""dns":false"#,
        r#""clock_secs":0"#,
    ] {
        assert!(note.contains(expected), "{expected} not in {note}");
    }
}

#[tokio::test]
async fn a_plugin_sleeping_in_a_host_call_is_stopped_at_its_time_limit() {
    let (host, _dir) = host();
    let nosy = host.load(&example("nosy"), PluginKind::Scorer).unwrap();
    let limits = quick_limits();
    let start = std::time::Instant::now();
    let err = nosy
        .score(
            &observation("x", None),
            r#"{"mode": "sleep", "seconds": 3600}"#,
            limits,
        )
        .await
        .unwrap_err();
    assert_stopped_at(start, limits.timeout);
    assert_eq!(err, PluginError::Timeout(limits.timeout));
}

#[tokio::test]
async fn a_rust_plugin_allocating_without_end_hits_its_memory_limit() {
    let (host, _dir) = host();
    let nosy = host.load(&example("nosy"), PluginKind::Scorer).unwrap();
    let limits = Limits {
        timeout: Duration::from_secs(10),
        memory_bytes: 16 * 1024 * 1024,
    };
    let err = nosy
        .score(&observation("x", None), r#"{"mode": "hog"}"#, limits)
        .await
        .unwrap_err();
    assert_eq!(err, PluginError::MemoryLimit(limits.memory_bytes));
}

#[tokio::test]
async fn a_panic_is_a_trap_and_the_next_call_gets_a_fresh_instance() {
    let (host, _dir) = host();
    let nosy = host.load(&example("nosy"), PluginKind::Scorer).unwrap();
    let limits = Limits::default();
    let err = nosy
        .score(&observation("x", None), r#"{"mode": "panic"}"#, limits)
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::Trap(_)), "{err:?}");
    let score = nosy
        .score(&observation("x", None), "{}", limits)
        .await
        .unwrap();
    assert_eq!(score.value, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_plugin_serves_concurrent_calls_from_many_tasks() {
    let (host, _dir) = host();
    let plugin = host.load(&example("length"), PluginKind::Scorer).unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let plugin = plugin.clone();
            tokio::spawn(async move {
                let response = "y".repeat(i);
                plugin
                    .score(
                        &observation(&response, None),
                        r#"{"min": 1, "max": 10}"#,
                        Limits::default(),
                    )
                    .await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let score = task.await.unwrap().unwrap();
        let expected = if (1..=10).contains(&i) { 1.0 } else { 0.0 };
        assert_eq!(score.value, expected, "call {i}");
    }
}

#[tokio::test]
async fn a_chatty_plugins_output_goes_to_the_log_under_its_name_capped() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (host, _dir) = host();
    let nosy = host.load(&example("nosy"), PluginKind::Scorer).unwrap();
    // Far more than the 16 KiB kept per call, and more than a 64 KiB pipe
    // holds: the plugin is neither blocked nor trapped.
    let score = nosy
        .score(
            &observation("x", None),
            r#"{"mode": "print", "bytes": 300000}"#,
            Limits::default(),
        )
        .await
        .unwrap();
    assert_eq!(score.value, 1.0);

    let text = logs.text();
    let line = text
        .lines()
        .find(|line| line.contains("stream=\"stdout\""))
        .unwrap_or_else(|| panic!("no stdout line in the log: {text:.400}"));
    assert!(line.contains("plugin=\"nosy\""), "{line:.300}");
    assert!(line.contains("dropped_bytes=283616"), "{line:.300}");
    let kept = line.chars().filter(|c| *c == 'x').count();
    assert!(
        (16 * 1024..16 * 1024 + 10).contains(&kept),
        "16 KiB kept, got {kept}"
    );
}

/// A log sink the test can read back.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
