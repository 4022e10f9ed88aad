//! `evald run JOB --estimate`: the upper bound of what a run costs, sending nothing; and the
//! monthly figure `evald check` prints for a scheduled job.

use evald::config::Config;
use evald::job::{Job, TargetSpec};

/// Completion tokens assumed per answer when the job sets no `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

/// Per target: (target, prompt tokens, completion tokens at most, cost at most in USD, or
/// `None` without a price). Targets `endpoint/*` are left out (their models are listed only
/// when a run starts).
pub fn estimate(config: &Config, job: &Job) -> Vec<(String, u64, u64, Option<f64>)> {
    // Each message's text counted with o200k_base, plus 4 tokens of chat framing per message
    // and 3 for the reply's priming (OpenAI's published accounting for chat models).
    let prompt_per_round: u64 = job
        .cases
        .iter()
        .map(|c| {
            c.messages
                .iter()
                .map(|m| u64::from(evald::endpoint::tokens::count(&m.content)) + 4)
                .sum::<u64>()
                + 3
        })
        .sum();
    let requests_per_target = job.cases.len() as u64 * u64::from(job.repeat.max(1));
    let requests_per_target = match &job.load {
        // A benchmark cycles its cases: `requests` of them (a `duration` cannot be bounded).
        Some(l) => l.requests.unwrap_or(requests_per_target) + l.warmup,
        None => requests_per_target,
    };
    let rounds = requests_per_target as f64 / job.cases.len().max(1) as f64;
    let prompt = (prompt_per_round as f64 * rounds).ceil() as u64;
    let max_tokens = job.params.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    let completion = requests_per_target * u64::from(max_tokens);
    job.targets
        .iter()
        .filter_map(|t| match t {
            TargetSpec::Model { endpoint, model } => {
                let ep = config.endpoints.get(endpoint)?;
                let price = config.pricing.lookup(endpoint, model, &ep.provider);
                let cost = price.map(|p| prompt as f64 * p.input + completion as f64 * p.output);
                Some((format!("{endpoint}/{model}"), prompt, completion, cost))
            }
            TargetSpec::AllModels { .. } => None,
        })
        .collect()
}

/// Prints the estimate; what `--estimate` shows.
pub fn print(config: &Config, job: &Job) {
    let rows = estimate(config, job);
    let max_tokens = job.params.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    println!(
        "estimate for job `{}` (nothing sent): prompts counted with o200k_base, {} completion tokens assumed per answer{}",
        job.name,
        max_tokens,
        if job.params.max_tokens.is_none() {
            format!(" (the job sets no max_tokens; {DEFAULT_MAX_TOKENS} assumed)")
        } else {
            String::new()
        }
    );
    let mut total = 0.0;
    let mut unknown = 0;
    for (t, prompt, completion, cost) in &rows {
        match cost {
            Some(c) => {
                total += c;
                println!(
                    "  {t}: at most {c:.6} USD ({prompt} prompt + {completion} completion tokens)"
                );
            }
            None => {
                unknown += 1;
                println!(
                    "  {t}: no price known ([pricing] in evald.toml); {prompt} prompt + {completion} completion tokens"
                );
            }
        }
    }
    if unknown == rows.len() {
        // Unknown is never 0 (DESIGN, Cost): no total rather than "at most 0 USD".
        println!("total: unknown, no target has a price");
        return;
    }
    println!(
        "total: at most {total:.6} USD per run{}",
        if unknown > 0 {
            format!(" for the priced targets ({unknown} without a price)")
        } else {
            String::new()
        }
    );
}

/// Runs a schedule makes in 30 days from now, counted one by one up to a million (a schedule
/// limited to hours or weekdays fires unevenly, so no shorter count scales). Past that (more
/// often than every 2.6 s, all month) the count is scaled from the period of the first million.
pub fn runs_per_month(job: &Job) -> Option<u64> {
    const COUNTED: u64 = 1_000_000;
    let s = job.schedule.as_ref()?;
    let now = chrono::Utc::now();
    let end = now + chrono::Duration::days(30);
    let (mut t, mut first) = (now, None);
    let mut n = 0u64;
    while let Some(next) = s.next_after(t) {
        if next > end {
            break;
        }
        let first = *first.get_or_insert(next);
        n += 1;
        t = next;
        if n == COUNTED {
            // n − 1 periods from the first firing to the last: as many more to the window's end.
            let period_ms = (t - first).num_milliseconds().max(1) as f64 / (n - 1) as f64;
            let rest = (end - first).num_milliseconds() as f64 / period_ms;
            return Some(1 + rest.floor() as u64);
        }
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every 4 s is 648,000 runs in 30 days, every 10 minutes 4,320, every 5 s in office hours
    /// on weekdays about 140,000 (counted: a scaled count of a day's firings would be far off);
    /// every second, 2,592,000 (scaled). A count may miss by one run at either end of the
    /// window; office hours by the weekdays 30 days hold (21–23).
    #[test]
    fn a_frequent_schedule_is_counted_over_the_whole_month() {
        let config = evald::config::Config::parse(
            Path::new("/tmp/evald.toml"),
            "[endpoints.sim]\nsimulated = { latency_ms = 1 }\n",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        for (schedule, want, tolerance) in [
            ("*/4 * * * * *", 648_000i64, 1),
            ("*/10 * * * *", 4_320, 1),
            ("* * * * * *", 2_592_000, 1),
            ("*/5 * 9-16 * * 1-5", 22 * 5_760, 5_760),
        ] {
            let job = evald::job::Job::parse(
                Path::new("/tmp/jobs/j.toml"),
                &format!("schedule = \"{schedule}\"\ntargets = [\"sim/a\"]\n[[cases]]\nid = \"a\"\nprompt = \"x\"\n"),
                &config,
            )
            .unwrap_or_else(|e| panic!("{e:?}"));
            let got = super::runs_per_month(&job).unwrap_or(0) as i64;
            assert!(
                (got - want).abs() <= tolerance,
                "{schedule}: {got} runs, want {want}"
            );
        }
    }
}
