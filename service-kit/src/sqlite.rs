//! A service's local state in SQLite, stored with the Kafka offsets it was built from.
//!
//! OrderService's view and CartService's order index are both projections of `order-events`
//! that must survive a `kill -9` without applying a record twice or skipping one. Offsets
//! committed to the broker cannot be made atomic with a local change; offsets stored *in the same
//! transaction* as the changes they caused can, so a restart seeks to exactly what was applied.
//! This module is that one way of doing it, shared: open a database under `DATA_DIR` (WAL, one
//! writer connection, a small pool of readers), run a batch and its offsets in one transaction
//! ([`Database::write`], [`store_offsets`]), read the offsets back ([`Database::offsets`]).
//!
//! Journal: WAL, so readers (HTTP requests) never block the writer (the apply loop) and vice
//! versa. `synchronous=NORMAL`: in WAL mode a commit is durable against a process crash (the WAL
//! is in the OS page cache); only an OS crash or power loss may lose the last transactions, and
//! that loss is harmless because the offsets roll back *with* the changes: the records are
//! consumed again from Kafka, the system of record.
//!
//! One process at a time: the data directory is locked (`.lock`, an OS file lock released when
//! the process ends, even by `kill -9`), so two instances pointed at one `DATA_DIR` fail at
//! start-up with a clear message instead of interleaving their projections.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{params, Connection, OpenFlags, Transaction};

/// How many idle read connections are kept.
const READ_POOL: usize = 8;

/// The tables every projection keeps: the next offset per partition, and the claim in effect
/// where it stopped (`order_events::fencing`; none for a partition never claimed).
const OFFSETS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS offsets (
    topic       TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS claims (
    topic        TEXT NOT NULL,
    partition    INTEGER NOT NULL,
    claim_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
";

/// A SQLite database in WAL mode: one writer, pooled readers, the data directory locked.
pub struct Database {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Held for the life of the process: the data directory is ours.
    _lock: File,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.path)
            .finish()
    }
}

impl Database {
    /// Opens (creating if needed) `data_dir/file`, locks `data_dir` for this process, switches
    /// to WAL and creates the offsets table and the caller's `schema` (`CREATE … IF NOT EXISTS`).
    pub fn open(data_dir: &Path, file: &str, schema: &str) -> anyhow::Result<Database> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
        let lock_path = data_dir.join(".lock");
        let lock = File::create(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "the data directory {} is in use by another process (two instances cannot \
                 share a DATA_DIR; give each its own)",
                data_dir.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", lock_path.display()))
            }
        }
        let path = data_dir.join(file);
        let writer = Connection::open(&path)
            .with_context(|| format!("opening the database {}", path.display()))?;
        configure(&writer).context("configuring the database")?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .context("switching the database to WAL")?;
        if !mode.eq_ignore_ascii_case("wal") {
            anyhow::bail!("the database refused WAL mode (journal_mode is {mode})");
        }
        // Checkpoints run inside the writer's commits; one every 10,000 pages (~40 MB of WAL)
        // instead of SQLite's 1,000 writes each hot page (indexes, inner B-tree pages) once
        // per interval instead of ten times. It was an eighth of OrderService's catch-up CPU.
        writer
            .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 10000;")
            .context("setting synchronous = NORMAL and the checkpoint interval")?;
        writer
            .execute_batch(OFFSETS_SCHEMA)
            .context("creating the offsets table")?;
        writer
            .execute_batch(schema)
            .context("creating the tables")?;
        Ok(Database {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            _lock: lock,
        })
    }

    /// Runs `f` in one write transaction, committed if `f` succeeds (all or nothing).
    pub fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction().context("starting a transaction")?;
        let result = f(&tx)?;
        tx.commit().context("committing")?;
        Ok(result)
    }

    /// Runs `f` on a read connection from the pool (opening one if none is idle).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .with_context(|| format!("opening {} for reading", self.path.display()))?;
                configure(&conn).context("configuring a read connection")?;
                conn
            }
        };
        let result = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < READ_POOL {
            pool.push(conn);
        }
        Ok(result?)
    }

    /// The stored next offsets of `topic`, by partition.
    pub fn offsets(&self, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT partition, next_offset FROM offsets WHERE topic = ?1 ORDER BY partition",
            )?;
            let rows = stmt.query_map([topic], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })
        .context("reading the stored offsets")
    }

    /// The stored claims in effect of `topic`, by partition (see [`store_claims`]).
    pub fn claims(&self, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT partition, claim_offset FROM claims WHERE topic = ?1 ORDER BY partition",
            )?;
            let rows = stmt.query_map([topic], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })
        .context("reading the stored claims")
    }
}

/// Stores the claim in effect per partition of `topic` (the offset of the claim record), inside
/// the caller's transaction: with the offsets, it is where a reader resumes.
pub fn store_claims(
    tx: &Transaction<'_>,
    topic: &str,
    claims: &[(i32, i64)],
) -> anyhow::Result<()> {
    store_per_partition(tx, "claims", "claim_offset", topic, claims)
}

/// Stores the next offset to consume per partition of `topic`, inside the caller's transaction.
pub fn store_offsets(
    tx: &Transaction<'_>,
    topic: &str,
    offsets: &[(i32, i64)],
) -> anyhow::Result<()> {
    store_per_partition(tx, "offsets", "next_offset", topic, offsets)
}

/// Upserts one number per partition of `topic` into `table.column` (names from this module).
fn store_per_partition(
    tx: &Transaction<'_>,
    table: &str,
    column: &str,
    topic: &str,
    values: &[(i32, i64)],
) -> anyhow::Result<()> {
    let mut upsert = tx.prepare_cached(&format!(
        "INSERT INTO {table} (topic, partition, {column}) VALUES (?1, ?2, ?3)
         ON CONFLICT (topic, partition) DO UPDATE SET {column} = excluded.{column}"
    ))?;
    for (partition, value) in values {
        upsert
            .execute(params![topic, partition, value])
            .with_context(|| format!("storing {table} of partition {partition}"))?;
    }
    Ok(())
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn offsets_commit_with_the_transaction_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(
            dir.path(),
            "t.db",
            "CREATE TABLE IF NOT EXISTS x (v INTEGER);",
        )
        .unwrap();
        db.write(|tx| {
            store_offsets(tx, "topic", &[(0, 5), (2, 7)])?;
            store_claims(tx, "topic", &[(0, 3)])
        })
        .unwrap();
        let failed: anyhow::Result<()> = db.write(|tx| {
            store_offsets(tx, "topic", &[(0, 99)])?;
            store_claims(tx, "topic", &[(0, 98)])?;
            anyhow::bail!("the batch failed")
        });
        assert!(failed.is_err());
        assert_eq!(db.offsets("topic").unwrap(), vec![(0, 5), (2, 7)]);
        assert_eq!(db.claims("topic").unwrap(), vec![(0, 3)]);
        assert!(db.offsets("other").unwrap().is_empty());
    }

    #[test]
    fn a_data_directory_serves_one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = Database::open(dir.path(), "t.db", "").unwrap();
        let second = Database::open(dir.path(), "t.db", "").unwrap_err();
        assert!(
            format!("{second:#}").contains("in use by another process"),
            "{second:#}"
        );
        drop(first);
        Database::open(dir.path(), "t.db", "").unwrap();
    }
}
