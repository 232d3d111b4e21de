//! stdout is a Unix citizen: when the reader of the pipe goes away (`| head -1`), `demo` ends
//! promptly with exit 0, and a configured stdout sink ends `collect-now` and `run` with one
//! clear line and exit 1 — no retry storm, no `Debug` dump.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{now_ms, sim_config, start_sim, Setup};

/// Starts the binary with stdout piped, reads one line, closes the pipe and waits for the
/// exit. Returns (exit code, seconds after the close, stderr).
fn read_one_line_then_close(args: &[String]) -> (Option<i32>, f64, String) {
    let mut child = Command::new(crate::common::bin())
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    assert!(first.starts_with('{'), "first line is an event: {first}");
    // BufReader and the pipe are dropped here: the next write gets EPIPE.
    let closed = Instant::now();
    let deadline = closed + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let after = closed.elapsed().as_secs_f64();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        status.is_some(),
        "{args:?} still running 20 s after its stdout was closed:\n{stderr}"
    );
    (status.and_then(|s| s.code()), after, stderr)
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn assert_tidy(stderr: &str) {
    assert!(!stderr.contains("IntegrationReport"), "{stderr}");
    assert!(!stderr.contains("StreamReport"), "{stderr}");
    assert!(
        stderr.matches("os error 32").count() == 0,
        "raw EPIPE errors: {stderr}"
    );
}

#[test]
fn demo_ends_with_exit_0_when_its_reader_leaves() {
    let (code, after, stderr) = read_one_line_then_close(&owned(&["demo", "--events", "2000"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(after < 10.0, "took {after} s");
    assert_tidy(&stderr);
    // Tidy output: no library INFO noise, no `Some(…)`, and a totals line at the end.
    assert!(!stderr.contains("tokio_cron_scheduler"), "{stderr}");
    assert!(!stderr.contains("Some("), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("stopped: ") && l.contains(" events in ")),
        "no totals line: {stderr}"
    );
}

#[test]
fn demo_once_ends_with_exit_0_when_its_reader_leaves() {
    let (code, after, stderr) =
        read_one_line_then_close(&owned(&["demo", "--once", "--events", "5000"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(after < 10.0, "took {after} s");
    assert_tidy(&stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdout_sink_whose_reader_leaves_ends_collect_now_and_run_with_one_line() {
    let now = now_ms();
    let sim = start_sim(sim_config(5_000, now - 86_400_000, now - 60_000)).await;
    let setup = Setup::new(&sim.base_url(), "");
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("sinks = [\"local\"]", "sinks = [\"out\"]")
        .replace("page_size", "#")
        + "\n[[sink]]\nname = \"out\"\ntype = \"stdout\"\nformat = \"raw\"\n";
    let text = text.replace(
        "sinks = [\"out\"]\n",
        "sinks = [\"out\"]\npage_size = 100\n",
    );
    std::fs::write(&setup.config, text).unwrap();
    let config = setup.config.to_str().unwrap().to_string();
    for command in ["collect-now", "run"] {
        let args = owned(&[command, "--config", config.as_str()]);
        let (code, after, stderr) =
            tokio::task::spawn_blocking(move || read_one_line_then_close(&args))
                .await
                .unwrap();
        assert_eq!(code, Some(1), "{command}: {stderr}");
        assert!(after < 10.0, "{command}: took {after} s");
        assert_tidy(&stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{command}: {stderr}");
        assert!(errors[0].contains("standard output was closed"), "{stderr}");
    }
    sim.shutdown().await;
}

/// `status`, `validate` and `test-connectivity` write a report and exit: a reader that left
/// before it arrived (`duo-collector status | true`) is no reason to panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_commands_exit_0_when_their_reader_has_gone() {
    let now = now_ms();
    let sim = start_sim(sim_config(500, now - 3_600_000, now - 60_000)).await;
    let setup = Setup::new(&sim.base_url(), "");
    let config = setup.config.to_str().unwrap().to_string();
    let collected = crate::common::run_cli(&["collect-now", "--config", &config]).await;
    assert!(
        collected.status.success(),
        "{}",
        crate::common::text(&collected)
    );
    for args in [
        vec!["status", "--config", &config],
        vec!["status", "--json", "--config", &config],
        vec!["validate", "--config", &config],
        vec!["test-connectivity", "--config", &config],
    ] {
        let mut child = Command::new(crate::common::bin())
            .args(&args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end before the report is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}:\n{stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}:\n{stderr}");
    }
    sim.shutdown().await;
}
