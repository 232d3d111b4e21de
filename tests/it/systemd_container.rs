//! The operator's path under a real systemd: the `.deb` (built with `cargo deb`) is installed
//! with `dpkg -i` in a Debian 12 container booted by `systemd-nspawn` (systemd as PID 1), and
//! the README's "Install as a service" steps are run there, word for word. The collector talks
//! to the simulator on the host's loopback (the container shares the host network).
//!
//! Needs root, `systemd-nspawn` (systemd-container), `debootstrap` and `cargo-deb`; `.ci/run`
//! installs them. The rootfs (debootstrap minbase, about a minute) is cached under
//! /var/cache/duo-collector-test, keyed by the package list, and built when missing; every run
//! boots it with `--volatile=overlay`, so the cache is never written to. Without root the test
//! prints why it is skipped, and fails when `DUO_COLLECTOR_REQUIRE_CONTAINER_TEST=1` (set by
//! `.ci/run`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{now_ms, sim_config, start_sim, IKEY, SKEY};
use duo_collector::simulator::{Fault, FaultRule, KindCounts};

const SUITE: &str = "bookworm";
const PACKAGES: &str = "systemd,systemd-sysv,dbus,libnss-systemd,logrotate,ca-certificates,procps";
const CACHE_DIR: &str = "/var/cache/duo-collector-test";
const MACHINE_ROOT_NSPAWN: &str = "/run/systemd/nspawn";

fn is_root() -> bool {
    // SAFETY-free: geteuid through `id -u` keeps the test free of libc bindings.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The Debian mirror apt on this machine already uses (deb822 or one-line sources).
fn apt_mirror() -> String {
    let mut texts = Vec::new();
    for path in [
        "/etc/apt/sources.list.d/debian.sources",
        "/etc/apt/sources.list",
    ] {
        if let Ok(t) = std::fs::read_to_string(path) {
            texts.push(t);
        }
    }
    for text in &texts {
        for line in text.lines().map(str::trim) {
            if let Some(uri) = line.strip_prefix("URIs:") {
                if let Some(u) = uri.split_whitespace().find(|u| !u.contains("security")) {
                    return u.to_string();
                }
            }
            if let Some(rest) = line.strip_prefix("deb ") {
                if let Some(u) = rest
                    .split_whitespace()
                    .find(|w| w.starts_with("http") && !w.contains("security"))
                {
                    return u.to_string();
                }
            }
        }
    }
    "http://deb.debian.org/debian".to_string()
}

/// The cached minbase rootfs, built with debootstrap when this package list has none yet.
fn rootfs() -> PathBuf {
    use sha2::Digest;
    let key = hex::encode(&sha2::Sha256::digest(format!("{SUITE}\nminbase\n{PACKAGES}\n"))[..6]);
    let root = Path::new(CACHE_DIR).join(format!("rootfs-{key}"));
    if root.join("usr/lib/systemd/systemd").exists() {
        return root;
    }
    std::fs::create_dir_all(CACHE_DIR).unwrap();
    // Rootfs trees for other package lists are stale: drop them (about 250 MB each).
    for entry in std::fs::read_dir(CACHE_DIR).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("rootfs-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let partial = Path::new(CACHE_DIR).join(format!("rootfs-{key}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let mirror = apt_mirror();
    eprintln!(
        "systemd container: building the rootfs with debootstrap from {mirror} (cached in {})",
        root.display()
    );
    let started = Instant::now();
    let status = Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={PACKAGES}"), SUITE])
        .arg(&partial)
        .arg(&mirror)
        .stdout(Stdio::null())
        .status()
        .expect("debootstrap runs");
    if !status.success() {
        let _ = std::fs::remove_dir_all(&partial);
        panic!("debootstrap failed ({status})");
    }
    // An empty machine-id makes systemd generate one per boot (the overlay keeps it).
    std::fs::write(partial.join("etc/machine-id"), "").unwrap();
    std::fs::rename(&partial, &root).unwrap();
    eprintln!("systemd container: rootfs built in {:?}", started.elapsed());
    root
}

/// The package, built (or found up to date) by `cargo deb`; from the build profile
/// `DUO_COLLECTOR_DEB_PROFILE` names (`.ci/run` packs the debug binaries the tests already
/// built, instead of a release build of its own), release by default.
fn build_deb() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["deb".to_string(), "--locked".to_string()];
    if let Ok(profile) = std::env::var("DUO_COLLECTOR_DEB_PROFILE") {
        args.extend(["--profile".to_string(), profile]);
    }
    let out = run(Command::new(cargo)
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .unwrap_or_else(|| panic!("cargo deb printed no package path:\n{stdout}"));
    PathBuf::from(path)
}

/// A booted container; stopped (and its overlay gone with it) on drop, even after a failure.
struct Container {
    nspawn: Child,
    leader: u32,
    /// Whether this test mounted the tmpfs on /run/systemd/nspawn (then it unmounts it).
    mounted_nspawn_dir: bool,
}

impl Container {
    fn boot(root: &Path, package_dir: &Path) -> Container {
        std::fs::create_dir_all(MACHINE_ROOT_NSPAWN).unwrap();
        let mounted_nspawn_dir = !Command::new("mountpoint")
            .args(["-q", MACHINE_ROOT_NSPAWN])
            .status()
            .is_ok_and(|s| s.success());
        if mounted_nspawn_dir {
            run(Command::new("mount").args(["-t", "tmpfs", "tmpfs", MACHINE_ROOT_NSPAWN]));
        }
        let machine = format!("duo-test-{}", std::process::id());
        let nspawn = Command::new("systemd-nspawn")
            .arg("-D")
            .arg(root)
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                "--console=pipe",
                "--volatile=overlay",
                &format!("--machine={machine}"),
            ])
            .arg(format!("--bind-ro={}:/mnt/pkg", package_dir.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("systemd-nspawn starts");
        let mut container = Container {
            leader: 0,
            nspawn,
            mounted_nspawn_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while container.leader == 0 {
            assert!(
                Instant::now() < deadline,
                "the container's PID 1 did not appear"
            );
            let children = std::fs::read_to_string(format!(
                "/proc/{0}/task/{0}/children",
                container.nspawn.id()
            ))
            .unwrap_or_default();
            // nspawn forks through a short-lived helper; the leader is the child running systemd.
            let leader = children.split_whitespace().find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "systemd")
            });
            match leader {
                Some(pid) => container.leader = pid.parse().unwrap(),
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        // "degraded" is fine: some units of a minimal container fail (no udev, no getty).
        // Until systemd's bus is up the answer is "offline" or an error: ask again.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = container.sh_status("systemctl is-system-running --wait");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the container did not boot: {state} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        container
    }

    /// Runs `script` with bash as root inside the container.
    fn sh_status(&self, script: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-a", "bash", "-c", script])
            .output()
            .expect("nsenter runs")
    }

    /// Runs `script` and insists that it succeeds; returns its stdout.
    fn sh(&self, script: &str) -> String {
        let out = self.sh_status(script);
        assert!(
            out.status.success(),
            "in the container: {script}\nfailed ({}):\n{}{}\njournal:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.journal()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn journal(&self) -> String {
        let out = self.sh_status("journalctl -u duo-collector --no-pager -o cat | tail -n 60");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls `script` until it succeeds.
    fn wait_for(&self, what: &str, timeout: Duration, script: &str) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.sh_status(script);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}:\n{}{}\njournal:\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    self.journal()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn unit_property(&self, name: &str) -> String {
        self.sh(&format!("systemctl show -p {name} --value duo-collector"))
            .trim()
            .to_string()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        // SIGTERM asks nspawn to power the container off; SIGKILL if it does not in time.
        let pid = Pid::from_raw(self.nspawn.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.nspawn.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => {
                    let _ = self.nspawn.kill();
                    let _ = self.nspawn.wait();
                    break;
                }
            }
        }
        if self.mounted_nspawn_dir {
            let _ = Command::new("umount").arg(MACHINE_ROOT_NSPAWN).status();
        }
    }
}

/// The README's "Install as a service" block, between its markers, as one bash script.
fn readme_install_steps() -> String {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("<!-- install-steps")
        .expect("README has the install-steps marker");
    let block = &readme[start..];
    let open = block
        .find("```sh\n")
        .expect("a sh block follows the marker")
        + "```sh\n".len();
    let close = block[open..].find("```").expect("the block ends");
    block[open..open + close].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_installs_starts_collects_reloads_and_recovers_under_systemd() {
    if !is_root() {
        let msg = "SKIPPED systemd_container: needs root (systemd-nspawn boots a Debian 12 container); run `sudo -E cargo test --test it systemd_container::` or .ci/run as root";
        eprintln!("{msg}");
        if std::env::var_os("DUO_COLLECTOR_REQUIRE_CONTAINER_TEST").is_some() {
            panic!("{msg}");
        }
        return;
    }
    for tool in ["systemd-nspawn", "debootstrap", "nsenter", "cargo-deb"] {
        assert!(
            have(tool),
            "{tool} is missing: apt-get install systemd-container debootstrap; cargo install cargo-deb --locked (.ci/run does both)"
        );
    }
    let started = Instant::now();
    let deb = tokio::task::spawn_blocking(build_deb).await.unwrap();
    let root = tokio::task::spawn_blocking(rootfs).await.unwrap();
    let package_dir = tempfile::tempdir().unwrap();
    std::fs::copy(&deb, package_dir.path().join("duo-collector.deb")).unwrap();

    let now = now_ms();
    let mut cfg = sim_config(3_000, now - 6 * 3_600_000, now + 3_600_000);
    cfg.counts = KindCounts {
        authentication: 3_000,
        administrator: 200,
        ..KindCounts::default()
    };
    let sim = start_sim(cfg).await;
    let base_url = sim.base_url();

    let container = Container::boot(&root, package_dir.path());
    let c = &container;
    eprintln!("systemd container: booted after {:?}", started.elapsed());

    // The README's steps, as written; the one edit an operator makes by hand (the placeholders
    // and, here, the simulator's address) is the sed below.
    let steps = readme_install_steps()
        .replace("./duo-collector_*.deb", "/mnt/pkg/duo-collector.deb")
        .replace("your-40-character-secret-key", SKEY);
    let (install, after_edit) = steps
        .split_once("editor /etc/duo-collector/config.toml")
        .expect("the README steps edit the config");
    c.sh(&format!("set -euxo pipefail\n{install}"));
    // The modes the package set: the service's group reads the config, nobody else does.
    let modes = c.sh("stat -c '%a %U:%G %n' /etc/duo-collector /etc/duo-collector/config.toml /etc/duo-collector/credentials /etc/duo-collector/credentials/corp.skey");
    assert!(
        modes.contains("750 root:duo-collector /etc/duo-collector\n"),
        "{modes}"
    );
    assert!(
        modes.contains("640 root:duo-collector /etc/duo-collector/config.toml"),
        "{modes}"
    );
    assert!(
        modes.contains("700 root:root /etc/duo-collector/credentials\n"),
        "{modes}"
    );
    assert!(
        modes.contains("600 root:root /etc/duo-collector/credentials/corp.skey"),
        "{modes}"
    );
    c.sh(&format!(
        r#"set -eux
cfg=/etc/duo-collector/config.toml
sed -i -e 's/^api_hostname = .*/api_hostname = "{host}"/' -e 's/^ikey = .*/ikey = "{IKEY}"/' \
    -e 's|^# connect_to = .*|connect_to = "{base_url}"|' \
    -e 's|^schedule = .*|schedule = "*/3 * * * * *"|' -e 's/^delay = .*/delay = "5s"/' \
    -e 's/^logs = .*/logs = ["authentication", "administrator"]/' \
    -e 's/^# request_timeout = .*/request_timeout = "120s"/' \
    -e 's/^# requests_per_minute = .*/requests_per_minute = 600/' "$cfg"
grep -q '^requests_per_minute = 600' "$cfg"
# A short watchdog, so the stalled-collector check below takes seconds, not minutes.
mkdir -p /etc/systemd/system/duo-collector.service.d
# TimeoutAbortSec: how long systemd waits for the aborted process before SIGKILL (the
# unit's TimeoutStopSec, 90 s, otherwise).
printf '[Service]\nWatchdogSec=4s\nRestartSec=1s\nTimeoutAbortSec=10s\n' > /etc/systemd/system/duo-collector.service.d/test.conf
"#,
        host = crate::common::HOST,
    ));
    c.sh(&format!("set -euxo pipefail\n{after_edit}"));

    // Started and active; events arrive in the sink; the journal has the startup line and no
    // secret.
    assert_eq!(c.sh("systemctl is-active duo-collector").trim(), "active");
    c.wait_for(
        "events in the file sink",
        Duration::from_secs(60),
        "test $(wc -l < /var/log/duo-collector/events.jsonl) -ge 2000",
    );
    let journal = c.sh("journalctl -u duo-collector --no-pager -o cat");
    assert!(journal.contains("duo-collector running"), "{journal}");
    assert!(!journal.contains(SKEY), "the secret key is in the journal");
    let event_file = c.sh("stat -c '%a %U:%G' /var/log/duo-collector/events.jsonl");
    assert_eq!(event_file.trim(), "640 duo-collector:duo-collector");

    // Reload re-reads the config: a second integration appears and collects.
    c.sh(&format!(
        r#"set -eux
cat >> /etc/duo-collector/config.toml <<'EOF'

[[integration]]
name = "second"
api_hostname = "{host}"
ikey = "{IKEY}"
skey_credential = "corp.skey"
connect_to = "{base_url}"
logs = ["authentication"]
schedule = "*/3 * * * * *"
delay = "5s"
requests_per_minute = 600
sinks = ["local"]
EOF
systemctl reload duo-collector"#,
        host = crate::common::HOST,
    ));
    c.wait_for(
        "the reloaded config's integration to deliver",
        Duration::from_secs(60),
        r#"grep -q '"integration":"second"' /var/log/duo-collector/events.jsonl"#,
    );
    assert_eq!(c.unit_property("NRestarts"), "0");
    assert_eq!(c.sh("systemctl is-active duo-collector").trim(), "active");

    // A stalled collector (Duo answers nothing for longer than the watchdog interval) is
    // killed by the watchdog and restarted by systemd.
    // One authentication request hangs: its integration is busy without progress.
    sim.handle().inject_fault_rules(vec![FaultRule {
        path_contains: Some("/admin/v2/logs/authentication".into()),
        fault: Fault::Delay(Duration::from_secs(30)),
    }]);
    c.wait_for(
        "the watchdog to restart the service",
        Duration::from_secs(60),
        "test \"$(systemctl show -p NRestarts --value duo-collector)\" -ge 1",
    );
    let journal = c.sh("journalctl --no-pager -o cat -u duo-collector");
    assert!(
        journal.contains("Watchdog timeout"),
        "no watchdog kill in the journal:\n{journal}"
    );
    c.wait_for(
        "the restarted service to be active",
        Duration::from_secs(60),
        "systemctl is-active duo-collector",
    );
    // The restarted process collects again.
    c.wait_for(
        "the restarted service to complete a collection",
        Duration::from_secs(60),
        r#"journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID=$(systemctl show -p InvocationID --value duo-collector) | grep -q 'collection cycle done'"#,
    );

    // Frozen (SIGSTOP) for longer than the watchdog interval: no heartbeat reaches systemd,
    // which aborts the process (SIGABRT, then SIGCONT) and restarts it; the file sink stays
    // exactly-once across it (checked with the counts below).
    let restarts_before: u32 = c.unit_property("NRestarts").parse().unwrap();
    let frozen_pid = c.unit_property("MainPID");
    c.sh(&format!("kill -STOP {frozen_pid}"));
    c.wait_for(
        "the watchdog to restart the frozen service",
        Duration::from_secs(60),
        &format!(
            "test \"$(systemctl show -p NRestarts --value duo-collector)\" -gt {restarts_before} && systemctl is-active duo-collector"
        ),
    );
    assert_ne!(c.unit_property("MainPID"), frozen_pid, "a new process");
    let journal = c.sh("journalctl --no-pager -o cat -u duo-collector");
    assert!(
        journal.matches("Watchdog timeout").count() >= 2,
        "the frozen process was not killed by the watchdog:\n{journal}"
    );
    c.wait_for(
        "the service restarted after SIGSTOP to complete a collection",
        Duration::from_secs(60),
        r#"journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID=$(systemctl show -p InvocationID --value duo-collector) | grep -q 'collection cycle done'"#,
    );

    // Stop: a clean exit (SIGTERM finishes the page in flight), with every delivered event
    // committed: the distinct events in the file are the events the checkpoints account for.
    c.sh("systemctl stop duo-collector");
    assert_eq!(c.unit_property("Result"), "success");
    assert_eq!(c.unit_property("ExecMainStatus"), "0");
    let journal = c.sh("journalctl -u duo-collector --no-pager -o cat");
    assert!(journal.contains("stopped"), "{journal}");
    assert!(!journal.contains(SKEY), "the secret key is in the journal");

    // `status` from a root shell: no systemd credentials there, and it needs none.
    let status_text = c.sh("duo-collector status");
    assert!(status_text.contains("corp/authentication"), "{status_text}");
    let status_json = c.sh("duo-collector status --json");
    let status: serde_json::Value = serde_json::from_str(&status_json).unwrap();
    let committed: i64 = status["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["events_total"].as_i64().unwrap())
        .sum();
    let distinct: i64 = c
        // Both integrations read the same tenant: an event is distinct per integration.
        .sh(r#"grep -o '"_duo_collector":{[^}]*}' /var/log/duo-collector/events.jsonl | sed 's/"collected_at":"[^"]*",\?//' | sort -u | wc -l"#)
        .trim()
        .parse()
        .unwrap();
    let lines: i64 = c
        .sh("wc -l < /var/log/duo-collector/events.jsonl")
        .trim()
        .parse()
        .unwrap();
    let (lost, duplicated) = (committed - distinct, lines - distinct);
    println!(
        "systemd container (two watchdog restarts, one after SIGSTOP): {committed} events committed, {lost} lost, {duplicated} duplicated"
    );
    let ok = lost == 0 && duplicated == 0;
    println!("{} passed, {} failed", ok as u8, !ok as u8);
    assert_eq!(
        distinct, committed,
        "events in the file vs committed checkpoints"
    );
    assert_eq!(lines, distinct, "no event is in the file twice");
    // The commands that call Duo work from a root shell too: the secret comes from the
    // directory the unit loads.
    c.sh("duo-collector validate && duo-collector collect-now --integration corp");

    drop(container);
    sim.shutdown().await;
    eprintln!("systemd container: done in {:?}", started.elapsed());
}
