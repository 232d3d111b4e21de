//! End to end through the real binary: authentication logs from the simulator into a file sink.

use std::collections::HashSet;

use crate::common::*;

const DAY_MS: i64 = 86_400_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_lands_exactly_once_and_a_rerun_adds_nothing() {
    let now = now_ms();
    let sim = start_sim(sim_config(20_000, now - 2 * DAY_MS, now - 60_000)).await;
    let handle = sim.handle();
    let setup = Setup::new(&sim.base_url(), "initial_lookback = \"3d\"");
    let config = setup.config.to_str().unwrap();

    let out = run_cli(&["collect-now", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        // A rate appears only after a second of data (issue 13: no "1000 events, 1000000/s").
        stderr.contains("progress corp/authentication: up to") && stderr.contains(" events"),
        "plain progress lines when stderr is not a terminal:\n{stderr}"
    );

    let events = read_events(&setup.events);
    let counts = id_counts(&events);
    let expected = handle.expected_events(None, "authentication", now_ms(), last_maxtime(&handle));
    assert_eq!(
        expected.len(),
        20_000,
        "the whole backlog is older than now - delay"
    );
    let expected_ids: HashSet<String> = expected.iter().map(|e| e.id.clone()).collect();
    let got_ids: HashSet<String> = counts.keys().cloned().collect();
    assert_eq!(got_ids, expected_ids, "every event delivered");
    assert!(counts.values().all(|c| *c == 1), "no event delivered twice");
    assert_eq!(events.len(), 20_000);

    // The events are the simulator's records, unchanged, plus our metadata.
    let by_id: std::collections::HashMap<&str, &serde_json::Value> = expected
        .iter()
        .map(|e| (e.id.as_str(), &e.record))
        .collect();
    for e in events.iter().step_by(997) {
        let mut record = e.clone();
        let meta = record
            .as_object_mut()
            .unwrap()
            .remove("_duo_collector")
            .unwrap();
        assert_eq!(meta["integration"], "corp");
        assert_eq!(meta["log"], "authentication");
        assert_eq!(meta["account_id"], serde_json::Value::Null);
        let id = meta["event_id"].as_str().unwrap();
        assert_eq!(&&record, by_id.get(id).unwrap());
    }

    let requests = handle.requests();
    let log_requests: Vec<_> = requests
        .iter()
        .filter(|r| r.path.contains("/logs/"))
        .collect();
    assert!(log_requests.len() >= 20, "paged through many pages");
    assert!(
        log_requests.iter().any(|r| r.boundary_split),
        "the data put same-millisecond events across a page boundary"
    );
    for r in &log_requests {
        let maxtime: i64 = param(&r.params, "maxtime").parse().unwrap();
        assert!(
            maxtime <= r.received_at_ms - 5_000,
            "maxtime {maxtime} later than now - delay at {}",
            r.received_at_ms
        );
        assert_eq!(param(&r.params, "sort"), "ts:asc");
        assert_eq!(param(&r.params, "limit"), "1000");
    }

    // A second run finds nothing new.
    let out = run_cli(&["collect-now", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count_lines(&setup.events), 20_000);

    // status shows the checkpoint and the lag.
    let out = run_cli(&["status", "--config", config, "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = &status["streams"];
    let row = &rows[0];
    assert_eq!(row["log"], "authentication");
    assert_eq!(row["events_total"], 20_000);
    assert_eq!(row["last_run_outcome"], "ok");
    assert!(row["checkpoint"].is_string(), "{row}");
    let lag = row["lag_seconds"].as_i64().unwrap();
    // Lag is now − delay − position (issue 13): a drained stream is caught up, whatever the delay.
    assert!(
        (0..10).contains(&lag),
        "lag {lag}s right after a drained run"
    );
    let out = run_cli(&["status", "--config", config]).await;
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("corp/authentication")
            && shown.contains("lag")
            && shown.contains("checkpoint"),
        "{shown}"
    );
    sim.shutdown().await;
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> &'a str {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {params:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_appear_later_are_collected_by_the_next_run() {
    let now = now_ms();
    // Events keep arriving: the data runs ten minutes into the future.
    let sim = start_sim(sim_config(6_000, now - 10 * 60_000, now + 10 * 60_000)).await;
    let handle = sim.handle();
    let setup = Setup::new(&sim.base_url(), "");
    let config = setup.config.to_str().unwrap();

    let out = run_cli(&["collect-now", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out));
    let first = count_lines(&setup.events);
    let first_max = last_maxtime(&handle);
    // Wait until Duo has published newer events (the data has random gaps).
    wait_for_published(&handle, "authentication", 6_000, first).await;
    let out = run_cli(&["collect-now", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out));
    let second_max = last_maxtime(&handle);
    assert!(second_max > first_max);

    let events = read_events(&setup.events);
    assert!(
        events.len() > first,
        "the second run collected the newer events"
    );
    let counts = id_counts(&events);
    assert!(
        counts.values().all(|c| *c == 1),
        "nothing repeated across runs"
    );
    let expected: HashSet<String> = handle
        .expected_events(None, "authentication", now_ms(), second_max)
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(counts.keys().cloned().collect::<HashSet<_>>(), expected);
    // The second run's window started exactly after the first one's.
    let second_run_min: i64 = handle
        .requests()
        .iter()
        .filter(|r| r.path.contains("/logs/"))
        .filter_map(|r| {
            r.params
                .iter()
                .find(|(k, _)| k == "mintime")
                .map(|(_, v)| v.parse::<i64>().unwrap())
        })
        .max()
        .unwrap();
    assert_eq!(second_run_min, first_max + 1);
    sim.shutdown().await;
}
