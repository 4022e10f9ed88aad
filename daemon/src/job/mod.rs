//! Job files, `jobs/NAME.toml`: parsed into raw serde structs (unknown keys rejected), then
//! validated once against the daemon config into a [`Job`]. Every problem is a [`Diagnostic`]
//! naming the file, the line and the key; a job with problems is not loaded, and the other jobs
//! are not affected.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use croner::Cron;
use evald_web::model::Message;
use serde::Deserialize;
use toml::Spanned;

use crate::config::{Config, MAX_FILE_BYTES, Num, parse_duration, parse_size};
use crate::diag::{Diagnostic, Source, read_text, whole_file};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    description: Option<String>,
    kind: Option<Spanned<String>>,
    schedule: Option<Spanned<String>>,
    enabled: Option<bool>,
    targets: Option<Spanned<Vec<Spanned<String>>>>,
    timeout: Option<Spanned<String>>,
    concurrency: Option<Spanned<i64>>,
    repeat: Option<Spanned<i64>>,
    stream: Option<bool>,
    params: Option<RawParams>,
    #[serde(default)]
    cases: Vec<Spanned<RawCase>>,
    #[serde(default)]
    generators: Vec<Spanned<RawPlugin>>,
    #[serde(default)]
    scorers: Vec<Spanned<RawScorer>>,
    load: Option<Spanned<RawLoad>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParams {
    temperature: Option<Spanned<Num>>,
    max_tokens: Option<Spanned<i64>>,
    top_p: Option<Spanned<Num>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    id: Option<Spanned<String>>,
    prompt: Option<String>,
    messages: Option<Vec<Spanned<RawMessage>>>,
    reference: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMessage {
    role: String,
    content: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    plugin: Spanned<String>,
    #[serde(default)]
    config: toml::Table,
    timeout: Option<Spanned<String>>,
    memory: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScorer {
    builtin: Option<Spanned<String>>,
    plugin: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    weight: Option<Spanned<Num>>,
    threshold: Option<Spanned<Num>>,
    value: Option<Spanned<String>>,
    pattern: Option<Spanned<String>>,
    required: Option<Spanned<Vec<String>>>,
    max_ms: Option<Spanned<Num>>,
    config: Option<Spanned<toml::Table>>,
    timeout: Option<Spanned<String>>,
    memory: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    concurrency: Option<Spanned<i64>>,
    rate: Option<Spanned<Num>>,
    requests: Option<Spanned<i64>>,
    duration: Option<Spanned<String>>,
    warmup: Option<Spanned<i64>>,
    slo_ttft_ms: Option<Spanned<Num>>,
    slo_e2e_ms: Option<Spanned<Num>>,
}

/// `compare` (every case to every target) or `benchmark` (load against each target in turn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Quality comparison.
    Compare,
    /// Load and latency measurement.
    Benchmark,
}

impl JobKind {
    /// The word used in job files and views.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Compare => "compare",
            JobKind::Benchmark => "benchmark",
        }
    }
}

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

/// Parses a cron expression: 5 fields (minute first), 6 fields (seconds first), or a nickname
/// (`@hourly`, `@daily`, …). The same parser settings as tokio-cron-scheduler's, so `evald
/// check` accepts exactly what the scheduler runs.
pub fn parse_schedule(expr: &str) -> Result<Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(&with_seconds(expr))
        .map_err(|e| format!("`{expr}` is not a cron expression ({e}); write 5 fields (`*/30 * * * *`), 6 with seconds first, or @hourly/@daily/@weekly/@monthly"))
}

/// The expression with a seconds field: five fields get `0` in front (minute-level cron fires
/// at second 0); six fields and `@nicknames` stay as they are.
pub fn with_seconds(expr: &str) -> String {
    let t = expr.trim();
    if !t.starts_with('@') && t.split_whitespace().count() == 5 {
        format!("0 {t}")
    } else {
        t.to_string()
    }
}

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
    /// A request within this end-to-end latency counts as good.
    pub slo_e2e_ms: Option<f64>,
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
            slo_e2e_ms: None,
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
        if job_name(path) == crate::cli::ADHOC_JOB {
            return Err(vec![whole_file(
                path,
                format!(
                    "`{}` is the name `evald compare` stores its runs under: rename the file",
                    crate::cli::ADHOC_JOB
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
        let raw: RawJob = toml::from_str(text).map_err(|e| vec![src.from_toml(&e)])?;
        let mut v = Validator {
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

struct Validator<'a> {
    src: Source<'a>,
    errs: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn err(&mut self, span: Option<Range<usize>>, msg: impl Into<String>) {
        let d = self.src.at(span, msg);
        self.errs.push(d);
    }

    fn int(&mut self, key: &str, v: &Option<Spanned<i64>>, lo: i64, hi: i64, default: i64) -> i64 {
        match v {
            None => default,
            Some(n) if (lo..=hi).contains(n.get_ref()) => *n.get_ref(),
            Some(n) => {
                self.err(
                    Some(n.span()),
                    format!("{key}: must be between {lo} and {hi}"),
                );
                default
            }
        }
    }

    fn float(&mut self, key: &str, v: &Option<Spanned<Num>>, lo: f64, hi: f64) -> Option<f64> {
        let n = v.as_ref()?;
        let x = n.get_ref().0;
        if x.is_finite() && x >= lo && x <= hi {
            Some(x)
        } else {
            self.err(
                Some(n.span()),
                format!("{key}: must be between {lo} and {hi}"),
            );
            None
        }
    }

    fn duration(&mut self, key: &str, v: &Option<Spanned<String>>) -> Option<Duration> {
        let s = v.as_ref()?;
        match parse_duration(s.get_ref()) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.err(Some(s.span()), format!("{key}: must be more than zero"));
                None
            }
            Err(e) => {
                self.err(Some(s.span()), format!("{key}: {e}"));
                None
            }
        }
    }

    fn job(&mut self, name: String, raw: RawJob, config: &Config) -> Job {
        let kind = match &raw.kind {
            None => JobKind::Compare,
            Some(k) => match k.get_ref().as_str() {
                "compare" => JobKind::Compare,
                "benchmark" => JobKind::Benchmark,
                other => {
                    self.err(
                        Some(k.span()),
                        format!("kind: `{other}` is not a job kind (compare, benchmark)"),
                    );
                    JobKind::Compare
                }
            },
        };
        let schedule = raw
            .schedule
            .as_ref()
            .and_then(|s| match parse_schedule(s.get_ref()) {
                Ok(cron) => Some(Schedule {
                    expr: s.get_ref().clone(),
                    expr6: with_seconds(s.get_ref()),
                    cron,
                }),
                Err(e) => {
                    self.err(Some(s.span()), format!("schedule: {e}"));
                    None
                }
            });
        let targets = self.targets(&raw.targets, config);
        let timeout = self.duration("timeout", &raw.timeout);
        let concurrency = self.int("concurrency", &raw.concurrency, 1, 1024, 4) as usize;
        let repeat = self.int("repeat", &raw.repeat, 1, 10_000, 1) as u32;
        let params = match &raw.params {
            None => Params::default(),
            Some(p) => Params {
                temperature: self.float("params.temperature", &p.temperature, 0.0, 2.0),
                top_p: self.float("params.top_p", &p.top_p, 0.0, 1.0),
                max_tokens: p
                    .max_tokens
                    .as_ref()
                    .map(|_| self.int("params.max_tokens", &p.max_tokens, 1, 1_000_000, 1) as u32),
            },
        };
        let cases = self.cases(raw.cases);
        let generators = raw
            .generators
            .into_iter()
            .enumerate()
            .filter_map(|(i, g)| self.generator(i, g, config))
            .collect::<Vec<_>>();
        if cases.is_empty() && generators.is_empty() {
            self.err(
                None,
                "no cases: add at least one [[cases]] (id and prompt) or a [[generators]] plugin",
            );
        }
        let scorers = self.scorers(raw.scorers, config);
        let load = match (&raw.load, kind) {
            (Some(l), JobKind::Compare) => {
                self.err(
                    Some(l.span()),
                    "load: only benchmark jobs take a [load] table (set kind = \"benchmark\")",
                );
                None
            }
            (l, JobKind::Benchmark) => Some(self.load(l.as_ref())),
            (None, JobKind::Compare) => None,
        };
        Job {
            name,
            file: self.src.path.to_path_buf(),
            description: raw.description.unwrap_or_default(),
            kind,
            schedule,
            enabled: raw.enabled.unwrap_or(true),
            targets,
            timeout,
            concurrency,
            repeat,
            stream: raw.stream.unwrap_or(kind == JobKind::Benchmark),
            params,
            cases,
            generators,
            scorers,
            load,
            digest: 0,
        }
    }

    fn targets(
        &mut self,
        raw: &Option<Spanned<Vec<Spanned<String>>>>,
        config: &Config,
    ) -> Vec<TargetSpec> {
        let Some(list) = raw else {
            self.err(None, "missing key `targets`: list where cases go, e.g. targets = [\"gateway/gpt-4o-mini\"]");
            return vec![];
        };
        if list.get_ref().is_empty() {
            self.err(Some(list.span()), "targets: the list is empty");
        }
        let mut out = Vec::new();
        for (i, t) in list.get_ref().iter().enumerate() {
            let Some((endpoint, model)) = t.get_ref().split_once('/') else {
                self.err(
                    Some(t.span()),
                    format!("targets[{i}]: `{}` is not `endpoint/model`", t.get_ref()),
                );
                continue;
            };
            if !config.endpoints.contains_key(endpoint) {
                let known: Vec<&str> = config.endpoints.keys().map(String::as_str).collect();
                self.err(
                    Some(t.span()),
                    format!(
                        "targets[{i}]: unknown endpoint `{endpoint}` (evald.toml defines: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                continue;
            }
            let spec = if model == "*" {
                TargetSpec::AllModels {
                    endpoint: endpoint.to_string(),
                }
            } else if model.is_empty() {
                self.err(
                    Some(t.span()),
                    format!("targets[{i}]: the model name after `/` is empty"),
                );
                continue;
            } else {
                TargetSpec::Model {
                    endpoint: endpoint.to_string(),
                    model: model.to_string(),
                }
            };
            if out.contains(&spec) {
                self.err(
                    Some(t.span()),
                    format!("targets[{i}]: `{spec}` is listed twice"),
                );
                continue;
            }
            out.push(spec);
        }
        out
    }

    fn cases(&mut self, raw: Vec<Spanned<RawCase>>) -> Vec<Case> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::new();
        for (i, c) in raw.into_iter().enumerate() {
            let span = c.span();
            let c = c.into_inner();
            let id = match &c.id {
                None => {
                    self.err(Some(span.clone()), format!("cases[{i}]: missing key `id`"));
                    continue;
                }
                Some(id) if id.get_ref().trim().is_empty() => {
                    self.err(Some(id.span()), format!("cases[{i}].id: must not be empty"));
                    continue;
                }
                Some(id) => id,
            };
            let line = self.src.at(Some(id.span()), "").line;
            if let Some(first) = seen.insert(id.get_ref().clone(), line) {
                self.err(
                    Some(id.span()),
                    format!(
                        "cases[{i}].id: duplicate case id `{}` (first at line {first})",
                        id.get_ref()
                    ),
                );
                continue;
            }
            let messages = match (c.prompt, c.messages) {
                (Some(_), Some(_)) => {
                    self.err(
                        Some(span),
                        format!("cases[{i}]: set either `prompt` or `messages`, not both"),
                    );
                    continue;
                }
                (None, None) => {
                    self.err(
                        Some(span),
                        format!("cases[{i}]: needs `prompt` or `messages`"),
                    );
                    continue;
                }
                (Some(p), None) => vec![Message {
                    role: "user".into(),
                    content: p,
                }],
                (None, Some(ms)) => {
                    if ms.is_empty() {
                        self.err(
                            Some(span),
                            format!("cases[{i}].messages: the list is empty"),
                        );
                        continue;
                    }
                    let mut out = Vec::new();
                    for (j, m) in ms.into_iter().enumerate() {
                        let mspan = m.span();
                        let m = m.into_inner();
                        if !matches!(
                            m.role.as_str(),
                            "system" | "user" | "assistant" | "developer"
                        ) {
                            self.err(
                                Some(mspan),
                                format!("cases[{i}].messages[{j}].role: `{}` is not system, user, assistant or developer", m.role),
                            );
                        }
                        out.push(Message {
                            role: m.role,
                            content: m.content,
                        });
                    }
                    out
                }
            };
            out.push(Case {
                id: id.get_ref().clone(),
                messages,
                reference: c.reference,
            });
        }
        out
    }

    fn plugin_path(&mut self, key: &str, p: &Spanned<String>, config: &Config) -> PathBuf {
        let path = config.plugins_dir.join(p.get_ref());
        if !p.get_ref().ends_with(".wasm") {
            self.err(
                Some(p.span()),
                format!("{key}: `{}` should name a .wasm file", p.get_ref()),
            );
        } else if !path.is_file() {
            self.err(
                Some(p.span()),
                format!(
                    "{key}: plugin `{}` not found in {}",
                    p.get_ref(),
                    config.plugins_dir.display()
                ),
            );
        }
        path
    }

    fn limits(
        &mut self,
        key: &str,
        timeout: &Option<Spanned<String>>,
        memory: &Option<Spanned<String>>,
    ) -> PluginLimits {
        let mut l = PluginLimits::default();
        if let Some(t) = self.duration(&format!("{key}.timeout"), timeout) {
            l.timeout = t;
        }
        if let Some(m) = memory {
            match parse_size(m.get_ref()) {
                Ok(n) if n >= 1024 * 1024 => l.memory_bytes = n,
                Ok(_) => self.err(Some(m.span()), format!("{key}.memory: at least 1MiB")),
                Err(e) => self.err(Some(m.span()), format!("{key}.memory: {e}")),
            }
        }
        l
    }

    fn generator(
        &mut self,
        i: usize,
        g: Spanned<RawPlugin>,
        config: &Config,
    ) -> Option<GeneratorSpec> {
        let g = g.into_inner();
        let key = format!("generators[{i}]");
        let path = self.plugin_path(&format!("{key}.plugin"), &g.plugin, config);
        let limits = self.limits(&key, &g.timeout, &g.memory);
        let config_json = table_json(&g.config);
        let d = self.src.at(Some(g.plugin.span()), "");
        Some(GeneratorSpec {
            path,
            at: (d.line, d.col),
            config_json,
            limits,
        })
    }

    fn scorers(&mut self, raw: Vec<Spanned<RawScorer>>, config: &Config) -> Vec<ScorerSpec> {
        let mut names: BTreeMap<String, ()> = BTreeMap::new();
        let mut out = Vec::new();
        for (i, s) in raw.into_iter().enumerate() {
            let span = s.span();
            let s = s.into_inner();
            let key = format!("scorers[{i}]");
            let (default_name, kind) = match (&s.builtin, &s.plugin) {
                (Some(_), Some(p)) => {
                    self.err(
                        Some(p.span()),
                        format!("{key}: set either `builtin` or `plugin`, not both"),
                    );
                    continue;
                }
                (None, None) => {
                    self.err(
                        Some(span),
                        format!(
                            "{key}: needs `builtin = \"…\"` ({}) or `plugin = \"name.wasm\"`",
                            BUILTIN_SCORERS.join(", ")
                        ),
                    );
                    continue;
                }
                (Some(b), None) => match self.builtin(&key, b, &s) {
                    Some(k) => (b.get_ref().clone(), k),
                    None => continue,
                },
                (None, Some(p)) => {
                    for (k, present) in [
                        ("value", s.value.is_some()),
                        ("pattern", s.pattern.is_some()),
                        ("required", s.required.is_some()),
                        ("max_ms", s.max_ms.is_some()),
                    ] {
                        if present {
                            self.err(
                                Some(p.span()),
                                format!("{key}.{k}: plugin options go in its `config` table"),
                            );
                        }
                    }
                    let path = self.plugin_path(&format!("{key}.plugin"), p, config);
                    let limits = self.limits(&key, &s.timeout, &s.memory);
                    let config_json = s
                        .config
                        .as_ref()
                        .map(|c| table_json(c.get_ref()))
                        .unwrap_or_else(|| "{}".into());
                    let stem = Path::new(p.get_ref())
                        .file_stem()
                        .map(|x| x.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let d = self.src.at(Some(p.span()), "");
                    (
                        stem,
                        ScorerKind::Plugin {
                            path,
                            at: (d.line, d.col),
                            config_json,
                            limits,
                        },
                    )
                }
            };
            let name = s
                .name
                .as_ref()
                .map(|n| n.get_ref().clone())
                .unwrap_or(default_name);
            if names.insert(name.clone(), ()).is_some() {
                let at = s
                    .name
                    .as_ref()
                    .map(|n| n.span())
                    .or(s.builtin.as_ref().map(|b| b.span()));
                self.err(
                    at,
                    format!("{key}: two scorers are named `{name}`; give one a `name`"),
                );
                continue;
            }
            let weight = self
                .float(&format!("{key}.weight"), &s.weight, 0.0, 1e6)
                .unwrap_or(1.0);
            let threshold = self
                .float(&format!("{key}.threshold"), &s.threshold, 0.0, 1.0)
                .unwrap_or(match kind {
                    ScorerKind::Plugin { .. } => 0.5,
                    _ => 1.0,
                });
            out.push(ScorerSpec {
                name,
                weight,
                threshold,
                kind,
            });
        }
        out
    }

    fn builtin(&mut self, key: &str, b: &Spanned<String>, s: &RawScorer) -> Option<ScorerKind> {
        let allowed: &[&str] = match b.get_ref().as_str() {
            "contains" | "icontains" | "equals" => &["value"],
            "regex" => &["pattern"],
            "json" => &["required"],
            "max-latency" => &["max_ms"],
            other => {
                self.err(
                    Some(b.span()),
                    format!(
                        "{key}.builtin: `{other}` is not a builtin scorer ({})",
                        BUILTIN_SCORERS.join(", ")
                    ),
                );
                return None;
            }
        };
        for (k, span) in [
            ("value", s.value.as_ref().map(|v| v.span())),
            ("pattern", s.pattern.as_ref().map(|v| v.span())),
            ("required", s.required.as_ref().map(|v| v.span())),
            ("max_ms", s.max_ms.as_ref().map(|v| v.span())),
            ("config", s.config.as_ref().map(|v| v.span())),
            ("timeout", s.timeout.as_ref().map(|v| v.span())),
            ("memory", s.memory.as_ref().map(|v| v.span())),
        ] {
            if let Some(span) = span
                && !allowed.contains(&k)
            {
                self.err(
                    Some(span),
                    format!("{key}.{k}: does not apply to builtin `{}`", b.get_ref()),
                );
            }
        }
        let value = s.value.as_ref().map(|v| v.get_ref().clone());
        Some(match b.get_ref().as_str() {
            "contains" => ScorerKind::Contains(value),
            "icontains" => ScorerKind::IContains(value),
            "equals" => ScorerKind::Equals(value),
            "regex" => {
                let Some(p) = &s.pattern else {
                    self.err(
                        Some(b.span()),
                        format!("{key}: builtin `regex` needs `pattern`"),
                    );
                    return None;
                };
                match regex::RegexBuilder::new(p.get_ref())
                    .size_limit(1 << 20)
                    .build()
                {
                    Ok(r) => ScorerKind::Regex(r),
                    Err(e) => {
                        let first = e
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or("invalid")
                            .trim()
                            .to_string();
                        self.err(
                            Some(p.span()),
                            format!("{key}.pattern: not a regular expression: {first}"),
                        );
                        return None;
                    }
                }
            }
            "json" => ScorerKind::Json(
                s.required
                    .as_ref()
                    .map(|r| r.get_ref().clone())
                    .unwrap_or_default(),
            ),
            _ => {
                let Some(max) = self.float(&format!("{key}.max_ms"), &s.max_ms, 0.001, 1e9) else {
                    if s.max_ms.is_none() {
                        self.err(
                            Some(b.span()),
                            format!("{key}: builtin `max-latency` needs `max_ms`"),
                        );
                    }
                    return None;
                };
                ScorerKind::MaxLatency(max)
            }
        })
    }

    fn load(&mut self, raw: Option<&Spanned<RawLoad>>) -> LoadSpec {
        let Some(l) = raw else {
            return LoadSpec::default();
        };
        let span = l.span();
        let l = l.get_ref();
        let concurrency = self.int("load.concurrency", &l.concurrency, 1, 4096, 1) as usize;
        let rate = self.float("load.rate", &l.rate, 0.001, 1e6);
        let requests = l
            .requests
            .as_ref()
            .map(|_| self.int("load.requests", &l.requests, 1, 100_000_000, 1) as u64);
        let duration = self.duration("load.duration", &l.duration);
        if requests.is_none() && duration.is_none() {
            self.err(
                Some(span),
                "load: set `requests` or `duration` to say when the benchmark stops",
            );
        }
        LoadSpec {
            concurrency,
            rate,
            requests,
            duration,
            warmup: self.int("load.warmup", &l.warmup, 0, 1_000_000, 0) as u64,
            slo_ttft_ms: self.float("load.slo_ttft_ms", &l.slo_ttft_ms, 0.0, 1e9),
            slo_e2e_ms: self.float("load.slo_e2e_ms", &l.slo_e2e_ms, 0.0, 1e9),
        }
    }
}

/// A TOML table as JSON text, for plugin configs.
fn table_json(t: &toml::Table) -> String {
    serde_json::to_string(t).unwrap_or_else(|_| "{}".into())
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

/// Whether a path is a job file: `*.toml`, not hidden (editors' swap and temp files are).
pub fn is_job_file(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "toml")
        && p.file_name()
            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        && p.is_file()
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
