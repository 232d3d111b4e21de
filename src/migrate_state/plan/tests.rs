use super::*;
use crate::checkpoint::Checkpoint;
use crate::event::StreamId;
use crate::log_kind::LogKind;
use crate::state::{
    CheckpointDump, ClockStatus, FileMark, FileMarkDump, RunOutcome, RunRecord, SinkStatus,
    StreamDump,
};

fn names() -> Names {
    Names {
        source: "the state database /s/state.db".into(),
        target: "the NATS buckets dc-* at nats://127.0.0.1:4222".into(),
    }
}

fn stream(log: LogKind, mintime_ms: i64) -> StreamDump {
    StreamDump {
        stream: StreamId::new("corp", None, log),
        checkpoint: Some(CheckpointDump {
            checkpoint: Checkpoint::start(log, mintime_ms),
            events_total: 10,
            updated_ms: 5,
        }),
        runs: vec![RunRecord {
            started_ms: 1,
            ended_ms: Some(2),
            pages: 1,
            events: 10,
            outcome: Some(RunOutcome::Ok),
            error: None,
        }],
    }
}

fn sink(name: &str) -> SinkStatus {
    SinkStatus {
        sink: name.into(),
        last_success_ms: Some(3),
        failing_since_ms: None,
        last_error: None,
        last_error_ms: None,
        failed_attempts: 0,
    }
}

fn file(name: &str, len: u64) -> FileMarkDump {
    FileMarkDump {
        mark: FileMark {
            sink: name.into(),
            path: "/var/log/duo/events.jsonl".into(),
            dev: 1,
            ino: 2,
            len,
        },
        updated_ms: 4,
    }
}

fn single_host() -> StateDump {
    StateDump {
        streams: vec![
            stream(LogKind::Authentication, 100),
            stream(LogKind::Administrator, 100),
        ],
        clocks: vec![ClockStatus {
            integration: "corp".into(),
            offset_ms: -40,
            measured_ms: 6,
        }],
        sinks: vec![sink("local")],
        files: vec![file("local", 120)],
        ..StateDump::default()
    }
}

#[test]
fn an_empty_target_gets_everything_and_the_summary_counts_it() {
    let source = single_host();
    let plan = plan(
        Direction::Nats,
        &source,
        &StateDump::default(),
        &names(),
        false,
    )
    .unwrap();
    assert_eq!(
        plan.copied,
        Counts {
            streams: 2,
            checkpoints: 2,
            runs: 2,
            rates: 0,
            clocks: 1,
            sinks: 1,
            files: 1
        }
    );
    assert!(plan.replaced.is_empty() && plan.kept.is_empty());
    let text = render(&plan, &names(), false);
    assert!(
        text.starts_with(
            "migrate-state copied the state database /s/state.db into the NATS buckets dc-*"
        ),
        "{text}"
    );
    for line in [
        "2 streams: 2 checkpoints, 2 runs",
        "0 learned rates",
        "1 Duo clock reading",
        "1 sink status",
        "1 file mark",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    assert!(render(&plan, &names(), true).contains("would copy"));
    // Inventory snapshots are copied (and counted) after the dump, by the command.
    assert!(!text.contains("inventory"), "{text}");
}

#[test]
fn a_source_with_nothing_is_refused_naming_it() {
    let refusal = plan(
        Direction::Nats,
        &StateDump::default(),
        &single_host(),
        &names(),
        true,
    )
    .unwrap_err();
    assert!(matches!(refusal, Refusal::NothingToCopy { .. }));
    assert!(
        refusal.to_string().contains("/s/state.db holds no state"),
        "{refusal}"
    );
}

#[test]
fn a_target_holding_the_sources_keys_is_refused_unless_forced() {
    let source = single_host();
    let mut target = StateDump {
        streams: vec![
            stream(LogKind::Authentication, 999),
            stream(LogKind::Telephony, 1),
        ],
        sinks: vec![sink("local")],
        ..StateDump::default()
    };
    target.files.push(file("other", 1));
    let refusal = plan(Direction::Sqlite, &source, &target, &names(), false).unwrap_err();
    let Refusal::TargetHolds { overlap, .. } = &refusal else {
        panic!("{refusal:?}")
    };
    assert_eq!(overlap.streams, vec!["corp/authentication".to_string()]);
    assert_eq!(overlap.sinks, vec!["local".to_string()]);
    assert!(
        overlap.files.is_empty(),
        "another sink's mark is no conflict"
    );
    let text = refusal.to_string();
    assert!(
        text.contains("1 stream (corp/authentication), 1 sink status (local)")
            && text.contains("--force"),
        "{text}"
    );

    let forced = plan(Direction::Sqlite, &source, &target, &names(), true).unwrap();
    assert_eq!(&forced.replaced, overlap.as_ref());
    assert_eq!(forced.kept, vec!["corp/telephony".to_string()]);
    let text = render(&forced, &names(), false);
    assert!(
        text.contains("replaced what the target held (--force): 1 stream (corp/authentication)"),
        "{text}"
    );
    assert!(
        text.contains("left as they are in the target: 1 stream (corp/telephony)"),
        "{text}"
    );
    assert!(text.contains("set [state] backend = \"sqlite\""), "{text}");
}

#[test]
fn a_long_list_of_names_is_shortened() {
    let overlap = Overlap {
        streams: (0..8)
            .map(|i| format!("corp/DA{i}/authentication"))
            .collect(),
        ..Overlap::default()
    };
    let text = overlap.describe();
    assert!(
        text.starts_with("8 streams (corp/DA0/authentication, "),
        "{text}"
    );
    assert!(
        text.ends_with("corp/DA4/authentication and 3 more)"),
        "{text}"
    );
}

#[test]
fn differences_find_what_the_copy_lacks_or_changed() {
    let source = single_host();
    assert!(differences(&source, &source).is_empty());
    let mut after = source.clone();
    after.streams[0].checkpoint.as_mut().unwrap().events_total += 1;
    after.streams[1].runs.clear();
    after.files[0].mark.len = 0;
    after.sinks.clear();
    assert_eq!(
        differences(&source, &after),
        vec![
            "the checkpoint of corp/authentication differs".to_string(),
            "the runs of corp/administrator differ".to_string(),
            "1 of the source's sink statuses are missing".to_string(),
            "1 of the source's file marks are missing".to_string(),
        ]
    );
    let mut fewer = source.clone();
    fewer.streams.pop();
    assert_eq!(
        differences(&source, &fewer),
        vec!["the stream corp/administrator is missing".to_string()]
    );
}

#[test]
fn refusals_say_what_is_in_the_way_and_the_fix() {
    let locked = Refusal::Locked {
        dir: "/var/lib/duo-collector".into(),
    };
    assert!(
        locked.to_string().contains("/var/lib/duo-collector/lock")
            && locked.to_string().contains("stop it first")
    );
    let leased = Refusal::Leased {
        buckets: "the NATS buckets dc-*".into(),
        holders: vec![crate::state::LeaseHolder {
            stream: StreamId::new("corp", None, LogKind::Authentication),
            instance: "host-1".into(),
            since_ms: 1,
            revision: crate::state::Revision(1),
        }],
    };
    let text = leased.to_string();
    assert!(
        text.contains("1 stream held (corp/authentication by host-1)")
            && text.contains("stop every collector"),
        "{text}"
    );
}
