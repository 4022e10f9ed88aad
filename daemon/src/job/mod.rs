//! Job files, `jobs/NAME.toml`: parsed into raw serde structs (unknown keys rejected), then
//! validated once against the daemon config into a [`Job`]. Every problem is a [`Diagnostic`]
//! naming the file, the line and the key; a job with problems is not loaded, and the other jobs
//! are not affected.

mod adhoc;
pub mod alerts;
mod raw;
mod validate;
mod validate_alerts;
mod validate_plugins;

pub use adhoc::{ADHOC_JOB, AdhocSpec, InvalidAdhoc};
pub use evald_model::JobKind;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use croner::Cron;
use evald_model::Message;
use toml::Spanned;

use crate::config::{Config, MAX_FILE_BYTES, Num, parse_duration, parse_size};
use crate::diag::{Diagnostic, Source, read_text, whole_file};

/// One `targets` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// `endpoint/model`.
    Model {
        /// Endpoint name.
        endpoint: String,
        /// Model name as the endpoint knows it.
        model: String,
    },
    /// `endpoint/*`: every model the endpoint lists, expanded when a run starts.
    AllModels {
        /// Endpoint name.
        endpoint: String,
    },
}

impl TargetSpec {
    /// The endpoint's name.
    pub fn endpoint(&self) -> &str {
        match self {
            TargetSpec::Model { endpoint, .. } | TargetSpec::AllModels { endpoint } => endpoint,
        }
    }
}

impl std::fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetSpec::Model { endpoint, model } => write!(f, "{endpoint}/{model}"),
            TargetSpec::AllModels { endpoint } => write!(f, "{endpoint}/*"),
        }
    }
}

/// Chat-completion parameters; each is sent only when set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    /// 0..=2.
    pub temperature: Option<f64>,
    /// ≥ 1.
    pub max_tokens: Option<u32>,
    /// 0..=1.
    pub top_p: Option<f64>,
}

/// One prompt of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Unique within the job.
    pub id: String,
    /// What is sent.
    pub messages: Vec<Message>,
    /// The expected answer, if the job gives one (scorers compare against it).
    pub reference: Option<String>,
}

impl Case {
    /// A fingerprint of what decides this case's pass or fail besides the answer: its
    /// messages, its reference and the job's scorers with the settings that move a verdict
    /// (not weights, which move only the mean). Stored with each compare record
    /// (`metadata.case_hash`) so the watch leaves an edited case out of its test instead of
    /// blaming the model for the new outcome. Built from evald's own parsed form, each part
    /// length-prefixed, so reordering keys in the job file changes nothing.
    pub fn fingerprint(&self, scorers: &[ScorerSpec]) -> String {
        let mut h = xxhash_rust::xxh3::Xxh3Default::new();
        let mut put = |b: &[u8]| {
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        };
        for m in &self.messages {
            put(m.role.as_bytes());
            put(m.content.as_bytes());
        }
        put(b"reference");
        put(self.reference.as_deref().unwrap_or("\0").as_bytes());
        for s in scorers {
            put(b"scorer");
            put(s.name.as_bytes());
            put(&s.threshold.to_bits().to_le_bytes());
            let bits: [u8; 8];
            let (kind, parts): (&str, Vec<&[u8]>) = match &s.kind {
                ScorerKind::Contains(v) => ("contains", vec![opt(v)]),
                ScorerKind::IContains(v) => ("icontains", vec![opt(v)]),
                ScorerKind::Equals(v) => ("equals", vec![opt(v)]),
                ScorerKind::Regex(r) => ("regex", vec![r.as_str().as_bytes()]),
                ScorerKind::Json(keys) => ("json", keys.iter().map(|k| k.as_bytes()).collect()),
                ScorerKind::MaxLatency(ms) => {
                    bits = ms.to_bits().to_le_bytes();
                    ("max_latency", vec![&bits[..]])
                }
                ScorerKind::Plugin {
                    path, config_json, ..
                } => (
                    "plugin",
                    // The file's name: moving `plugins_dir` is no edit of the case.
                    vec![
                        path.file_name().map_or(&b""[..], |n| n.as_encoded_bytes()),
                        config_json.as_bytes(),
                    ],
                ),
            };
            put(kind.as_bytes());
            for p in parts {
                put(p);
            }
        }
        format!("{:016x}", h.digest())
    }
}

/// An optional setting's bytes; absent is a byte no text setting is.
fn opt(v: &Option<String>) -> &[u8] {
    v.as_deref().map_or(b"\0", str::as_bytes)
}

/// A validated cron schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// As written in the job file.
    pub expr: String,
    /// With a seconds field, as the scheduler takes it.
    pub expr6: String,
    /// Parsed, with the same settings the scheduler uses.
    pub cron: Cron,
}

impl Schedule {
    /// Next firing strictly after `after`.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }

    /// The schedule in words (`every 30 minutes`).
    pub fn describe(&self) -> String {
        self.cron.describe()
    }
}

pub use crate::config::cron::{parse_schedule, with_seconds};
pub use alerts::{AlertSpec, Condition, EventCondition, Metric, Op, parse_condition};

/// Memory and time limits of one plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Wall-clock budget per call (default 1 s).
    pub timeout: Duration,
    /// Linear memory cap (default 64 MiB).
    pub memory_bytes: u64,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            timeout: Duration::from_secs(1),
            memory_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A `[[generators]]` entry: a WebAssembly plugin that returns more cases.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorSpec {
    /// The `.wasm` file, resolved in `plugins_dir`.
    pub path: PathBuf,
    /// Line and column of its `plugin` key, for `evald check`.
    pub at: (usize, usize),
    /// The `config` table as JSON.
    pub config_json: String,
    /// Per-call limits.
    pub limits: PluginLimits,
}

/// What a scorer does.
#[derive(Debug, Clone)]
pub enum ScorerKind {
    /// The response contains `value` (default: the case's reference), case-sensitive.
    Contains(Option<String>),
    /// The response contains `value`, ignoring case.
    IContains(Option<String>),
    /// The trimmed response equals `value` (default: the reference).
    Equals(Option<String>),
    /// The response matches the regular expression.
    Regex(regex::Regex),
    /// The response is JSON (optionally an object with these keys).
    Json(Vec<String>),
    /// The request finished within `max_ms` (score falls off linearly up to twice that).
    MaxLatency(f64),
    /// A WebAssembly score plugin.
    Plugin {
        /// The `.wasm` file, resolved in `plugins_dir`.
        path: PathBuf,
        /// Line and column of its `plugin` key, for `evald check`.
        at: (usize, usize),
        /// The `config` table as JSON.
        config_json: String,
        /// Per-call limits.
        limits: PluginLimits,
    },
}

/// A `[[scorers]]` entry.
#[derive(Debug, Clone)]
pub struct ScorerSpec {
    /// Unique within the job; shown on the page and in exports.
    pub name: String,
    /// Weight in the weighted mean score.
    pub weight: f64,
    /// `passed = value >= threshold`.
    pub threshold: f64,
    /// What it checks.
    pub kind: ScorerKind,
}

/// The `[watch]` table of a compare job.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchSpec {
    /// What each run is tested against.
    pub baseline: Baseline,
    /// Level of the per-target McNemar test.
    pub significance: f64,
    /// A smaller drop in pass rate is never a regression.
    pub min_drop: f64,
    /// Re-send newly failing cases once before calling it.
    pub confirm: bool,
}

/// `[watch] baseline`: a pinned run (`evald baseline pin`) overrides it until unpinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// The last finished run.
    Previous,
    /// Each case's majority outcome over the last N finished runs.
    Rolling(usize),
    /// Only a pinned run; without one the verdict is `insufficient`.
    Pinned,
}

/// The `[load]` table of a benchmark job.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    /// Closed loop: this many workers, each sending the next request when its last one ends.
    pub concurrency: usize,
    /// Open loop: Poisson arrivals at this many requests/s (takes precedence over concurrency).
    pub rate: Option<f64>,
    /// Stop after this many measured requests per target…
    pub requests: Option<u64>,
    /// …or after this long per target.
    pub duration: Option<Duration>,
    /// Requests per target sent first and left out of the results.
    pub warmup: u64,
    /// A request within this TTFT (and passing every scorer) counts as good.
    pub slo_ttft_ms: Option<f64>,
    /// A request within this time per output token counts as good (streams).
    pub slo_tpot_ms: Option<f64>,
    /// A request within this end-to-end latency counts as good.
    pub slo_e2e_ms: Option<f64>,
    /// Retries of a failed request (connect error, 429, 5xx); 0 by default: the endpoint's
    /// `max_retries` does not apply to benchmarks.
    pub retries: u32,
}

impl Default for LoadSpec {
    /// A benchmark without `[load]`: one worker, 100 requests per target.
    fn default() -> Self {
        LoadSpec {
            concurrency: 1,
            rate: None,
            requests: Some(100),
            duration: None,
            warmup: 0,
            slo_ttft_ms: None,
            slo_tpot_ms: None,
            slo_e2e_ms: None,
            retries: 0,
        }
    }
}

/// A validated job.
#[derive(Debug, Clone)]
pub struct Job {
    /// The file stem.
    pub name: String,
    /// The job file.
    pub file: PathBuf,
    /// Free text shown on the page.
    pub description: String,
    /// Compare or benchmark.
    pub kind: JobKind,
    /// Cron schedule; absent = by hand only.
    pub schedule: Option<Schedule>,
    /// A disabled job is loaded and checked but never scheduled.
    pub enabled: bool,
    /// Where cases go.
    pub targets: Vec<TargetSpec>,
    /// Per-request timeout; the endpoint's when absent.
    pub timeout: Option<Duration>,
    /// Requests in flight at once (compare jobs).
    pub concurrency: usize,
    /// Each case is sent this many times to each target.
    pub repeat: u32,
    /// Send requests as SSE streams.
    pub stream: bool,
    /// Chat-completion parameters.
    pub params: Params,
    /// The file's cases.
    pub cases: Vec<Case>,
    /// Plugins that add cases at the start of each run.
    pub generators: Vec<GeneratorSpec>,
    /// How responses are scored.
    pub scorers: Vec<ScorerSpec>,
    /// Benchmark load, for benchmark jobs.
    pub load: Option<LoadSpec>,
    /// `[watch]`: each run tested against a baseline (compare jobs).
    pub watch: Option<WatchSpec>,
    /// `[[alerts]]`.
    pub alerts: Vec<AlertSpec>,
    /// Once the job's cost this calendar month (UTC) reaches this, scheduled runs are skipped.
    pub budget_usd_month: Option<f64>,
    /// Hash of the file's text: a reload of an unchanged file is a no-op.
    pub digest: u64,
}

/// The builtin scorer names.
pub const BUILTIN_SCORERS: [&str; 6] = [
    "contains",
    "icontains",
    "equals",
    "regex",
    "json",
    "max-latency",
];

/// The job name of a job file: its stem.
pub fn job_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Job {
    /// Reads and validates a job file against the config.
    pub fn load(path: &Path, config: &Config) -> Result<Job, Vec<Diagnostic>> {
        // `evald compare` stores its ad hoc runs under this name: a job file may not take it.
        if job_name(path) == ADHOC_JOB {
            return Err(vec![whole_file(
                path,
                format!(
                    "`{}` is the name `evald compare` stores its runs under: rename the file",
                    ADHOC_JOB
                ),
            )]);
        }
        let text = read_text(path, MAX_FILE_BYTES).map_err(|d| vec![d])?;
        Job::parse(path, &text, config)
    }

    /// Validates job text; `path` names the job and locates its problems.
    pub fn parse(path: &Path, text: &str, config: &Config) -> Result<Job, Vec<Diagnostic>> {
        let src = Source::new(path, text);
        let name = job_name(path);
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(vec![whole_file(
                path,
                format!(
                    "`{name}` is not a usable job name: name job files with letters, digits, `-`, `_` and `.` only"
                ),
            )]);
        }
        if text.trim().is_empty() {
            return Err(vec![whole_file(
                path,
                "empty job file: a job needs `targets` and at least one [[cases]] (or [[generators]])",
            )]);
        }
        let raw: raw::RawJob = toml::from_str(text).map_err(|e| vec![src.from_toml(&e)])?;
        let mut v = validate::Validator {
            src,
            errs: Vec::new(),
        };
        let mut job = v.job(name, raw, config);
        job.digest = xxhash_rust::xxh3::xxh3_64(text.as_bytes());
        if v.errs.is_empty() {
            Ok(job)
        } else {
            Err(v.errs)
        }
    }

    /// The per-request timeout for an endpoint.
    pub fn timeout_for(&self, endpoint: &crate::config::Endpoint) -> Duration {
        self.timeout.unwrap_or(endpoint.timeout)
    }
}

/// The result of loading a jobs directory: good jobs and the problems of bad files.
#[derive(Debug, Default)]
pub struct JobSet {
    /// Valid jobs by name.
    pub jobs: BTreeMap<String, Job>,
    /// Problems by job file.
    pub invalid: BTreeMap<PathBuf, Vec<Diagnostic>>,
}

/// Loads every `*.toml` file in the jobs directory (sorted, so the order is stable).
pub fn load_dir(config: &Config) -> JobSet {
    let mut set = JobSet::default();
    let entries = match std::fs::read_dir(&config.jobs_dir) {
        Ok(e) => e,
        Err(e) => {
            set.invalid.insert(
                config.jobs_dir.clone(),
                vec![whole_file(
                    &config.jobs_dir,
                    format!("cannot read the jobs directory: {e}"),
                )],
            );
            return set;
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_job_file(p))
        .collect();
    files.sort();
    for f in files {
        match Job::load(&f, config) {
            Ok(j) => {
                set.jobs.insert(j.name.clone(), j);
            }
            Err(d) => {
                set.invalid.insert(f, d);
            }
        }
    }
    set
}

/// Whether a path names a job file, existing or not: `*.toml`, not hidden (editors' swap and
/// temp files are).
pub fn is_job_file_name(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "toml")
        && p.file_name()
            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
}

/// Whether a path is an existing job file.
pub fn is_job_file(p: &Path) -> bool {
    is_job_file_name(p) && p.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            Path::new("/x/evald.toml"),
            "plugins_dir = \"/nonexistent\"\n[endpoints.gw]\nurl = \"http://127.0.0.1:1/v1\"\n[endpoints.sim]\nsimulated = {}\n",
        )
        .unwrap()
    }

    fn problems(text: &str) -> Vec<String> {
        match Job::parse(Path::new("jobs/j.toml"), text, &config()) {
            Ok(_) => vec![],
            Err(d) => d.iter().map(|d| d.to_string()).collect(),
        }
    }

    const GOOD: &str = "targets = [\"gw/a\", \"sim/*\"]\n[[cases]]\nid = \"x\"\nprompt = \"hi\"\n";

    /// What can move a verdict moves the fingerprint; a weight, the key order or a comment
    /// does not (they leave the pass or fail of every answer as it was).
    #[test]
    fn a_case_fingerprint_follows_what_decides_its_outcome() {
        let fp = |extra: &str, case: &str| {
            let text = format!("targets = [\"gw/a\"]\n{extra}[[cases]]\n{case}");
            let j = Job::parse(Path::new("jobs/j.toml"), &text, &config()).unwrap();
            j.cases[0].fingerprint(&j.scorers)
        };
        let case = "id = \"x\"\nprompt = \"hi\"\nreference = \"4\"\n";
        let scorer = "[[scorers]]\nbuiltin = \"equals\"\n";
        let base = fp(scorer, case);
        assert_eq!(base.len(), 16);
        assert_eq!(
            fp(
                "[[scorers]]\n# a comment\nweight = 2.0\nbuiltin = \"equals\"\n",
                "reference = \"4\"\nprompt = \"hi\"\nid = \"x\"\n"
            ),
            base
        );
        for (extra, c) in [
            (scorer, "id = \"x\"\nprompt = \"hi\"\nreference = \"5\"\n"),
            (scorer, "id = \"x\"\nprompt = \"hi!\"\nreference = \"4\"\n"),
            (scorer, "id = \"x\"\nprompt = \"hi\"\n"),
            ("[[scorers]]\nbuiltin = \"contains\"\n", case),
            ("[[scorers]]\nbuiltin = \"equals\"\nthreshold = 0.5\n", case),
            ("[[scorers]]\nbuiltin = \"equals\"\nname = \"e\"\n", case),
            (
                "[[scorers]]\nbuiltin = \"max-latency\"\nmax_ms = 100\n",
                case,
            ),
            ("", case),
        ] {
            assert_ne!(fp(extra, c), base, "{extra}{c}");
        }
    }

    #[test]
    fn a_good_job_validates_with_defaults() {
        let j = Job::parse(Path::new("jobs/j.toml"), GOOD, &config()).unwrap();
        assert_eq!(j.name, "j");
        assert_eq!(j.kind, JobKind::Compare);
        assert_eq!(j.concurrency, 4);
        assert_eq!(j.repeat, 1);
        assert!(!j.stream);
        assert!(j.enabled);
        assert_eq!(
            j.targets,
            vec![
                TargetSpec::Model {
                    endpoint: "gw".into(),
                    model: "a".into()
                },
                TargetSpec::AllModels {
                    endpoint: "sim".into()
                }
            ]
        );
        assert_eq!(j.cases[0].messages[0].role, "user");
    }

    #[test]
    fn a_job_file_may_not_take_the_name_compare_runs_are_stored_under() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compare.toml");
        std::fs::write(&path, GOOD).unwrap();
        let e = Job::load(&path, &config()).unwrap_err();
        assert!(e[0].to_string().contains("rename the file"), "{e:?}");
        std::fs::write(dir.path().join("fine.toml"), GOOD).unwrap();
        assert!(Job::load(&dir.path().join("fine.toml"), &config()).is_ok());
    }

    #[test]
    fn each_problem_has_its_own_error_with_file_and_line() {
        let table: &[(&str, &str)] = &[
            ("targets = [\"gw/a\"\n", "jobs/j.toml:1:"),
            (
                &format!("{GOOD}bogus = 1\n"),
                "jobs/j.toml:5:1: unknown field `bogus`",
            ),
            (
                &format!("schedule = \"every tuesday\"\n{GOOD}"),
                "jobs/j.toml:1:12: schedule: `every tuesday` is not a cron expression",
            ),
            (
                "targets = [\"nowhere/a\"]\n[[cases]]\nid = \"x\"\nprompt = \"p\"\n",
                "jobs/j.toml:1:12: targets[0]: unknown endpoint `nowhere`",
            ),
            (
                "targets = [\"gwa\"]\n[[cases]]\nid = \"x\"\nprompt = \"p\"\n",
                "targets[0]: `gwa` is not `endpoint/model`",
            ),
            (
                &format!("{GOOD}[[cases]]\nid = \"x\"\nprompt = \"again\"\n"),
                "jobs/j.toml:6:6: cases[1].id: duplicate case id `x` (first at line 3)",
            ),
            ("", "jobs/j.toml:1:1: empty job file"),
            ("targets = [\"gw/a\"]\n", "no cases"),
            (
                "[[cases]]\nid = \"x\"\nprompt = \"p\"\n",
                "missing key `targets`",
            ),
            (
                &format!("{GOOD}[params]\ntemperature = 3\n"),
                "jobs/j.toml:6:15: params.temperature: must be between 0 and 2",
            ),
            (
                &format!("{GOOD}[params]\ntop_p = 1.5\n"),
                "params.top_p: must be between 0 and 1",
            ),
            (
                &format!("{GOOD}[params]\nmax_tokens = 0\n"),
                "params.max_tokens: must be between 1",
            ),
            (
                &format!("timeout = \"soon\"\n{GOOD}"),
                "jobs/j.toml:1:11: timeout: `soon` is not a duration",
            ),
            (
                &format!("kind = \"party\"\n{GOOD}"),
                "kind: `party` is not a job kind",
            ),
            (
                &format!("{GOOD}[load]\nrequests = 5\n"),
                "load: only benchmark jobs take a [load] table",
            ),
            (
                &format!("{GOOD}[[scorers]]\nbuiltin = \"vibes\"\n"),
                "scorers[0].builtin: `vibes` is not a builtin scorer",
            ),
            (
                &format!("{GOOD}[[scorers]]\nbuiltin = \"regex\"\npattern = \"(\"\n"),
                "scorers[0].pattern: not a regular expression",
            ),
            (
                &format!("{GOOD}[[scorers]]\nbuiltin = \"contains\"\npattern = \"x\"\n"),
                "scorers[0].pattern: does not apply to builtin `contains`",
            ),
            (
                &format!("{GOOD}[[scorers]]\nplugin = \"../../tmp/x.wasm\"\n"),
                "scorers[0].plugin: `../../tmp/x.wasm` must name a file inside plugins_dir (/nonexistent): no `..`, no absolute path",
            ),
            (
                &format!("{GOOD}[[generators]]\nplugin = \"/tmp/x.wasm\"\n"),
                "generators[0].plugin: `/tmp/x.wasm` must name a file inside plugins_dir (/nonexistent): no `..`, no absolute path",
            ),
            (
                &format!("{GOOD}[[scorers]]\nplugin = \"nope.wasm\"\n"),
                "scorers[0].plugin: plugin `nope.wasm` not found",
            ),
            (
                &format!(
                    "{GOOD}[[scorers]]\nbuiltin = \"contains\"\n[[scorers]]\nbuiltin = \"contains\"\n"
                ),
                "two scorers are named `contains`",
            ),
            (
                &format!("{GOOD}[[scorers]]\nbuiltin = \"contains\"\nthreshold = 2\n"),
                "scorers[0].threshold: must be between 0 and 1",
            ),
            (
                &format!("{GOOD}[[cases]]\nid = \"y\"\n"),
                "cases[1]: needs `prompt` or `messages`",
            ),
            (
                &format!(
                    "{GOOD}[[cases]]\nid = \"y\"\nmessages = [{{ role = \"robot\", content = \"x\" }}]\n"
                ),
                "cases[1].messages[0].role: `robot`",
            ),
            (
                "kind = \"benchmark\"\ntargets = [\"gw/a\"]\n[[cases]]\nid = \"x\"\nprompt = \"p\"\n[load]\nconcurrency = 2\n",
                "load: set `requests` or `duration`",
            ),
            (
                "kind = \"benchmark\"\ntargets = [\"gw/a\"]\n[[cases]]\nid = \"x\"\nprompt = \"p\"\n[load]\nconcurrency = 2\nrate = 5.0\nrequests = 10\n",
                "load.concurrency: a closed loop (`concurrency`) and an open loop (`rate`) exclude each other",
            ),
            (
                &GOOD.replace("targets", "schedule = \"0 0 31 2 *\"\ntargets"),
                "never fires",
            ),
            (
                "kind = \"benchmark\"\ntargets = [\"gw/a\"]\n[[cases]]\nid = \"x\"\nprompt = \"p\"\n[load]\nconcurrency = \"four\"\nrequests = 10\n",
                "7:15: `load.concurrency`: invalid type: string \"four\"",
            ),
        ];
        for (text, want) in table {
            let got = problems(text);
            assert!(
                got.iter().any(|e| e.contains(want)),
                "{text:?}\nwant {want:?}\ngot {got:?}"
            );
        }
    }

    #[test]
    fn schedules_take_five_or_six_fields_and_nicknames() {
        for ok in [
            "*/30 * * * *",
            "*/2 * * * * *",
            "@hourly",
            "@daily",
            "0 0 3 * * MON-FRI",
        ] {
            assert!(parse_schedule(ok).is_ok(), "{ok}");
        }
        for bad in ["every tuesday-ish", "* * *", "61 * * * *", ""] {
            assert!(parse_schedule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn benchmark_jobs_stream_unless_told_not_to() {
        let base = "kind = \"benchmark\"\ntargets = [\"gw/a\"]\n[[cases]]\nid = \"x\"\nprompt = \"p\"\n[load]\nrequests = 10\n";
        let j = Job::parse(Path::new("b.toml"), base, &config()).unwrap();
        assert!(j.stream);
        let j = Job::parse(
            Path::new("b.toml"),
            &format!("stream = false\n{base}"),
            &config(),
        )
        .unwrap();
        assert!(!j.stream);
    }
}
