//! Inventory snapshots: per (integration, account, kind) the entities of the last complete
//! snapshot (`complete = 1`) and of the one being taken (`complete = 0`), each as its change
//! hash and its stored state.
//!
//! A snapshot fills its pending rows page by page (with the file sinks' lengths of the page, so
//! a file holds each page once); the changes are read by comparing the two sets in SQL, a chunk
//! at a time in entity-id order, so neither the collector nor this module holds a whole tenant;
//! completion swaps the sets in one transaction. A snapshot that fails part-way never reaches
//! completion: the previous complete snapshot stays as it was and no change is read from it.

use rusqlite::{params, OptionalExtension};

use super::files::{write_marks, FileMark};
use super::{State, StateError};
use crate::inventory::InventoryKind;

/// Which snapshot: one kind of one account of one integration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnapshotKey {
    pub integration: String,
    /// The MSP child account, or `None` for the integration's own account.
    pub account_id: Option<String>,
    pub kind: InventoryKind,
}

impl SnapshotKey {
    fn account(&self) -> &str {
        self.account_id.as_deref().unwrap_or("")
    }
}

/// One entity of a page, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntity {
    pub entity_id: String,
    pub hash: String,
    pub state: String,
}

/// An entity whose hash differs between the complete snapshot and the pending one: `before`
/// is absent for a new entity, `after` for a deleted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedEntity {
    pub entity_id: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A complete snapshot's time and size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotInfo {
    pub integration: String,
    pub account_id: Option<String>,
    pub kind: String,
    pub completed_ms: i64,
    pub entities: i64,
}

/// A snapshot being taken, as [`crate::state::StateStore::begin_snapshot`] handed it out: every
/// later write of it hands it back, and is refused with [`StateError::Fenced`] once another
/// writer began (or completed) the same snapshot since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSnapshot {
    pub key: SnapshotKey,
    /// When the previous complete snapshot completed; `None` before the first (which reports
    /// no changes).
    pub previous_completed_ms: Option<i64>,
    /// The head revision this writer last read or wrote.
    pub(in crate::state) revision: u64,
    /// The NATS store's generation of the entities being written (SQLite: unused).
    pub(in crate::state) generation: u64,
    /// The NATS store's generation of the complete snapshot, if any.
    pub(in crate::state) complete_generation: Option<u64>,
}

impl SnapshotKey {
    /// The snapshot as errors and logs name it: `integration/account/inventory kind`.
    pub fn describe(&self) -> String {
        format!(
            "{}/{}/inventory {}",
            self.integration,
            self.account_id.as_deref().unwrap_or("-"),
            self.kind
        )
    }
}

const PENDING: i64 = 0;
const COMPLETE: i64 = 1;

impl State {
    /// Starts a snapshot: whatever a snapshot that did not complete left pending is dropped.
    pub fn begin_snapshot(&self, key: &SnapshotKey) -> Result<(), StateError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM inventory_entities WHERE integration = ?1 AND account_id = ?2 AND kind = ?3 AND complete = ?4",
                params![key.integration, key.account(), key.kind.as_str(), PENDING],
            )?;
            Ok(())
        })
    }

    /// Adds a delivered page's entities to the pending snapshot, with the file sinks' lengths
    /// after the page, in one transaction. An entity listed twice (Duo's offsets moved under a
    /// changing tenant) keeps its latest state.
    pub fn add_pending(
        &self,
        key: &SnapshotKey,
        entities: &[StoredEntity],
        files: &[FileMark],
        now_ms: i64,
    ) -> Result<(), StateError> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR REPLACE INTO inventory_entities(integration, account_id, kind, complete, entity_id, hash, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for e in entities {
                    insert.execute(params![
                        key.integration,
                        key.account(),
                        key.kind.as_str(),
                        PENDING,
                        e.entity_id,
                        e.hash,
                        e.state
                    ])?;
                }
            }
            write_marks(&tx, files, now_ms)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// When the last complete snapshot of `key` completed; `None` before the first.
    pub fn snapshot_completed_ms(&self, key: &SnapshotKey) -> Result<Option<i64>, StateError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT completed_ms FROM inventory_snapshots WHERE integration = ?1 AND account_id = ?2 AND kind = ?3",
                params![key.integration, key.account(), key.kind.as_str()],
                |r| r.get(0),
            )
            .optional()?)
        })
    }

    /// Up to `limit` entities after `after_id` (in id order) whose hash differs between the
    /// complete and the pending snapshot, including those only one of them holds.
    pub fn changed_entities(
        &self,
        key: &SnapshotKey,
        after_id: &str,
        limit: usize,
    ) -> Result<Vec<ChangedEntity>, StateError> {
        self.with(|c| {
            let mut query = c.prepare_cached(
                "SELECT p.entity_id, c.state, p.state FROM inventory_entities p
                   LEFT JOIN inventory_entities c ON c.integration = p.integration AND c.account_id = p.account_id
                     AND c.kind = p.kind AND c.complete = ?5 AND c.entity_id = p.entity_id
                   WHERE p.integration = ?1 AND p.account_id = ?2 AND p.kind = ?3 AND p.complete = ?4
                     AND p.entity_id > ?6 AND (c.hash IS NULL OR c.hash <> p.hash)
                 UNION ALL
                 SELECT c.entity_id, c.state, NULL FROM inventory_entities c
                   WHERE c.integration = ?1 AND c.account_id = ?2 AND c.kind = ?3 AND c.complete = ?5
                     AND c.entity_id > ?6
                     AND NOT EXISTS (SELECT 1 FROM inventory_entities p WHERE p.integration = ?1
                       AND p.account_id = ?2 AND p.kind = ?3 AND p.complete = ?4 AND p.entity_id = c.entity_id)
                 ORDER BY 1 LIMIT ?7",
            )?;
            let rows = query.query_map(
                params![
                    key.integration,
                    key.account(),
                    key.kind.as_str(),
                    PENDING,
                    COMPLETE,
                    after_id,
                    limit as i64
                ],
                |r| {
                    Ok(ChangedEntity {
                        entity_id: r.get(0)?,
                        before: r.get(1)?,
                        after: r.get(2)?,
                    })
                },
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Records the file sinks' lengths after a delivery that moves nothing else (a chunk of
    /// change events before the snapshot completes).
    pub fn commit_files(&self, files: &[FileMark], now_ms: i64) -> Result<(), StateError> {
        self.with(|c| {
            let tx = c.transaction()?;
            write_marks(&tx, files, now_ms)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// The pending snapshot becomes the complete one (the previous one is dropped), with the
    /// file sinks' lengths after its last change events, in one transaction.
    pub fn complete_snapshot(
        &self,
        key: &SnapshotKey,
        completed_ms: i64,
        files: &[FileMark],
        now_ms: i64,
    ) -> Result<(), StateError> {
        let (account, kind) = (key.account(), key.kind.as_str());
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM inventory_entities WHERE integration = ?1 AND account_id = ?2 AND kind = ?3 AND complete = ?4",
                params![key.integration, account, kind, COMPLETE],
            )?;
            let entities = tx.execute(
                "UPDATE inventory_entities SET complete = ?4 WHERE integration = ?1 AND account_id = ?2 AND kind = ?3 AND complete = ?5",
                params![key.integration, account, kind, COMPLETE, PENDING],
            )?;
            tx.execute(
                "INSERT INTO inventory_snapshots(integration, account_id, kind, completed_ms, entities) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(integration, account_id, kind) DO UPDATE SET completed_ms = excluded.completed_ms, entities = excluded.entities",
                params![key.integration, account, kind, completed_ms, entities as i64],
            )?;
            write_marks(&tx, files, now_ms)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Every complete snapshot, sorted by integration, account and kind.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>, StateError> {
        self.with(|c| {
            let mut query = c.prepare(
                "SELECT integration, account_id, kind, completed_ms, entities FROM inventory_snapshots ORDER BY 1, 2, 3",
            )?;
            let rows = query.query_map([], |r| {
                let account: String = r.get(1)?;
                Ok(SnapshotInfo {
                    integration: r.get(0)?,
                    account_id: (!account.is_empty()).then_some(account),
                    kind: r.get(2)?,
                    completed_ms: r.get(3)?,
                    entities: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Up to `limit` entities of the complete snapshot of `key` after `after_id`, in entity-id
    /// order (the posture report reads them a chunk at a time).
    pub fn complete_entities(
        &self,
        key: &SnapshotKey,
        after_id: &str,
        limit: usize,
    ) -> Result<Vec<StoredEntity>, StateError> {
        self.with(|c| {
            let mut query = c.prepare_cached(
                "SELECT entity_id, hash, state FROM inventory_entities WHERE integration = ?1 AND account_id = ?2
                   AND kind = ?3 AND complete = ?4 AND entity_id > ?5 ORDER BY entity_id LIMIT ?6",
            )?;
            let rows = query.query_map(
                params![
                    key.integration,
                    key.account(),
                    key.kind.as_str(),
                    COMPLETE,
                    after_id,
                    limit as i64
                ],
                |r| {
                    Ok(StoredEntity {
                        entity_id: r.get(0)?,
                        hash: r.get(1)?,
                        state: r.get(2)?,
                    })
                },
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SnapshotKey {
        SnapshotKey {
            integration: "corp".into(),
            account_id: None,
            kind: InventoryKind::Users,
        }
    }

    fn entity(id: &str, hash: &str) -> StoredEntity {
        StoredEntity {
            entity_id: id.into(),
            hash: hash.into(),
            state: format!("{id}:{hash}"),
        }
    }

    fn changes(state: &State) -> Vec<(String, Option<String>, Option<String>)> {
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let chunk = state.changed_entities(&key(), &after, 2).unwrap();
            let Some(last) = chunk.last() else {
                return out;
            };
            after = last.entity_id.clone();
            out.extend(chunk.into_iter().map(|c| (c.entity_id, c.before, c.after)));
        }
    }

    #[test]
    fn changes_are_the_entities_whose_hash_differs_and_completion_swaps_the_sets() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("state.db")).unwrap();
        state.begin_snapshot(&key()).unwrap();
        let first = [entity("a", "1"), entity("b", "1"), entity("c", "1")];
        state.add_pending(&key(), &first, &[], 1).unwrap();
        assert_eq!(state.snapshot_completed_ms(&key()).unwrap(), None);
        state.complete_snapshot(&key(), 100, &[], 1).unwrap();
        assert_eq!(state.snapshot_completed_ms(&key()).unwrap(), Some(100));

        // A snapshot that fails part-way: the complete one is untouched, and the next
        // snapshot starts from nothing pending.
        state.begin_snapshot(&key()).unwrap();
        state
            .add_pending(&key(), &[entity("a", "1")], &[], 2)
            .unwrap();
        state.begin_snapshot(&key()).unwrap();
        let second = [entity("a", "1"), entity("b", "2"), entity("d", "1")];
        state.add_pending(&key(), &second[..2], &[], 3).unwrap();
        state.add_pending(&key(), &second[2..], &[], 3).unwrap();
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            changes(&state),
            vec![
                ("b".into(), s("b:1"), s("b:2")),
                ("c".into(), s("c:1"), None),
                ("d".into(), None, s("d:1")),
            ]
        );
        state.complete_snapshot(&key(), 200, &[], 4).unwrap();
        let info = state.snapshots().unwrap();
        assert_eq!((info[0].completed_ms, info[0].entities), (200, 3));
        let stored = |after: &str| -> Vec<String> {
            let chunk = state.complete_entities(&key(), after, 2).unwrap();
            chunk.into_iter().map(|e| e.state).collect()
        };
        assert_eq!(stored(""), ["a:1", "b:2"]);
        assert_eq!(stored("b"), ["d:1"]);
    }
}
