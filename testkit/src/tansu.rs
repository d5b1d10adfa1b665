//! Starting Tansu the same way everywhere (launcher, tests, benchmark), and a fix for its
//! SQLite schema that every one of them applies.
//!
//! Tansu's fetch looks up the headers of each record it returns (`header_fetch.sql`, joined on
//! `offset_id`), and its schema gives the `header` table no index: every fetched record costs a
//! scan of all headers ever written, so reading N records is O(N²). CartService writes three
//! headers per record; without the index a topic of a few hundred thousand orders can no longer
//! be read (measured in BENCHMARKS.md: a 1,000,000-record catch-up did not finish). Apache Kafka
//! has no such problem; this belongs upstream in Tansu.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// `tansu broker` listening on 127.0.0.1:`port` with SQLite storage in `data_dir/broker.db`.
/// Tansu reads the path after `sqlite://` relative to its working directory (even a leading `/`
/// is dropped), so the command runs inside `data_dir`. Output and environment are the caller's.
pub fn broker_command(binary: &Path, port: u16, data_dir: &Path) -> Command {
    let listener = format!("tcp://127.0.0.1:{port}");
    let mut command = Command::new(binary);
    command
        .arg("broker")
        .args(["--listener-url", &listener])
        .args(["--advertised-listener-url", &listener])
        .args(["--storage-engine", "sqlite://broker.db"])
        .current_dir(data_dir);
    command
}

/// The index added to Tansu's `header` table.
pub const HEADER_INDEX: &str = "create index if not exists tansu_header_topition_offset \
                                on header (topition, offset_id)";

/// Waits (up to `timeout`) until Tansu has created its schema in `db`, then adds
/// [`HEADER_INDEX`]. Safe to call on every start: the index is created once.
pub fn add_header_index(db: &Path, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match try_add(db) {
            Ok(true) => return Ok(()),
            Ok(false) if Instant::now() > deadline => bail!(
                "Tansu did not create its schema in {} within {timeout:?}",
                db.display()
            ),
            Err(e) if Instant::now() > deadline => return Err(e),
            Ok(false) | Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// `Ok(false)` while Tansu's schema is not there yet.
fn try_add(db: &Path) -> anyhow::Result<bool> {
    if !db.is_file() {
        return Ok(false);
    }
    let conn =
        rusqlite::Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(10))
        .context("setting a busy timeout")?;
    let tables: i64 = conn
        .query_row(
            "select count(*) from sqlite_master where type = 'table' and name = 'header'",
            [],
            |row| row.get(0),
        )
        .context("reading Tansu's schema")?;
    if tables == 0 {
        return Ok(false);
    }
    conn.execute(HEADER_INDEX, [])
        .context("creating the header index")?;
    Ok(true)
}
