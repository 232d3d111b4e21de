//! The committed length of each file sink's file, moved in the same transaction as the
//! checkpoint of the page that was written into it.
//!
//! After a crash between a page's write and its commit, the file is longer than its committed
//! length; the file sink cuts it back at start, and the page is fetched and written again, so
//! the file holds every event once. The file is named by device and inode, so a file that
//! logrotate moved away (and the new one created at the path) is told apart from ours.

use rusqlite::{params, OptionalExtension, Transaction};

use super::{State, StateError};

/// A file sink's file and how much of it is committed (or, in a receipt, written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMark {
    pub sink: String,
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
}

impl FileMark {
    /// Whether `meta` is the same file (device and inode).
    pub fn same_file(&self, meta: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.dev == meta.dev() && self.ino == meta.ino()
    }
}

/// SQLite integers are signed: device and inode numbers are stored by their bits.
fn to_sql(n: u64) -> i64 {
    n as i64
}

fn from_sql(n: i64) -> u64 {
    n as u64
}

pub(super) fn write_marks(
    tx: &Transaction<'_>,
    marks: &[FileMark],
    now_ms: i64,
) -> Result<(), StateError> {
    for mark in marks {
        tx.execute(
            "INSERT INTO file_commits(sink, path, dev, ino, committed_len, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(sink) DO UPDATE SET path = excluded.path, dev = excluded.dev, ino = excluded.ino,
               committed_len = excluded.committed_len, updated_ms = excluded.updated_ms",
            params![
                mark.sink,
                mark.path,
                to_sql(mark.dev),
                to_sql(mark.ino),
                to_sql(mark.len),
                now_ms
            ],
        )?;
    }
    Ok(())
}

impl State {
    /// The committed length of the file sink `sink`'s file, if one was ever recorded.
    pub fn file_mark(&self, sink: &str) -> Result<Option<FileMark>, StateError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT path, dev, ino, committed_len FROM file_commits WHERE sink = ?1",
                params![sink],
                |r| {
                    Ok(FileMark {
                        sink: sink.to_string(),
                        path: r.get(0)?,
                        dev: from_sql(r.get(1)?),
                        ino: from_sql(r.get(2)?),
                        len: from_sql(r.get(3)?),
                    })
                },
            )
            .optional()?)
        })
    }

    /// Records a file's committed length outside a page: when the sink opens a file (all of
    /// it is then either committed or not ours), before anything is written into it.
    pub fn record_file_mark(&self, mark: &FileMark, now_ms: i64) -> Result<(), StateError> {
        self.with(|c| {
            let tx = c.transaction()?;
            write_marks(&tx, std::slice::from_ref(mark), now_ms)?;
            tx.commit()?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::StreamId;
    use crate::logs::LogKind;
    use crate::state::Checkpoint;

    fn mark(len: u64) -> FileMark {
        FileMark {
            sink: "local".into(),
            path: "/var/log/duo/events.jsonl".into(),
            dev: u64::MAX - 1,
            ino: 1 << 63,
            len,
        }
    }

    #[test]
    fn marks_move_with_the_checkpoint_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let state = State::open(&path).unwrap();
        assert_eq!(state.file_mark("local").unwrap(), None);
        state.record_file_mark(&mark(0), 1).unwrap();
        let stream = StreamId::new("corp", None, LogKind::Authentication);
        let run = state.begin_run(&stream, 1).unwrap();
        let cp = Checkpoint::start(LogKind::Authentication, 5);
        state
            .commit_page(&stream, run, &cp, 3, 2, &[mark(120)])
            .unwrap();
        drop(state);
        let state = State::open(&path).unwrap();
        // Device and inode numbers above i64::MAX come back intact.
        assert_eq!(state.file_mark("local").unwrap(), Some(mark(120)));
        assert_eq!(state.load_checkpoint(&stream).unwrap(), Some(cp));
    }
}
