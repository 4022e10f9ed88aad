//! `evald backup`: a consistent copy of the store, taken while it is written.
//!
//! Every table is read from one read transaction (a snapshot: a commit after it began is not in
//! it, and none blocks on it) and written into a new redb file beside the destination, which is
//! renamed into place only when complete: a backup cut off leaves no file that looks whole. The
//! copy is compact (no free pages) and opens as a store like the original.

use redb::{Key, ReadTransaction, Value, WriteTransaction};

use super::tables::*;
use super::*;

/// Records copied per write transaction of the copy.
const CHUNK: usize = 50_000;

/// What a backup wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupReport {
    /// Request records in the copy.
    pub records: u64,
    /// Run summaries in the copy.
    pub runs: u64,
    /// The copy's size.
    pub bytes: u64,
    /// How long it took.
    pub ms: u64,
}

/// Why a backup failed.
fn fail(what: &str, dest: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::File(format!("backup to {}: {what}: {e}", dest.display()))
}

impl Store {
    /// Writes a consistent copy of the store to `dest` (replacing a file there).
    pub fn backup(&self, dest: &Path) -> Result<BackupReport, StoreError> {
        let t0 = std::time::Instant::now();
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same(dest, self.path()) {
            return Err(fail("refused", dest, "that is the store itself"));
        }
        if dest.is_dir() {
            return Err(fail("refused", dest, "a directory; give a file name"));
        }
        let name = dest
            .file_name()
            .ok_or_else(|| fail("refused", dest, "not a file name"))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".partial");
        let tmp = dest.with_file_name(tmp_name);
        let _ = std::fs::remove_file(&tmp);
        create_private(&tmp).map_err(|e| fail("cannot create", &tmp, e))?;
        let result = self.copy_into(&tmp);
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        std::fs::rename(&tmp, dest).map_err(|e| fail("cannot rename the copy", dest, e))?;
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(BackupReport {
            bytes: std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0),
            ms: t0.elapsed().as_millis() as u64,
            ..report
        })
    }

    fn copy_into(&self, tmp: &Path) -> Result<BackupReport, StoreError> {
        let src = self.db()?.begin_read()?;
        let dst = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(tmp)
            .map_err(|e| fail("cannot create", tmp, e))?;
        let mut report = BackupReport::default();
        // The records in chunks, each its own transaction (all read from the one snapshot).
        let records = src.open_table(RECORDS)?;
        let mut next: Option<(u64, u64)> = None;
        loop {
            let range = match next {
                None => records.range::<(u64, u64)>(..)?,
                Some(k) => records.range((Bound::Excluded(k), Bound::Unbounded))?,
            };
            let mut chunk = Vec::with_capacity(CHUNK);
            for e in range.take(CHUNK) {
                let (k, v) = e?;
                chunk.push((k.value(), v.value().to_vec()));
            }
            let Some(last) = chunk.last().map(|c| c.0) else {
                break;
            };
            next = Some(last);
            let n = chunk.len();
            let tx = begin_write(&dst)?;
            let refs = chunk.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            append(&mut tx.open_table(RECORDS)?, refs)?;
            tx.commit()?;
            report.records += n as u64;
            if n < CHUNK {
                break;
            }
        }
        let tx = begin_write(&dst)?;
        copy(&src, &tx, META)?;
        report.runs = copy(&src, &tx, RUNS)?;
        copy(&src, &tx, JOB_RUNS)?;
        copy(&src, &tx, RUNNING)?;
        copy(&src, &tx, RUN_SPANS)?;
        copy(&src, &tx, PAYLOADS)?;
        copy(&src, &tx, GROUPS)?;
        copy(&src, &tx, HOURS)?;
        copy(&src, &tx, DAYS)?;
        copy(&src, &tx, EVENTS)?;
        copy(&src, &tx, ALERTS)?;
        copy(&src, &tx, PINS)?;
        tx.commit()?;
        Ok(report)
    }
}

/// Copies one table from the snapshot into the copy. Returns its rows.
fn copy<K: Key + 'static, V: Value + 'static>(
    src: &ReadTransaction,
    dst: &WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<u64, StoreError> {
    let from = src.open_table(def)?;
    let mut to = dst.open_table(def)?;
    let mut n = 0;
    for e in from.iter()? {
        let (k, v) = e?;
        to.insert(k.value(), v.value())?;
        n += 1;
    }
    Ok(n)
}
