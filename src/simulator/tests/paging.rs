//! Generation, paging and visibility.

use std::collections::HashSet;

use serde_json::Value;

use super::*;
use crate::simulator::data::{Dataset, Kind};

#[test]
fn generation_is_deterministic() {
    let c = cfg();
    let a = Dataset::generate(&c, 7, &c.counts, None, HOST);
    let b = Dataset::generate(&c, 7, &c.counts, None, HOST);
    let other = Dataset::generate(&c, 8, &c.counts, None, HOST);
    for kind in Kind::ALL {
        let ea = a.expected(kind, i64::MAX, i64::MAX);
        assert_eq!(ea.len(), c.counts.get(kind));
        assert_eq!(ea, b.expected(kind, i64::MAX, i64::MAX), "{kind:?}");
        assert_ne!(ea, other.expected(kind, i64::MAX, i64::MAX), "{kind:?}");
        let ids: HashSet<_> = ea.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids.len(), ea.len(), "ids unique for {kind:?}");
        if kind.is_v1() {
            let contents: HashSet<_> = ea.iter().map(|e| e.record.to_string()).collect();
            assert_eq!(contents.len(), ea.len(), "v1 records unique for {kind:?}");
        }
        // Sorted by (ts, id) and inside the configured range.
        assert!(ea.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
        assert!(ea
            .iter()
            .all(|e| e.ts_ms >= c.start_ms - 1000 && e.ts_ms < c.end_ms));
    }
    // Equal-ms groups straddle every index ≡ 99 (mod 100).
    let auth = &a.kind(Kind::Authentication).events;
    for b in (99..auth.len() - 1).step_by(100) {
        assert_eq!(auth[b].ms(), auth[b + 1].ms(), "group at {b}");
    }
    let admin = &a.kind(Kind::Administrator).events;
    for b in (999..admin.len() - 1).step_by(1000) {
        assert_eq!(admin[b].ms() / 1000, admin[b + 1].ms() / 1000);
    }
}

#[test]
fn admin_second_over_1000() {
    let mut c = cfg();
    c.admin_second_over_1000 = true;
    let d = Dataset::generate(&c, 3, &c.counts, None, HOST);
    let ev = &d.kind(Kind::Administrator).events;
    let mut best = 0;
    let mut run = 1;
    for w in ev.windows(2) {
        run = if w[0].ms() == w[1].ms() { run + 1 } else { 1 };
        best = best.max(run);
    }
    assert!(best > 1000, "{best}");
}

#[tokio::test]
async fn auth_backlog_paging_returns_everything_once() {
    let c = cfg();
    let sim = start(c.clone()).await;
    let maxtime = now_ms() - 2 * MIN;
    let mut seen = Vec::new();
    let mut cursor: Option<(String, String)> = None;
    let mut pages = 0;
    loop {
        let mut call = Call::get(&c, "/admin/v2/logs/authentication", &[])
            .param("mintime", c.start_ms.to_string())
            .param("maxtime", maxtime.to_string())
            .param("limit", "1000")
            .param("sort", "ts:asc");
        if let Some((ms, id)) = &cursor {
            // Alternate between the comma-joined and the repeated-key forms.
            call = if pages % 2 == 0 {
                call.param("next_offset", format!("{ms},{id}"))
            } else {
                call.param("next_offset", ms.clone())
                    .param("next_offset", id.clone())
            };
        }
        let (status, v) = call.json(&sim).await;
        assert_eq!(status, 200, "{v}");
        pages += 1;
        let resp = &v["response"];
        assert_eq!(resp["metadata"]["total_objects"], 5000);
        for r in resp["authlogs"].as_array().unwrap() {
            let iso = r["isotimestamp"].as_str().unwrap();
            let ms = chrono::DateTime::parse_from_rfc3339(iso)
                .unwrap()
                .timestamp_millis();
            assert_eq!(r["timestamp"].as_i64().unwrap(), ms.div_euclid(1000));
            seen.push((ms, r["txid"].as_str().unwrap().to_string()));
        }
        match resp["metadata"]["next_offset"].as_array() {
            Some(a) => {
                let last = seen.last().unwrap();
                assert_eq!(a[0].as_str().unwrap(), last.0.to_string());
                assert_eq!(a[1].as_str().unwrap(), last.1);
                cursor = Some((last.0.to_string(), last.1.clone()));
            }
            None => {
                assert!(resp["metadata"]["next_offset"].is_null());
                break;
            }
        }
        assert!(pages < 20);
    }
    assert_eq!(pages, 5);
    let expected = sim
        .handle()
        .expected_events(None, "authentication", now_ms(), maxtime);
    let want: Vec<(i64, String)> = expected.iter().map(|e| (e.ts_ms, e.id.clone())).collect();
    assert_eq!(seen, want);
    let reqs = sim.handle().requests();
    assert_eq!(reqs.len(), 5);
    assert!(reqs.iter().any(|r| r.boundary_split));
    assert!(reqs.iter().all(|r| r.status == 200));
    assert_eq!(reqs[0].records, Some(1000));
    assert_eq!(reqs[0].kind.as_deref(), Some("authentication"));
    assert_eq!(reqs[4].records, Some(1000));
    assert!(!reqs[4].boundary_split);

    // Descending, default sort, with a cursor: strictly before it.
    let (_, v) = Call::get(&c, "/admin/v2/logs/authentication", &[])
        .param("mintime", c.start_ms.to_string())
        .param("maxtime", maxtime.to_string())
        .json(&sim)
        .await;
    let logs = v["response"]["authlogs"].as_array().unwrap();
    assert_eq!(logs.len(), 100);
    assert_eq!(logs[0]["txid"].as_str().unwrap(), want[4999].1);
    assert_eq!(logs[99]["txid"].as_str().unwrap(), want[4900].1);
    let next = v["response"]["metadata"]["next_offset"].as_array().unwrap();
    let (_, v) = Call::get(&c, "/admin/v2/logs/authentication", &[])
        .param("mintime", c.start_ms.to_string())
        .param("maxtime", maxtime.to_string())
        .param("offset", next[0].as_str().unwrap())
        .param("offset", next[1].as_str().unwrap())
        .json(&sim)
        .await;
    assert_eq!(
        v["response"]["authlogs"][0]["txid"].as_str().unwrap(),
        want[4899].1
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn telephony_activity_and_trust_monitor_paging() {
    let c = cfg();
    let sim = start(c.clone()).await;
    let maxtime = now_ms() - 2 * MIN;
    for (kind, path, id_field) in [
        ("telephony", "/admin/v2/logs/telephony", "telephony_id"),
        ("activity", "/admin/v2/logs/activity", "activity_id"),
    ] {
        let mut seen = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut call = Call::get(&c, path, &[])
                .param("mintime", c.start_ms.to_string())
                .param("maxtime", maxtime.to_string())
                .param("limit", "100")
                .param("sort", "ts:asc");
            if let Some(n) = &next {
                call = call.param("next_offset", n.clone());
            }
            let (status, v) = call.json(&sim).await;
            assert_eq!(status, 200, "{v}");
            let resp = &v["response"];
            assert_eq!(resp["metadata"]["total_objects"]["value"], 700);
            assert_eq!(resp["metadata"]["total_objects"]["relation"], "eq");
            for r in resp["items"].as_array().unwrap() {
                assert!(r["ts"].as_str().unwrap().ends_with("+00:00"));
                seen.push(r[id_field].as_str().unwrap().to_string());
            }
            match resp["metadata"]["next_offset"].as_str() {
                Some(s) => next = Some(s.to_string()),
                None => break,
            }
        }
        let want: Vec<String> = sim
            .handle()
            .expected_events(None, kind, now_ms(), maxtime)
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(seen, want, "{kind}");
    }

    // Trust Monitor: positional offset, next_offset absent when done.
    let mut seen = Vec::new();
    let mut offset: Option<String> = None;
    loop {
        let mut call = Call::get(&c, "/admin/v1/trust_monitor/events", &[])
            .param("mintime", c.start_ms.to_string())
            .param("maxtime", maxtime.to_string())
            .param("limit", "200");
        if let Some(o) = &offset {
            call = call.param("offset", o.clone());
        }
        let (status, v) = call.json(&sim).await;
        assert_eq!(status, 200, "{v}");
        for e in v["response"]["events"].as_array().unwrap() {
            assert!(e["sekey"].as_str().unwrap().starts_with("SE"));
            seen.push(e["sekey"].as_str().unwrap().to_string());
        }
        match v["response"]["metadata"].get("next_offset") {
            Some(o) => offset = Some(o.as_str().unwrap().to_string()),
            None => break,
        }
    }
    let expected = sim
        .handle()
        .expected_events(None, "trust_monitor", now_ms(), maxtime);
    let want: Vec<String> = expected.iter().map(|e| e.id.clone()).collect();
    assert_eq!(seen, want);
    let (_, v) = Call::get(&c, "/admin/v1/trust_monitor/events", &[])
        .param("mintime", c.start_ms.to_string())
        .param("maxtime", maxtime.to_string())
        .param("limit", "200")
        .param("type", "bypass_status_enabled")
        .json(&sim)
        .await;
    let bypass = v["response"]["events"].as_array().unwrap();
    assert!(!bypass.is_empty());
    assert!(bypass.iter().all(|e| e["type"] == "bypass_status"));
    assert!(expected
        .iter()
        .any(|e| e.record["surfaced_auth"]["txid"].is_string()));
    sim.shutdown().await;
}

#[tokio::test]
async fn v1_logs_return_earliest_1000_inclusive() {
    let c = cfg();
    let sim = start(c.clone()).await;
    let path = "/admin/v1/logs/administrator";
    let mintime = c.start_ms.div_euclid(1000);
    let (status, v) = Call::get(&c, path, &[])
        .param("mintime", mintime.to_string())
        .json(&sim)
        .await;
    assert_eq!(status, 200, "{v}");
    let page = v["response"].as_array().unwrap();
    assert_eq!(page.len(), 1000);
    let ts: Vec<i64> = page
        .iter()
        .map(|r| r["timestamp"].as_i64().unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]));
    assert!(page[0]["description"].is_string());
    let all = sim
        .handle()
        .expected_events(None, "administrator", now_ms(), i64::MAX);
    let records: Vec<&Value> = all.iter().map(|e| &e.record).collect();
    assert_eq!(page.iter().collect::<Vec<_>>(), records[..1000].to_vec());
    // The page ends inside a one-second group (index 999/1000 straddle).
    assert!(sim.handle().requests()[0].boundary_split);
    // mintime is inclusive: asking from the last second repeats that second's records.
    let last = *ts.last().unwrap();
    let (_, v) = Call::get(&c, path, &[])
        .param("mintime", last.to_string())
        .json(&sim)
        .await;
    let page2 = v["response"].as_array().unwrap();
    assert_eq!(page2[0]["timestamp"].as_i64().unwrap(), last);
    let first_of_last = records.iter().find(|r| r["timestamp"] == last).unwrap();
    assert_eq!(&page2[0], *first_of_last);
    // Milliseconds are rejected.
    let (status, v) = Call::get(&c, path, &[])
        .param("mintime", c.start_ms.to_string())
        .json(&sim)
        .await;
    assert_eq!((status, code(&v)), (400, 40002));
    let (status, v) = Call::get(&c, "/admin/v1/logs/offline_enrollment", &[])
        .param("mintime", "0")
        .json(&sim)
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["response"].as_array().unwrap().len(), 300);
    sim.shutdown().await;
}

#[tokio::test]
async fn visibility_delay_hides_recent_events() {
    let now = now_ms();
    let mut c = cfg();
    c.start_ms = now - 20 * MIN;
    c.end_ms = now + 5 * MIN;
    c.counts = KindCounts {
        authentication: 2500,
        ..KindCounts::default()
    };
    let sim = start(c.clone()).await;
    let h = sim.handle();
    let t0 = now_ms();
    let (status, v) = Call::get(&c, "/admin/v2/logs/authentication", &[])
        .param("mintime", c.start_ms.to_string())
        .param("maxtime", (c.end_ms + MIN).to_string())
        .param("limit", "1000")
        .param("sort", "ts:asc")
        .json(&sim)
        .await;
    let t1 = now_ms();
    assert_eq!(status, 200);
    let got = v["response"]["metadata"]["total_objects"].as_u64().unwrap() as usize;
    let before = h
        .expected_events(None, "authentication", t0, i64::MAX)
        .len();
    let after = h
        .expected_events(None, "authentication", t1, i64::MAX)
        .len();
    assert!(before <= got && got <= after, "{before} {got} {after}");
    let ts_past = h
        .expected_events(None, "authentication", i64::MAX, t0)
        .len();
    assert!(ts_past > before, "some past events are not visible yet");
    assert!(before > 1000);
    sim.shutdown().await;
}

/// `cargo test --release --lib -- --ignored perf` : 1M auth events, one page of 1000.
#[tokio::test]
#[ignore]
async fn perf_one_million_auth_events() {
    let now = now_ms();
    let mut c = cfg();
    c.start_ms = now - 30 * DAY;
    c.counts = KindCounts {
        authentication: 1_000_000,
        ..KindCounts::default()
    };
    let t = std::time::Instant::now();
    let sim = start(c.clone()).await;
    eprintln!("generation: {:?}", t.elapsed());
    let ds = Dataset::generate(&c, c.seed, &c.counts, None, HOST);
    let t = std::time::Instant::now();
    let items: Vec<Value> = (400_000..401_000)
        .map(|i| super::records::render(&ds, Kind::Authentication, i))
        .collect();
    let rendered = t.elapsed();
    let kd = ds.kind(Kind::Authentication);
    let t2 = std::time::Instant::now();
    let req = super::data::PageReq {
        mintime: now - 20 * DAY,
        maxtime: now - 5 * MIN,
        limit: 1000,
        desc: false,
        start: super::data::Start::First,
        shorten: None,
    };
    let page = kd.page(&req, now, &|_| true);
    let total = kd.count_visible(req.mintime, req.maxtime, now);
    eprintln!(
        "page+count: {:?} ({} / {total})",
        t2.elapsed(),
        page.idx.len()
    );
    let body = Value::Array(items).to_string();
    eprintln!(
        "render 1000: {rendered:?}, +serialize: {:?} ({} bytes)",
        t.elapsed(),
        body.len()
    );
    let call = Call::get(&c, "/admin/v2/logs/authentication", &[])
        .param("mintime", (now - 20 * DAY).to_string())
        .param("maxtime", (now - 5 * MIN).to_string())
        .param("limit", "1000")
        .param("sort", "ts:asc");
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let (s, body) = call.send_with(&client, &sim).await;
        assert_eq!(s, 200);
        let server = sim.handle().requests().last().unwrap().handling_us;
        eprintln!(
            "page of 1000: {:?} (server {server} µs), {} bytes",
            t.elapsed(),
            body.len()
        );
    }
    sim.shutdown().await;
}

/// `cargo test --lib -- --ignored print_samples --nocapture`: one record of every kind.
#[test]
#[ignore]
fn print_samples() {
    let c = cfg();
    let d = Dataset::generate(&c, 11, &c.counts, None, HOST);
    for kind in Kind::ALL {
        for e in d.expected(kind, i64::MAX, i64::MAX).iter().take(2) {
            eprintln!("{} {}: {}", kind.name(), e.id, e.record);
        }
    }
}

/// Pre-rendered pages are byte for byte the on-demand ones, and both are the canonical
/// serialization of their own JSON (sorted keys, compact), as when built from a `Value` tree.
#[tokio::test]
async fn prerendered_pages_match_on_demand_pages() {
    let mut c = cfg();
    c.max_visibility_delay_ms = 0;
    let on_demand = start(c.clone()).await;
    let pre = start(SimConfig {
        prerender: true,
        ..c.clone()
    })
    .await;
    let now = now_ms();
    let (min, max) = ((now - 3 * DAY).to_string(), (now - MIN).to_string());
    let calls = [
        ("/admin/v2/logs/authentication", true),
        ("/admin/v2/logs/telephony", true),
        ("/admin/v2/logs/activity", true),
        ("/admin/v1/trust_monitor/events", true),
        ("/admin/v1/logs/administrator", false),
        ("/admin/v1/logs/offline_enrollment", false),
    ];
    for (path, windowed) in calls {
        let mut call = Call::get(&c, path, &[]);
        if windowed {
            call = call
                .param("mintime", min.clone())
                .param("maxtime", max.clone())
                .param("limit", if path.contains("trust") { "200" } else { "300" });
        } else {
            call = call.param("mintime", (c.start_ms / 1000).to_string());
        }
        let (s1, a) = call.send(&on_demand).await;
        let (s2, b) = call.send(&pre).await;
        assert_eq!((s1, s2), (200, 200), "{path}: {a}");
        assert_eq!(a, b, "{path}");
        let canonical = serde_json::from_str::<Value>(&a).unwrap().to_string();
        assert_eq!(a, canonical, "{path}");
        assert!(a.len() > 10_000, "{path}: {}", a.len());
    }
    on_demand.shutdown().await;
    pre.shutdown().await;
}
