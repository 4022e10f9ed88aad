//! Runs the last stop cut off: marked interrupted with what they committed at the next start,
//! and a benchmark's figures counted from its records later (`run::bench::summarise_interrupted`).

use super::tables::*;
use super::*;

impl Store {
    /// Marks every run that was going when the process last stopped as interrupted, with the
    /// counts of the records that were committed. Returns the run ids marked. A benchmark
    /// without figures for a target stays listed as going until [`Store::settle_interrupted`]
    /// stores them, so a stop before that leaves it to the next start to count.
    pub fn mark_interrupted(&self) -> Result<Vec<String>, StoreError> {
        let ids: Vec<String> = {
            let tx = self.db()?.begin_read()?;
            let running = tx.open_table(RUNNING)?;
            running
                .iter()?
                .filter_map(|e| e.ok().map(|(k, _)| k.value().to_string()))
                .collect()
        };
        let mut marked = Vec::new();
        let mut summaries = Vec::new();
        for id in &ids {
            let Some(mut summary) = self.run(id)? else {
                continue;
            };
            // Streamed: a long benchmark cut off may have millions of records.
            let mut tally = evald_model::Tally::default();
            let mut ended = summary.started_ms;
            let filter = RecordFilter {
                run_id: Some(id.clone()),
                ..RecordFilter::default()
            };
            self.scan(&filter, false, &mut |r| {
                ended = ended.max(r.timestamp_ms);
                tally.add(&r.to_record());
                true
            })?;
            // A benchmark's latest checkpoint keeps its figures (the histograms died with the
            // process); the counts come from the records, which may be a few seconds newer.
            let measured: std::collections::BTreeMap<String, evald_model::BenchSummary> = summary
                .targets
                .iter()
                .filter_map(|t| Some((t.target.clone(), t.bench.clone()?)))
                .collect();
            tally.finish(&mut summary);
            for t in &mut summary.targets {
                t.bench = measured.get(&t.target).cloned();
            }
            summary.status = RunStatus::Interrupted;
            summary.ended_ms = Some(ended);
            summary.message = Some(if measured.is_empty() {
                "cut off: evald stopped before the run ended (marked at the next start)".into()
            } else {
                "cut off: evald stopped before the run ended (marked at the next start); \
                 benchmark figures as of its last checkpoint"
                    .into()
            });
            summaries.push(summary);
        }
        let tx = begin_write(&*self.db()?)?;
        {
            let mut running = tx.open_table(RUNNING)?;
            let mut runs = tx.open_table(RUNS)?;
            for id in &ids {
                if !summaries
                    .iter()
                    .any(|s| s.id == *id && s.lacks_bench_figures())
                {
                    running.remove(id.as_str())?;
                }
            }
            for summary in summaries {
                let bytes = serde_json::to_vec(&summary)?;
                runs.insert(summary.id.as_str(), bytes.as_slice())?;
                marked.push(summary.id);
            }
        }
        tx.commit()?;
        Ok(marked)
    }

    /// Stores an interrupted run's summary with the figures counted from its records, and
    /// takes it off the list of runs going (see [`Store::mark_interrupted`]), in one commit.
    pub fn settle_interrupted(&self, s: &RunSummary) -> Result<(), StoreError> {
        let tx = begin_write(&*self.db()?)?;
        tx.open_table(RUNS)?
            .insert(s.id.as_str(), serde_json::to_vec(s)?.as_slice())?;
        tx.open_table(RUNNING)?.remove(s.id.as_str())?;
        tx.commit()?;
        Ok(())
    }
}
