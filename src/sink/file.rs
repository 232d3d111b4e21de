//! The file sink: JSON Lines appended to a file, acknowledged once written and fsynced.
//!
//! Two things a long-running daemon meets: a crash can leave a torn last line (repaired at
//! open; that event was never acknowledged, so it is delivered again), and log rotation can
//! move the file away (detected by inode, and the file is reopened at its path). Exactly-once
//! across crashes (the committed length, cut back at open) is `file_commit.rs`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::file_commit::Commits;
use crate::state::FileMarks;

#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    /// `file_mode`: set on every open, since the service's umask would narrow the create mode.
    mode: Option<u32>,
    file: Arc<Mutex<File>>,
    commits: Commits,
    /// The last write's buffer, for the next one (see `take_buffer`).
    spare: Vec<u8>,
}

fn open_append(path: &Path, mode: Option<u32>) -> std::io::Result<File> {
    let mut file = open_append_as_is(path, mode)?;
    repair_torn_tail(&mut file)?;
    Ok(file)
}

fn open_append_as_is(path: &Path, mode: Option<u32>) -> std::io::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)?;
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    Ok(file)
}

/// Cuts a partial last line left by a crash mid-write.
fn repair_torn_tail(file: &mut File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Scan backwards in chunks for the last newline.
    let mut end = len;
    let mut cut = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(pos) = chunk[..n].iter().rposition(|b| *b == b'\n') {
            cut = start + pos as u64 + 1;
            break;
        }
        end = start;
    }
    tracing::warn!(bytes = len - cut, "file sink: removing a torn last line left by an interrupted write; its event is delivered again");
    file.set_len(cut)?;
    file.sync_all()
}

/// Whether the file can be opened for appending (its directory created if need be), as the
/// sink will; writes nothing.
pub fn probe(path: &Path) -> Result<String, super::DriverError> {
    const FIX: &str = "create the directory and give the service user write access (systemd: LogsDirectory= or ReadWritePaths=)";
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            super::DriverError::permanent(
                format!("cannot create the directory of {}: {e}", path.display()),
                FIX,
            )
        })?;
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map(|_| format!("{} is writable", path.display()))
        .map_err(|e| {
            super::DriverError::permanent(
                format!("cannot open {} for appending: {e}", path.display()),
                FIX,
            )
        })
}

impl FileSink {
    /// Opens without a state database: a crash can leave the page in flight written twice.
    pub fn open(path: &Path, mode: Option<u32>) -> std::io::Result<FileSink> {
        FileSink::open_committed("", path, mode, None)
    }

    /// Opens the sink `sink`'s file, first cutting what a crash left after its committed length.
    pub fn open_committed(
        sink: &str,
        path: &Path,
        mode: Option<u32>,
        state: Option<FileMarks>,
    ) -> std::io::Result<FileSink> {
        let file = open_append(path, mode)?;
        let commits = Commits::new(sink, path, state);
        commits.recover(&file)?;
        Ok(FileSink {
            path: path.to_path_buf(),
            mode,
            file: Arc::new(Mutex::new(file)),
            commits,
            spare: Vec::new(),
        })
    }

    /// Opens the file while another process may be writing it (`verify-user` beside the
    /// service): nothing is cut, neither a "torn" last line (it may be that process's write
    /// in progress) nor what follows the committed length (its page in flight).
    pub fn open_beside(sink: &str, path: &Path, mode: Option<u32>) -> std::io::Result<FileSink> {
        let file = open_append_as_is(path, mode)?;
        Ok(FileSink {
            path: path.to_path_buf(),
            mode,
            file: Arc::new(Mutex::new(file)),
            commits: Commits::new(sink, path, None),
            spare: Vec::new(),
        })
    }

    pub(super) fn commits(&self) -> &Commits {
        &self.commits
    }

    /// An empty buffer to fill for `write_durably`: the previous write's, so that pages of
    /// megabytes do not each cost a fresh allocation (and its page faults).
    pub fn take_buffer(&mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.spare);
        buf.clear();
        buf
    }

    /// Appends `bytes` and fsyncs; reopens first if the file was rotated away.
    pub async fn write_durably(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        let file = self.file.clone();
        let path = self.path.clone();
        let mode = self.mode;
        let commits = self.commits.clone();
        let (result, bytes) = tokio::task::spawn_blocking(move || {
            let result = write_locked(&file, &path, mode, &commits, &bytes);
            (result, bytes)
        })
        .await
        .map_err(std::io::Error::other)?;
        if bytes.capacity() <= 16 << 20 {
            self.spare = bytes;
        }
        result
    }
}

fn write_locked(
    file: &Mutex<File>,
    path: &Path,
    mode: Option<u32>,
    commits: &Commits,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut guard = file.lock().unwrap_or_else(|p| p.into_inner());
    let rotated = match std::fs::metadata(path) {
        Ok(on_disk) => {
            let ours = guard.metadata()?;
            on_disk.ino() != ours.ino() || on_disk.dev() != ours.dev()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(e),
    };
    if rotated {
        tracing::info!(path = %path.display(), "file sink: file was moved or removed; reopening");
        *guard = open_append(path, mode)?;
        commits.reopened(&guard)?;
    }
    commits.before_write(&guard)?;
    let before = guard.metadata()?.len();
    let written = guard.write_all(bytes).and_then(|()| guard.sync_data());
    if let Err(e) = written {
        // Never leave part of a batch behind: a retry would glue its first line to
        // the torn fragment. Cut back to where this batch started.
        let _ = guard.set_len(before).and_then(|()| guard.sync_all());
        return Err(e);
    }
    commits.after_write(&guard, before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_is_cut_back_to_the_last_full_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, b"{\"a\":1}\n{\"b\":2}\n{\"c\":").unwrap();
        let _sink = FileSink::open(&path, None).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}\n{\"b\":2}\n");
        std::fs::write(&path, b"no newline at all").unwrap();
        let _sink = FileSink::open(&path, None).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    #[tokio::test]
    async fn appends_and_follows_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/events.jsonl");
        let mut sink = FileSink::open(&path, None).unwrap();
        sink.write_durably(b"1\n".to_vec()).await.unwrap();
        std::fs::rename(&path, dir.path().join("rotated.jsonl")).unwrap();
        sink.write_durably(b"2\n".to_vec()).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"2\n");
        assert_eq!(
            std::fs::read(dir.path().join("rotated.jsonl")).unwrap(),
            b"1\n"
        );
    }

    #[tokio::test]
    async fn file_mode_is_set_on_create_and_after_rotation_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let mode_of = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        // 0644 is wider than the create mode (0640), so only an explicit chmod gives it.
        let mut sink = FileSink::open(&path, Some(0o644)).unwrap();
        assert_eq!(mode_of(&path), 0o644);
        std::fs::rename(&path, dir.path().join("rotated.jsonl")).unwrap();
        sink.write_durably(b"1\n".to_vec()).await.unwrap();
        assert_eq!(mode_of(&path), 0o644);
    }
}
