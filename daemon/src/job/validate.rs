//! Validation of a raw job against the config: each key checked, each problem a
//! [`Diagnostic`] at its line, every problem of a file reported at once.

use super::raw::*;
use super::*;

pub(super) struct Validator<'a> {
    pub(super) src: Source<'a>,
    pub(super) errs: Vec<Diagnostic>,
}

impl Validator<'_> {
    pub(super) fn err(&mut self, span: Option<Range<usize>>, msg: impl Into<String>) {
        let d = self.src.at(span, msg);
        self.errs.push(d);
    }

    pub(super) fn int(
        &mut self,
        key: &str,
        v: &Option<Spanned<i64>>,
        lo: i64,
        hi: i64,
        default: i64,
    ) -> i64 {
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

    pub(super) fn duration(&mut self, key: &str, v: &Option<Spanned<String>>) -> Option<Duration> {
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

    pub(super) fn job(&mut self, name: String, raw: RawJob, config: &Config) -> Job {
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
        let before = self.errs.len();
        let targets = self.targets(&raw.targets, config);
        let targets_ok = self.errs.len() == before;
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
        let before = self.errs.len();
        let scorers = self.scorers(raw.scorers, config);
        let scorers_ok = self.errs.len() == before;
        let load = match (&raw.load, kind) {
            (Some(l), JobKind::Compare) => {
                self.err(
                    Some(l.span()),
                    "load: only benchmark jobs take a [load] table (set kind = \"benchmark\")",
                );
                None
            }
            (l, JobKind::Benchmark) => {
                Some(self.load(l.as_ref(), raw.stream.unwrap_or(kind == JobKind::Benchmark)))
            }
            (None, JobKind::Compare) => None,
        };
        let watch = raw.watch.as_ref().and_then(|w| match kind {
            JobKind::Benchmark => {
                self.err(
                    Some(w.span()),
                    "watch: only compare jobs take a [watch] table (it tests pass rates, case by case)",
                );
                None
            }
            JobKind::Compare => Some(self.watch(w, scorers.is_empty())),
        });
        let alerts = self.alerts(
            raw.alerts,
            config,
            super::validate_alerts::JobFacts {
                scheduled: schedule.is_some(),
                watched: watch.is_some(),
                benchmark: kind == JobKind::Benchmark,
                // A list with its own errors is not judged again through the alerts.
                scorers: scorers_ok.then_some(&scorers[..]),
                targets: targets_ok.then_some(&targets[..]),
            },
        );
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
            watch,
            alerts,
            budget_usd_month: self.float("budget_usd_month", &raw.budget_usd_month, 0.0, 1e9),
            digest: 0,
        }
    }

    fn watch(&mut self, w: &Spanned<RawWatch>, no_scorers: bool) -> WatchSpec {
        if no_scorers {
            self.err(
                Some(w.span()),
                "watch: a watched job needs [[scorers]]: the test compares pass rates",
            );
        }
        let w = w.get_ref();
        let baseline = match &w.baseline {
            None => Baseline::Rolling(5),
            Some(b) => match b.get_ref().as_str() {
                "previous" => Baseline::Previous,
                "pinned" => Baseline::Pinned,
                other => match other.strip_prefix("rolling:").map(str::parse::<usize>) {
                    Some(Ok(n)) if (1..=100).contains(&n) => Baseline::Rolling(n),
                    _ => {
                        self.err(
                            Some(b.span()),
                            format!(
                                "watch.baseline: `{other}` is not one of \"previous\", \"rolling:N\" (N from 1 to 100) or \"pinned\""
                            ),
                        );
                        Baseline::Previous
                    }
                },
            },
        };
        WatchSpec {
            baseline,
            significance: self
                .float("watch.significance", &w.significance, 1e-9, 0.5)
                .unwrap_or(0.05),
            min_drop: self
                .float("watch.min_drop", &w.min_drop, 0.0, 1.0)
                .unwrap_or(0.05),
            confirm: w.confirm.unwrap_or(false),
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

    fn load(&mut self, raw: Option<&Spanned<RawLoad>>, stream: bool) -> LoadSpec {
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
        // TTFT and TPOT are measured on streams only: an SLO on them in a job that does not
        // stream could never be met.
        if !stream {
            for (key, v) in [
                ("slo_ttft_ms", &l.slo_ttft_ms),
                ("slo_tpot_ms", &l.slo_tpot_ms),
            ] {
                if let Some(v) = v {
                    self.err(
                        Some(v.span()),
                        format!(
                            "load.{key}: TTFT and TPOT are measured on streamed responses only; set `stream = true` or drop the SLO"
                        ),
                    );
                }
            }
        }
        if requests.is_none() && duration.is_none() {
            self.err(
                Some(span),
                "load: set `requests` or `duration` to say when the benchmark stops",
            );
        }
        // One or the other: an open loop sends at `rate` whatever is in flight, so a
        // `concurrency` beside it would be silently ignored.
        if let (Some(c), Some(_)) = (&l.concurrency, &l.rate) {
            self.err(
                Some(c.span()),
                "load.concurrency: a closed loop (`concurrency`) and an open loop (`rate`) exclude each other; keep one",
            );
        }
        LoadSpec {
            concurrency,
            rate,
            requests,
            duration,
            warmup: self.int("load.warmup", &l.warmup, 0, 1_000_000, 0) as u64,
            slo_ttft_ms: self.float("load.slo_ttft_ms", &l.slo_ttft_ms, 0.0, 1e9),
            slo_tpot_ms: self.float("load.slo_tpot_ms", &l.slo_tpot_ms, 0.0, 1e9),
            slo_e2e_ms: self.float("load.slo_e2e_ms", &l.slo_e2e_ms, 0.0, 1e9),
            retries: self.int("load.retries", &l.retries, 0, 10, 0) as u32,
        }
    }
}
