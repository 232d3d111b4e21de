//! The state-dir lock (`<state_dir>/lock`): one collector per state directory. The service and
//! `collect-now` hold it while they run; `verify-user` and `migrate-state` ask for it to learn
//! whether one runs.

use std::path::Path;

/// Whether another collector runs with this state directory: `Some(lock)` when this process
/// took the lock (none runs; held until the file is dropped), `None` when another one holds it.
pub fn try_lock_state_dir(dir: &Path) -> Result<Option<std::fs::File>, std::io::Error> {
    std::fs::create_dir_all(dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}
