//! CartService's order index on disk: the latest acknowledged record of every order.
//!
//! Why it exists: the 409 of a create and the current state an update builds on must be right
//! after any restart, for every order ever created. Holding that in memory grew without bound and
//! made every start re-read the whole topic. Here it is a projection of `order-events` in SQLite
//! under `DATA_DIR`, written only by [`crate::follow`] with the offsets it applied in the same
//! transaction (`service_kit::sqlite`), so a restart reads only the records after its checkpoint
//! and memory does not grow with the number of orders.
//!
//! What a row holds is the record itself (the Confluent-framed Avro value), not a re-encoding of
//! it: the index never disagrees with the log, and an update decodes it with the same codec as
//! any reader. Applying is idempotent by `(orderId, version)`: a row is replaced only by a
//! greater version, so duplicates (a record in doubt sent again) change nothing.

use std::path::Path;

use anyhow::Context;
use rusqlite::{params, OptionalExtension};
use service_kit::sqlite::{store_claims, store_offsets, Database};

/// The file name of the database inside `DATA_DIR`.
const DB_FILE: &str = "orders.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    order_id  TEXT PRIMARY KEY NOT NULL,
    version   INTEGER NOT NULL,
    record    BLOB NOT NULL
) WITHOUT ROWID;
";

/// One record to apply: an order's version and the record's value as read from the topic.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) order_id: String,
    pub(crate) version: i64,
    /// Where it was read or written (the follower's bookkeeping; not stored: it follows from
    /// the order ID).
    pub(crate) partition: i32,
    pub(crate) record: Vec<u8>,
}

/// The index: one writer ([`crate::follow`]), pooled readers (the request handlers).
#[derive(Debug)]
pub(crate) struct Store {
    db: Database,
}

impl Store {
    /// Opens (creating if needed) `data_dir/orders.db`; fails if another process uses the
    /// directory.
    pub(crate) fn open(data_dir: &Path) -> anyhow::Result<Store> {
        let db = Database::open(data_dir, DB_FILE, SCHEMA)
            .context("opening CartService's order index (DATA_DIR)")?;
        Ok(Store { db })
    }

    /// The next offset to read per partition of `topic`, as applied.
    pub(crate) fn offsets(&self, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
        self.db.offsets(topic)
    }

    /// The claim in effect per partition where the index stopped (`order_events::fencing`).
    pub(crate) fn claims(&self, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
        self.db.claims(topic)
    }

    /// Applies rows (newer versions only) and stores the offsets and the claims in effect
    /// there, in one transaction.
    pub(crate) fn apply(
        &self,
        topic: &str,
        rows: &[Row],
        offsets: &[(i32, i64)],
        claims: &[(i32, i64)],
    ) -> anyhow::Result<()> {
        self.db
            .write(|tx| {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO orders (order_id, version, record)
                     VALUES (?1, ?2, ?3)
                     ON CONFLICT (order_id) DO UPDATE SET
                         version = excluded.version,
                         record = excluded.record
                     WHERE excluded.version > orders.version",
                )?;
                for row in rows {
                    upsert
                        .execute(params![row.order_id, row.version, row.record])
                        .with_context(|| format!("storing order {}", row.order_id))?;
                }
                store_offsets(tx, topic, offsets)?;
                store_claims(tx, topic, claims)
            })
            .context("applying records to the order index")
    }

    /// Forgets everything: the index was built from a topic that is not the one it reads now.
    pub(crate) fn clear(&self) -> anyhow::Result<()> {
        self.db
            .write(|tx| {
                tx.execute_batch("DELETE FROM orders; DELETE FROM offsets; DELETE FROM claims;")?;
                Ok(())
            })
            .context("clearing the order index")
    }

    /// The latest record of an order: its version and value.
    pub(crate) fn get(&self, order_id: &str) -> anyhow::Result<Option<(i64, Vec<u8>)>> {
        self.db
            .read(|conn| {
                conn.prepare_cached("SELECT version, record FROM orders WHERE order_id = ?1")?
                    .query_row([order_id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .with_context(|| format!("reading order {order_id} from the order index"))
    }

    /// How many orders the index holds.
    pub(crate) fn len(&self) -> anyhow::Result<u64> {
        self.db
            .read(|conn| conn.query_row("SELECT COUNT(*) FROM orders", [], |row| row.get(0)))
            .context("counting the order index")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row(id: &str, version: i64, record: &[u8]) -> Row {
        Row {
            order_id: id.into(),
            version,
            partition: 1,
            record: record.to_vec(),
        }
    }

    #[test]
    fn keeps_the_highest_version_and_the_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .apply(
                "t",
                &[row("A", 1, b"a1"), row("A", 2, b"a2")],
                &[(1, 2)],
                &[(1, 0)],
            )
            .unwrap();
        // A duplicate and an older version change nothing.
        store
            .apply(
                "t",
                &[row("A", 2, b"dup"), row("A", 1, b"old")],
                &[(1, 4)],
                &[],
            )
            .unwrap();
        assert_eq!(store.get("A").unwrap(), Some((2, b"a2".to_vec())));
        assert_eq!(store.get("B").unwrap(), None);
        assert_eq!(store.offsets("t").unwrap(), vec![(1, 4)]);
        assert_eq!(store.claims("t").unwrap(), vec![(1, 0)]);
        assert_eq!(store.len().unwrap(), 1);
        store.clear().unwrap();
        assert_eq!(store.len().unwrap(), 0);
        assert!(store.offsets("t").unwrap().is_empty());
        assert!(store.claims("t").unwrap().is_empty());
    }

    #[test]
    fn survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .apply("t", &[row("A", 3, b"a3")], &[(1, 9)], &[(1, 5)])
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.get("A").unwrap(), Some((3, b"a3".to_vec())));
        assert_eq!(store.offsets("t").unwrap(), vec![(1, 9)]);
        assert_eq!(store.claims("t").unwrap(), vec![(1, 5)]);
    }
}
