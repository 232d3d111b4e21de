//! `migrate-state` through the binary, with a real `nats-server -js` and the strict simulator:
//! a single host's state copied into NATS and back, each `collect-now` after a copy delivering
//! only the events that appeared since (none twice, none lost, into the same file sink); and
//! the refusals: a config without the NATS store, no state database, a collector holding the
//! state-dir lock (a real `run` child), a lease held in the buckets, a target that already
//! holds the streams (and `--force`).

use std::path::{Path, PathBuf};

use crate::common::*;
use crate::sink_support::{free_port, NatsServer};
use duo_collector::event::StreamId;
use duo_collector::log_kind::LogKind;
use duo_collector::settings::Config;
use duo_collector::simulator::{KindCounts, Simulator};
use duo_collector::state::{NatsStore, State, StateStore, StoreSettings};

const KINDS: [&str; 2] = ["authentication", "administrator"];

/// A nats-server, the simulator, and two configs on one state_dir and one file sink: the
/// single host's (SQLite) and the same with `[state] backend = "nats"` on that server.
struct Host {
    _nats_dir: tempfile::TempDir,
    _nats: NatsServer,
    sim: Simulator,
    setup: Setup,
    nats_config: PathBuf,
}

impl Host {
    /// Events of both kinds from ten minutes ago to `future_ms` from now (new ones keep
    /// appearing until then).
    async fn start(counts: KindCounts, future_ms: i64) -> Host {
        let nats_dir = tempfile::tempdir().unwrap();
        let nats = NatsServer::start(nats_dir.path(), free_port()).await;
        let now = now_ms();
        let mut cfg = sim_config(0, now - 10 * 60_000, now + future_ms);
        cfg.counts = counts;
        let sim = start_sim(cfg).await;
        let setup = Setup::new(
            &sim.base_url(),
            "initial_lookback = \"1h\"\npage_size = 500\nlogs = [\"authentication\", \"administrator\"]",
        );
        let nats_config = setup.dir.path().join("config-nats.toml");
        let mut text = std::fs::read_to_string(&setup.config).unwrap();
        text.push_str(&format!(
            "\n[state]\nbackend = \"nats\"\nurl = \"{}\"\nbucket_prefix = \"grown\"\n",
            nats.url()
        ));
        std::fs::write(&nats_config, text).unwrap();
        set_mode(&nats_config, 0o600);
        Host {
            _nats_dir: nats_dir,
            _nats: nats,
            sim,
            setup,
            nats_config,
        }
    }

    fn sqlite_config(&self) -> &str {
        self.setup.config.to_str().unwrap()
    }

    fn nats_config(&self) -> &str {
        self.nats_config.to_str().unwrap()
    }

    async fn migrate(&self, extra: &[&str]) -> std::process::Output {
        let mut args = vec!["migrate-state", "--config", self.nats_config()];
        args.extend_from_slice(extra);
        run_cli(&args).await
    }

    async fn collect_now(&self, config: &str) {
        let out = run_cli(&["collect-now", "--config", config]).await;
        assert!(out.status.success(), "{}", text(&out));
    }

    /// The file sink against what the simulator published up to now.
    fn tally(&self) -> Tally {
        tally(
            &self.sim.handle(),
            &read_events(&self.setup.events),
            &KINDS,
            now_ms(),
        )
    }

    async fn nats_store(&self) -> NatsStore {
        let config = Config::load(&self.nats_config).unwrap();
        let StoreSettings::Nats(settings) = &config.state else {
            panic!("the NATS store")
        };
        NatsStore::open(settings).await.unwrap()
    }

    fn sqlite_store(&self) -> StateStore {
        StateStore::sqlite(State::open(&self.setup.state_db()).unwrap())
    }
}

fn auth() -> StreamId {
    StreamId::new("corp", None, LogKind::Authentication)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every checkpoint and file mark of `a` is in `b` as it is in `a`.
async fn assert_same_state(a: &StateStore, b: &StateStore) {
    let (a, b) = (a.export_all().await.unwrap(), b.export_all().await.unwrap());
    assert!(!a.streams.is_empty());
    for stream in &a.streams {
        let copy = b.streams.iter().find(|s| s.stream == stream.stream);
        assert_eq!(
            copy.map(|c| (&c.checkpoint, &c.runs)),
            Some((&stream.checkpoint, &stream.runs)),
            "{}",
            stream.stream
        );
    }
    assert_eq!(a.files, b.files, "the file sinks' committed lengths");
    assert_eq!(a.sinks, b.sinks);
    assert_eq!(a.rates, b.rates);
}

/// One host collects into a file sink on SQLite; its state is copied into NATS; the next
/// collection runs on NATS and delivers only what appeared since, into the same file; the
/// state goes back into the state.db (refused at first: the file still holds the old state;
/// `--force` replaces it) and the collection after that, on SQLite again, delivers the rest.
/// In the end the file holds every event exactly once. Without the copy, the NATS run would
/// start over from `initial_lookback` (duplicates), and the SQLite run would resume from the
/// old checkpoints and cut the file back to the old committed length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_host_moves_its_state_into_nats_and_back_and_no_event_is_lost_or_repeated() {
    let future_ms = 25_000;
    let counts = KindCounts {
        authentication: 6_000,
        administrator: 600,
        ..KindCounts::default()
    };
    let host = Host::start(counts, future_ms).await;
    let end_ms = now_ms() + future_ms;
    let handle = host.sim.handle();

    host.collect_now(host.sqlite_config()).await;
    let on_sqlite = host.tally();
    assert!(
        on_sqlite.duplicated == 0 && on_sqlite.unexpected == 0,
        "{on_sqlite}"
    );
    let delivered_on_sqlite = read_events(&host.setup.events).len();
    assert!(delivered_on_sqlite > 0);

    let out = host.migrate(&["--to", "nats"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("2 streams: 2 checkpoints, 2 runs"),
        "{summary}"
    );
    assert!(summary.contains("1 file mark"), "{summary}");
    let nats = StateStore::Nats(host.nats_store().await);
    assert_same_state(&host.sqlite_store(), &nats).await;

    let auth_seen = read_events(&host.setup.events)
        .iter()
        .filter(|e| e["_duo_collector"]["log"] == "authentication")
        .count();
    wait_for_published(&handle, "authentication", 6_000, auth_seen).await;
    host.collect_now(host.nats_config()).await;
    let on_nats = host.tally();
    assert!(
        on_nats.duplicated == 0 && on_nats.unexpected == 0,
        "the NATS run resumed from the copied checkpoints: {on_nats}"
    );
    let delivered_on_nats = read_events(&host.setup.events).len();
    assert!(
        delivered_on_nats > delivered_on_sqlite,
        "the NATS run delivered the new events: {delivered_on_nats} after {delivered_on_sqlite}"
    );

    // The state.db still holds the single host's state from before: refused, named.
    let refused = host.migrate(&["--to", "sqlite"]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let error = stderr(&refused);
    assert!(
        error.contains("already holds state")
            && error.contains("corp/authentication")
            && error.contains("--force"),
        "{error}"
    );
    let back = host.migrate(&["--to", "sqlite", "--force"]).await;
    assert!(back.status.success(), "{}", text(&back));
    assert!(
        String::from_utf8_lossy(&back.stdout).contains("replaced what the target held"),
        "{}",
        text(&back)
    );
    assert_same_state(&nats, &host.sqlite_store()).await;

    // Everything published, past the delay: the last run on SQLite collects the rest.
    wait_until("the simulator's last events are published", || {
        now_ms() > end_ms + 8_000
    })
    .await;
    host.collect_now(host.sqlite_config()).await;
    let last = host.tally();
    assert!(last.exactly_once(), "{last}");
    assert!(
        read_events(&host.setup.events).len() > delivered_on_nats,
        "the SQLite run delivered the newer events"
    );
    host.sim.shutdown().await;
}

/// The refusals, each with exit 1 (2 for the config) and the fix, and nothing written: a
/// config whose state is not in NATS; no state database; a collector running with the
/// state_dir (a real `run`); a lease held in the buckets. Then `--dry-run` writes nothing, the
/// copy lands, a second copy is refused because the buckets hold the streams, and `--force`
/// replaces them; and the buckets go back into a new file named by `--state-db`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_state_refuses_while_a_collector_runs_or_the_target_holds_the_streams() {
    let counts = KindCounts {
        authentication: 1_500,
        administrator: 100,
        ..KindCounts::default()
    };
    let host = Host::start(counts, -60_000).await;

    let no_nats = run_cli(&[
        "migrate-state",
        "--config",
        host.sqlite_config(),
        "--to",
        "nats",
    ])
    .await;
    assert_eq!(no_nats.status.code(), Some(2), "{}", text(&no_nats));
    assert!(
        stderr(&no_nats).contains("[state]: field `backend`"),
        "{}",
        text(&no_nats)
    );

    let no_db = host.migrate(&["--to", "nats"]).await;
    assert_eq!(no_db.status.code(), Some(1), "{}", text(&no_db));
    assert!(
        stderr(&no_db).contains("no state database at"),
        "{}",
        text(&no_db)
    );

    let mut collector = spawn_collector(&["run", "--config", host.sqlite_config()]);
    wait_for_commits(&host.setup.state_db(), std::time::Duration::from_secs(30)).await;
    let locked = host.migrate(&["--to", "nats"]).await;
    assert_eq!(locked.status.code(), Some(1), "{}", text(&locked));
    assert!(
        stderr(&locked).contains("a collector is running with state_dir"),
        "{}",
        text(&locked)
    );
    collector.kill().await.unwrap();
    collector.wait().await.unwrap();
    // Finish the backlog with the collector stopped, so the state no longer moves.
    host.collect_now(host.sqlite_config()).await;

    let nats = host.nats_store().await;
    let held = nats
        .take_lease(&auth(), now_ms())
        .await
        .unwrap()
        .expect("free");
    let leased = host.migrate(&["--to", "nats"]).await;
    assert_eq!(leased.status.code(), Some(1), "{}", text(&leased));
    let error = stderr(&leased);
    assert!(
        error.contains("collectors are running on the NATS buckets grown-*")
            && error.contains(&format!("corp/authentication by {}", nats.instance())),
        "{error}"
    );
    nats.release_lease(&held).await.unwrap();
    let nats = StateStore::Nats(nats);

    let dry = host.migrate(&["--to", "nats", "--dry-run"]).await;
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("would copy"),
        "{}",
        text(&dry)
    );
    assert!(
        nats.export_all().await.unwrap().is_empty(),
        "a dry run writes nothing"
    );

    let copied = host.migrate(&["--to", "nats"]).await;
    assert!(copied.status.success(), "{}", text(&copied));
    let sqlite = host.sqlite_store();
    assert_same_state(&sqlite, &nats).await;
    let in_nats = nats.load_checkpoint(&auth()).await.unwrap();

    let again = host.migrate(&["--to", "nats"]).await;
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    let error = stderr(&again);
    assert!(
        error.contains("the NATS buckets grown-* at nats://127.0.0.1:")
            && error.contains("already holds state")
            && error.contains("2 streams (corp/administrator, corp/authentication)")
            && error.contains("--force"),
        "{error}"
    );
    assert_eq!(
        nats.load_checkpoint(&auth()).await.unwrap(),
        in_nats,
        "a refused copy writes nothing"
    );

    let forced = host.migrate(&["--to", "nats", "--force"]).await;
    assert!(forced.status.success(), "{}", text(&forced));
    assert!(
        String::from_utf8_lossy(&forced.stdout)
            .contains("replaced what the target held (--force): 2 streams"),
        "{}",
        text(&forced)
    );
    assert_same_state(&sqlite, &nats).await;
    assert_state_dir_unlocked(&host.setup.state_db());

    // Back into another, new file (named with the flag's alias), nothing to replace there.
    let elsewhere = host.setup.dir.path().join("elsewhere/state.db");
    let path = elsewhere.to_str().unwrap();
    let back = host
        .migrate(&["--to", "sqlite", "--from-state-db", path])
        .await;
    assert!(back.status.success(), "{}", text(&back));
    let copy = StateStore::sqlite(State::open(&elsewhere).unwrap());
    assert_same_state(&nats, &copy).await;
    host.sim.shutdown().await;
}

/// migrate-state let go of the state-dir lock when it exited.
fn assert_state_dir_unlocked(db: &Path) {
    let dir = db.parent().unwrap();
    assert!(
        duo_collector::state::try_lock_state_dir(dir)
            .unwrap()
            .is_some(),
        "the lock is free"
    );
}

/// A dump with every field set (an MSP child, a v1 seen list, a Trust Monitor offset, a run
/// still marked running and a failed one, a rate limit, a failing sink, a file mark with
/// device and inode numbers above `i64::MAX`) reads back exactly from SQLite and from NATS,
/// and a second import without overwriting is refused by both, naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_with_every_field_reads_back_from_both_backends_and_is_not_imported_twice() {
    use duo_collector::checkpoint::{Checkpoint, Cursor, V1Checkpoint, WindowedCheckpoint};
    use duo_collector::pacing::PaceKey;
    use duo_collector::state::{
        CheckpointDump, ClockStatus, FileMark, FileMarkDump, RateDump, RunOutcome, RunRecord,
        SinkStatus, StateDump, StateError, StreamDump,
    };

    let run = |outcome: Option<RunOutcome>, error: Option<&str>| RunRecord {
        started_ms: 10,
        ended_ms: outcome.map(|_| 20),
        pages: 3,
        events: 1_200,
        outcome,
        error: error.map(str::to_string),
    };
    let dump = StateDump {
        streams: vec![
            StreamDump {
                stream: StreamId::new("corp", None, LogKind::Administrator),
                checkpoint: Some(CheckpointDump {
                    checkpoint: Checkpoint::V1(V1Checkpoint {
                        mintime_ms: 1_700_000_000_000,
                        seen: vec!["f1".into(), "f2".into()],
                        newest_event_ms: Some(1_700_000_000_000),
                    }),
                    events_total: 42,
                    updated_ms: 7,
                }),
                runs: vec![run(Some(RunOutcome::Ok), None), run(None, None)],
            },
            StreamDump {
                stream: StreamId::new("corp", Some("DA1.east".into()), LogKind::TrustMonitor),
                checkpoint: Some(CheckpointDump {
                    checkpoint: Checkpoint::Windowed(WindowedCheckpoint {
                        mintime_ms: 5,
                        window_max_ms: Some(9_000),
                        cursor: Some(Cursor::TrustMonitorOffset {
                            offset: "31415".into(),
                        }),
                        newest_event_ms: None,
                    }),
                    events_total: 0,
                    updated_ms: 8,
                }),
                runs: vec![run(Some(RunOutcome::Failed), Some("refused: 403"))],
            },
            StreamDump {
                stream: StreamId::new("msp", Some("DA2".into()), LogKind::Authentication),
                checkpoint: None,
                runs: vec![run(Some(RunOutcome::NotPermitted), Some("not permitted"))],
            },
        ],
        rates: vec![RateDump {
            integration: "corp".into(),
            key: PaceKey {
                account: "DA1.east".into(),
                endpoint: "/admin/v2/logs/authentication".into(),
            },
            rate_per_minute: 37.5,
            ceiling_per_minute: 60.0,
            updated_ms: 11,
            rate_limited_until_ms: Some(99),
        }],
        clocks: vec![ClockStatus {
            integration: "corp".into(),
            offset_ms: -45_000,
            measured_ms: 12,
        }],
        sinks: vec![SinkStatus {
            sink: "siem".into(),
            last_success_ms: Some(1),
            failing_since_ms: Some(2),
            last_error: Some("connection refused".into()),
            last_error_ms: Some(3),
            failed_attempts: 4,
        }],
        files: vec![FileMarkDump {
            mark: FileMark {
                sink: "local".into(),
                path: "/var/log/duo/events.jsonl".into(),
                dev: u64::MAX - 1,
                ino: 1 << 63,
                len: 4_096,
            },
            updated_ms: 13,
        }],
    };
    let dir = tempfile::tempdir().unwrap();
    let nats_server = NatsServer::start(dir.path(), free_port()).await;
    let sqlite = StateStore::sqlite(State::open(&dir.path().join("state.db")).unwrap());
    let settings = duo_collector::state::NatsStoreSettings {
        connection: duo_collector::nats_connection::NatsConnection {
            url: nats_server.url(),
            auth: duo_collector::nats_connection::NatsAuth::None,
            tls: Default::default(),
            tls_required: false,
            timeout: std::time::Duration::from_secs(5),
        },
        bucket_prefix: "dump".into(),
        replicas: 1,
        lease_ttl: duo_collector::state::DEFAULT_LEASE_TTL,
    };
    let nats = StateStore::Nats(NatsStore::open(&settings).await.unwrap());

    for store in [&sqlite, &nats] {
        assert!(store.export_all().await.unwrap().is_empty());
        store.import(dump.clone(), false).await.unwrap();
        assert_eq!(store.export_all().await.unwrap(), dump, "{store:?}");
        let twice = store.import(dump.clone(), false).await.unwrap_err();
        assert!(
            matches!(&twice, StateError::AlreadyHeld { what, .. } if what.contains("corp/administrator") || what.contains("local")),
            "{twice}"
        );
        store.import(dump.clone(), true).await.unwrap();
        assert_eq!(
            store.export_all().await.unwrap(),
            dump,
            "overwritten with the same"
        );
    }
}

/// Inventory snapshots move with the state: after `--to nats`, the first snapshot on NATS is
/// compared with the one taken on SQLite, so it reports exactly what changed meanwhile (a first
/// snapshot would report nothing); a second copy is refused while the target holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_snapshots_move_into_nats_and_the_next_snapshot_reports_the_changes_since() {
    use crate::inventory::{
        changed_ids, collect, disable_an_active_user, events_from, ocsf_setup, sim_cfg,
    };
    let nats_dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(nats_dir.path(), free_port()).await;
    let sim = start_sim(sim_cfg(120)).await;
    let handle = sim.handle();
    let setup = ocsf_setup(&sim.base_url(), r#"inventory = ["users"]"#);
    let out = collect(&setup, "inventory").await;
    assert!(out.status.success(), "{}", text(&out));

    let mut config = std::fs::read_to_string(&setup.config).unwrap();
    config.push_str(&format!(
        "\n[state]\nbackend = \"nats\"\nurl = \"{}\"\nbucket_prefix = \"moved\"\n",
        nats.url()
    ));
    std::fs::write(&setup.config, config).unwrap();
    let config = setup.config.to_str().unwrap();
    let out = run_cli(&["migrate-state", "--config", config, "--to", "nats"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("inventory snapshots copied: 1"),
        "{}",
        text(&out)
    );

    let mut expected = std::collections::BTreeSet::new();
    handle.mutate_inventory(None, |inv| {
        expected.insert(("users".to_string(), disable_an_active_user(inv)));
    });
    let before = count_lines(&setup.events);
    let out = collect(&setup, "inventory").await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        changed_ids(&events_from(&setup.events, before)),
        expected,
        "the snapshot on NATS is compared with the one copied from SQLite"
    );

    let again = run_cli(&["migrate-state", "--config", config, "--to", "nats"]).await;
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("already holds"), "{}", text(&again));
    sim.shutdown().await;
    nats.stop();
}
