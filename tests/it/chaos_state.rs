//! Chaos on the state database: another process holds its lock, it is made read-only, its disk
//! fills up. Each time the real binary must stop with an error that names the file and the
//! fix, commit nothing past its last checkpoint, and — once the cause is gone — resume and
//! deliver every event exactly once into its file sink.
//!
//! The disk-full and read-only-filesystem tests mount a small tmpfs as the state directory, so
//! they need root (CAP_SYS_ADMIN). Without it they fail with a message saying so, unless
//! `DUO_COLLECTOR_ALLOW_SKIP_MOUNT=1` says that skipping them is fine.
//!
//! Each test prints its loss/duplicate counts and `N passed, N failed`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use duo_collector::simulator::{KindCounts, SimConfig, SimHandle, Simulator};

const DAY_MS: i64 = 86_400_000;

/// A backlog of every kind that takes a few seconds to drain at the test pace.
async fn backlog_sim() -> (Simulator, SimHandle) {
    let now = now_ms();
    let mut cfg: SimConfig = sim_config(0, now - 2 * DAY_MS, now - 60_000);
    cfg.counts = KindCounts {
        authentication: 6_000,
        administrator: 1_500,
        telephony: 800,
        activity: 1_500,
        trust_monitor: 300,
        offline_enrollment: 800,
    };
    cfg.response_delay_ms = 20;
    let sim = start_sim(cfg).await;
    let handle = sim.handle();
    (sim, handle)
}

fn setup_for(sim: &Simulator) -> Setup {
    Setup::new(
        &sim.base_url(),
        &format!(
            "initial_lookback = \"3d\"\npage_size = 200\n{TEST_PACE}\n{}",
            all_logs_line()
        ),
    )
}

/// Runs `collect-now` to completion (optionally under `wrapper`, e.g. setpriv).
async fn collect_now(setup: &Setup, wrapper: &[&str]) -> std::process::Output {
    let config = setup.config.to_str().unwrap();
    let mut args: Vec<&str> = wrapper.to_vec();
    args.extend([bin(), "collect-now", "--config", config]);
    tokio::process::Command::new(args[0])
        .args(&args[1..])
        .env_remove("RUST_LOG")
        .env_remove("STATE_DIRECTORY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .await
        .expect("collect-now runs")
}

/// The run after the cause went away: it succeeds, and the file holds every event once.
async fn resumes_exactly_once(setup: &Setup, handle: &SimHandle, what: &str) -> Tally {
    // Duo's clock is read to the second (the `Date` header): a run less than a second after
    // the killed one opened its window may find that window's end not settled yet, and leave
    // it, rightly, to a later run (ARCHITECTURE.md, "A window is fixed once opened").
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = collect_now(setup, &[]).await;
    assert!(
        out.status.success(),
        "{what}: the run after the fix: {}",
        text(&out)
    );
    let tally = tally(handle, &read_events(&setup.events), &ALL_KINDS, now_ms());
    let ok = tally.exactly_once();
    println!("{what}: {tally}");
    println!("{} passed, {} failed", ok as u8, !ok as u8);
    assert!(ok, "{what}: {tally}");
    tally
}

/// Asserts the failed run's output names `path` and contains `cause`.
fn assert_names_file_and_fix(out: &std::process::Output, path: &Path, cause: &str) {
    let all = text(out);
    assert!(!out.status.success(), "the run must fail: {all}");
    assert!(
        all.contains(&path.display().to_string()) && all.contains(cause),
        "the error names {} and says {cause:?}: {all}",
        path.display()
    );
    assert!(
        all.contains("resumes from the last checkpoint"),
        "the error says what happens next: {all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_database_locked_by_another_process_stops_with_its_name_and_resumes_exactly_once() {
    let (sim, handle) = backlog_sim().await;
    let setup = setup_for(&sim);
    let db = setup.state_db();
    let config = setup.config.to_str().unwrap().to_string();
    let child = spawn_collector(&["collect-now", "--config", &config]);
    wait_for_commits(&db, Duration::from_secs(30)).await;

    // Another connection (this process, not the collector's) takes SQLite's write lock.
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.busy_timeout(Duration::from_secs(10)).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (held_events, held_len) = committed_progress(&db);

    let out = tokio::time::timeout(Duration::from_secs(80), child.wait_with_output())
        .await
        .expect("the collector gives up on the lock instead of waiting forever")
        .unwrap();
    assert_names_file_and_fix(&out, &db, "is locked by another process");
    assert_eq!(
        committed_progress(&db),
        (held_events, held_len),
        "nothing was committed while the lock was held"
    );
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);

    resumes_exactly_once(&setup, &handle, "locked state database").await;
    sim.shutdown().await;
}

/// `setpriv` arguments that take away root's right to ignore file modes, so that a 0444 file
/// is read-only for the child even when the tests run as root.
fn without_root_file_override() -> Vec<&'static str> {
    use std::os::unix::fs::MetadataExt;
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    if euid != 0 {
        return Vec::new();
    }
    assert!(
        Path::new("/usr/bin/setpriv").exists(),
        "running as root, this test needs setpriv (util-linux) to drop CAP_DAC_OVERRIDE"
    );
    vec![
        "/usr/bin/setpriv",
        "--bounding-set=-dac_override,-dac_read_search,-fowner",
        "--inh-caps=-all",
        "--",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_state_database_stops_with_its_name_and_resumes_exactly_once() {
    let (sim, handle) = backlog_sim().await;
    let setup = setup_for(&sim);
    let db = setup.state_db();
    let config = setup.config.to_str().unwrap().to_string();
    // Part of the drain, then a crash, so that there is progress to keep.
    let mut child = spawn_collector(&["collect-now", "--config", &config]);
    wait_for_commits(&db, Duration::from_secs(30)).await;
    child.kill().await.unwrap();
    let before = committed_progress(&db);
    let lines_before = count_lines(&setup.events);

    set_mode(&db, 0o444);
    let out = collect_now(&setup, &without_root_file_override()).await;
    assert_names_file_and_fix(&out, &db, "is read-only");
    assert_eq!(committed_progress(&db), before, "nothing moved");
    assert!(
        count_lines(&setup.events) >= lines_before,
        "the file kept what it had"
    );
    set_mode(&db, 0o600);

    resumes_exactly_once(&setup, &handle, "read-only state database").await;
    sim.shutdown().await;
}

/// A tmpfs mounted for the test's life (unmounted on drop).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` at `path`, or returns None when mounting is not permitted and
    /// `DUO_COLLECTOR_ALLOW_SKIP_MOUNT=1` allows skipping (otherwise it fails the test).
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .expect("mount(8) runs");
        if out.status.success() {
            return Some(Tmpfs {
                path: path.to_path_buf(),
            });
        }
        let why = String::from_utf8_lossy(&out.stderr);
        if std::env::var("DUO_COLLECTOR_ALLOW_SKIP_MOUNT").as_deref() == Ok("1") {
            eprintln!("skipped: cannot mount a tmpfs ({why}); DUO_COLLECTOR_ALLOW_SKIP_MOUNT=1");
            return None;
        }
        panic!(
            "this test mounts a small tmpfs as the state directory and needs root (CAP_SYS_ADMIN): mount failed: {why}; run it as root, or set DUO_COLLECTOR_ALLOW_SKIP_MOUNT=1 to skip it"
        );
    }

    fn remount(&self, option: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{option}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "remount {option} {}", self.path.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// A drain under way, its state directory on a tmpfs, past its first commit.
struct TmpfsDrain {
    sim: Simulator,
    handle: SimHandle,
    setup: Setup,
    state_dir: PathBuf,
    tmpfs: Tmpfs,
    child: tokio::process::Child,
}

impl TmpfsDrain {
    async fn start(size: &str) -> Option<TmpfsDrain> {
        let (sim, handle) = backlog_sim().await;
        let setup = setup_for(&sim);
        let state_dir = setup.dir.path().join("state");
        let tmpfs = Tmpfs::mount(&state_dir, size)?;
        let config = setup.config.to_str().unwrap().to_string();
        let child = spawn_collector(&["collect-now", "--config", &config]);
        wait_for_commits(&setup.state_db(), Duration::from_secs(30)).await;
        Some(TmpfsDrain {
            sim,
            handle,
            setup,
            state_dir,
            tmpfs,
            child,
        })
    }
}

/// Fills the filesystem at `dir` to the last byte; returns the filler file.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 * 1024];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // The last partial block too.
    let mut byte = [0u8; 1];
    while file.write(&byte).map(|n| n > 0).unwrap_or(false) {
        byte[0] = byte[0].wrapping_add(1);
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_disk_stops_collection_with_a_clear_error_and_loses_nothing() {
    let Some(TmpfsDrain {
        sim,
        handle,
        setup,
        state_dir,
        tmpfs: _tmpfs,
        child,
    }) = TmpfsDrain::start("16m").await
    else {
        return;
    };
    let db = setup.state_db();
    let filler = fill(&state_dir);

    let out = tokio::time::timeout(Duration::from_secs(80), child.wait_with_output())
        .await
        .expect("the collector stops on a full disk")
        .unwrap();
    assert_names_file_and_fix(&out, &db, "the disk is full");
    let stopped_at = committed_progress(&db);

    // Still full: the next run refuses too, and moves nothing.
    let again = collect_now(&setup, &[]).await;
    assert!(!again.status.success(), "{}", text(&again));
    assert_eq!(committed_progress(&db), stopped_at);

    std::fs::remove_file(&filler).unwrap();
    resumes_exactly_once(&setup, &handle, "full state disk").await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_state_filesystem_stops_with_the_fix_and_resumes_exactly_once() {
    let Some(TmpfsDrain {
        sim,
        handle,
        setup,
        state_dir,
        tmpfs,
        mut child,
    }) = TmpfsDrain::start("64m").await
    else {
        return;
    };
    let db = setup.state_db();
    child.kill().await.unwrap();
    let before = committed_progress(&db);

    tmpfs.remount("ro");
    let out = collect_now(&setup, &[]).await;
    let lock = state_dir.join("lock");
    assert_names_file_and_fix(&out, &lock, "remount its filesystem read-write");
    tmpfs.remount("rw");
    assert_eq!(committed_progress(&db), before, "nothing moved");

    resumes_exactly_once(&setup, &handle, "read-only state filesystem").await;
    sim.shutdown().await;
}
