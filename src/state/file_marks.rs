//! Where a file sink reads its committed length when it opens its file, and records the file
//! as it found it (at open, and after a rotation): the sink does this synchronously, from its
//! constructor and from its blocking write task, so this handle has synchronous methods over
//! either backend.
//!
//! SQLite: `state.db`'s `file_commits`, in the checkpoint's transaction as before. NATS: the
//! `-files` bucket, which `commit_page` writes *before* the checkpoint (no transaction spans
//! keys): a crash between the two leaves a length covering a page whose checkpoint did not
//! move, so that page is written again (at least once for the page in flight), never cut while
//! counted as committed.

use super::{FileMark, NatsStore, State, StateError, StateStore};

#[derive(Debug, Clone)]
pub enum FileMarks {
    Sqlite(State),
    /// The NATS calls run on `runtime` from a thread of their own, so that a synchronous
    /// caller (an async worker or the blocking pool) never blocks the runtime on itself. The
    /// runtime must be multi-threaded when the caller is one of its workers (the binary's is).
    Nats {
        store: NatsStore,
        runtime: tokio::runtime::Handle,
    },
}

impl From<State> for FileMarks {
    fn from(state: State) -> FileMarks {
        FileMarks::Sqlite(state)
    }
}

impl FileMarks {
    /// The store's file marks; call from inside a tokio runtime.
    pub fn of(store: &StateStore) -> FileMarks {
        match store {
            StateStore::Sqlite(s) => FileMarks::Sqlite(s.state().clone()),
            StateStore::Nats(n) => FileMarks::Nats {
                store: n.clone(),
                runtime: tokio::runtime::Handle::current(),
            },
        }
    }

    pub fn file_mark(&self, sink: &str) -> Result<Option<FileMark>, StateError> {
        match self {
            FileMarks::Sqlite(state) => state.file_mark(sink),
            FileMarks::Nats { store, runtime } => on_runtime(runtime, store.file_mark(sink)),
        }
    }

    pub fn record_file_mark(&self, mark: &FileMark, now_ms: i64) -> Result<(), StateError> {
        match self {
            FileMarks::Sqlite(state) => state.record_file_mark(mark, now_ms),
            FileMarks::Nats { store, runtime } => on_runtime(
                runtime,
                store.write(super::Write::FileMark {
                    mark: mark.clone(),
                    now_ms,
                }),
            ),
        }
    }
}

fn on_runtime<T: Send>(
    runtime: &tokio::runtime::Handle,
    call: impl std::future::Future<Output = Result<T, StateError>> + Send,
) -> Result<T, StateError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| runtime.block_on(call))
            .join()
            .unwrap_or_else(|_| {
                Err(StateError::Blocking(
                    "the file mark's call panicked".to_string(),
                ))
            })
    })
}
