//! The harsh paging modes: short pages with cursors, a cursor on the last page, the positional
//! Trust Monitor offset and refused cursors.

use serde_json::Value;

use super::*;

/// One windowed log kind as a walker sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Windowed {
    pub(super) kind: &'static str,
    pub(super) path: &'static str,
    list: &'static str,
    id: &'static str,
    pub(super) limit: usize,
}

pub(super) const WINDOWED: [Windowed; 4] = [
    Windowed {
        kind: "authentication",
        path: "/admin/v2/logs/authentication",
        list: "authlogs",
        id: "txid",
        limit: 300,
    },
    Windowed {
        kind: "telephony",
        path: "/admin/v2/logs/telephony",
        list: "items",
        id: "telephony_id",
        limit: 100,
    },
    Windowed {
        kind: "activity",
        path: "/admin/v2/logs/activity",
        list: "items",
        id: "activity_id",
        limit: 100,
    },
    Windowed {
        kind: "trust_monitor",
        path: "/admin/v1/trust_monitor/events",
        list: "events",
        id: "sekey",
        limit: 50,
    },
];

impl Windowed {
    fn is_tm(&self) -> bool {
        self.kind == "trust_monitor"
    }

    fn cursor_param(&self) -> &'static str {
        if self.is_tm() {
            "offset"
        } else {
            "next_offset"
        }
    }

    /// The cursor to send back, as a collector would: `[ms, id]` joined for authentication,
    /// the string as is otherwise; `None` when the metadata has none (null or absent).
    fn next_cursor(&self, metadata: &Value) -> Option<String> {
        match metadata.get("next_offset")? {
            Value::Array(parts) => Some(
                parts
                    .iter()
                    .map(|p| p.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => panic!("{}: unexpected next_offset {other}", self.kind),
        }
    }

    pub(super) fn call(&self, c: &SimConfig, mintime: i64, maxtime: i64) -> Call {
        let mut call = Call::get(c, self.path, &[])
            .param("mintime", mintime.to_string())
            .param("maxtime", maxtime.to_string())
            .param("limit", self.limit.to_string());
        if !self.is_tm() {
            call = call.param("sort", "ts:asc");
        }
        call
    }
}

#[derive(Debug)]
pub(super) struct WalkedPage {
    pub(super) ids: Vec<String>,
    pub(super) cursor: Option<String>,
    /// The raw `metadata` object.
    pub(super) metadata: Value,
}

#[derive(Debug, Default)]
pub(super) struct Walk {
    pub(super) pages: Vec<WalkedPage>,
    /// 429s met (each answered by moving Duo's clock on by 250 ms and retrying).
    pub(super) rate_limited: u64,
}

impl Walk {
    pub(super) fn ids(&self) -> Vec<String> {
        self.pages.iter().flat_map(|p| p.ids.clone()).collect()
    }
}

/// Follow cursors until a page has none (Duo's stopping rule), or — with `stop_at_short`, the
/// rule a naive collector uses — until a page holds fewer than `limit` records.
pub(super) async fn walk(
    sim: &Simulator,
    c: &SimConfig,
    w: Windowed,
    mintime: i64,
    maxtime: i64,
    stop_at_short: bool,
) -> Walk {
    let h = sim.handle();
    let mut offset = c.clock_offset_ms;
    let mut walk = Walk::default();
    let mut cursor: Option<String> = None;
    loop {
        let mut call = w.call(c, mintime, maxtime).dated(h.duo_now_ms());
        if let Some(cur) = &cursor {
            call = call.param(w.cursor_param(), cur.clone());
        }
        let (status, v) = call.json(sim).await;
        if status == 429 {
            assert_eq!(code(&v), 42901);
            walk.rate_limited += 1;
            offset += 250;
            h.set_clock_offset_ms(offset);
            continue;
        }
        assert_eq!(status, 200, "{}: {v}", w.kind);
        let resp = &v["response"];
        let ids: Vec<String> = resp[w.list]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[w.id].as_str().unwrap().to_string())
            .collect();
        let metadata = resp["metadata"].clone();
        cursor = w.next_cursor(&metadata);
        let short = ids.len() < w.limit;
        walk.pages.push(WalkedPage {
            ids,
            cursor: cursor.clone(),
            metadata,
        });
        if cursor.is_none() || (stop_at_short && short) {
            return walk;
        }
        assert!(walk.pages.len() < 1000, "{}: no end", w.kind);
    }
}

pub(super) fn expected_ids(sim: &Simulator, kind: &str, maxtime: i64) -> Vec<String> {
    sim.handle()
        .expected_events(None, kind, i64::MAX, maxtime)
        .into_iter()
        .map(|e| e.id)
        .collect()
}

#[tokio::test]
async fn short_pages_carry_cursors_and_following_them_returns_everything_once() {
    let c = SimConfig {
        short_page_rate: 0.5,
        ..cfg()
    };
    let sim = start(c.clone()).await;
    let maxtime = now_ms() - 2 * MIN;
    // Which pages are short is a hash of each request: over the ~30 pages of all the kinds
    // (half of them short), many are; any one kind alone may draw none.
    let mut short_with_cursor = 0;
    for w in WINDOWED {
        let walk = walk(&sim, &c, w, c.start_ms, maxtime, false).await;
        let with_cursor: Vec<&WalkedPage> =
            walk.pages.iter().filter(|p| p.cursor.is_some()).collect();
        short_with_cursor += with_cursor.iter().filter(|p| p.ids.len() < w.limit).count();
        assert!(
            with_cursor.iter().all(|p| !p.ids.is_empty()),
            "{}: an empty page with a cursor while more records exist",
            w.kind
        );
        assert!(with_cursor.iter().all(|p| p.ids.len() <= w.limit));
        assert_eq!(
            walk.ids(),
            expected_ids(&sim, w.kind, maxtime),
            "{}",
            w.kind
        );
    }
    assert!(
        short_with_cursor >= 4,
        "only {short_with_cursor} short pages with a cursor"
    );
    // The choice is a function of the request: a retry gets the same page.
    for w in WINDOWED {
        let call = w.call(&c, c.start_ms, maxtime);
        let (s1, first) = call.send(&sim).await;
        let (s2, again) = call.send(&sim).await;
        assert_eq!((s1, s2), (200, 200));
        assert_eq!(first, again, "{}", w.kind);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_walker_that_stops_at_the_first_short_page_loses_events() {
    let c = SimConfig {
        short_page_rate: 0.5,
        ..cfg()
    };
    let sim = start(c.clone()).await;
    let maxtime = now_ms() - 2 * MIN;
    // Short pages are drawn per request, so one kind may by chance draw none before its last
    // page; across the kinds the naive walker loses events.
    let mut kinds_losing = 0;
    for w in WINDOWED {
        let naive = walk(&sim, &c, w, c.start_ms, maxtime, true).await;
        let all = expected_ids(&sim, w.kind, maxtime);
        if naive.ids().len() < all.len() {
            kinds_losing += 1;
        }
        assert_eq!(naive.ids(), all[..naive.ids().len()].to_vec(), "{}", w.kind);
    }
    assert!(kinds_losing >= 2, "only {kinds_losing} kinds lost events");
    sim.shutdown().await;
}

#[tokio::test]
async fn cursor_on_the_last_page_then_an_empty_page_without_one() {
    let c = SimConfig {
        cursor_on_last_page: true,
        ..cfg()
    };
    let sim = start(c.clone()).await;
    let maxtime = now_ms() - 2 * MIN;
    for w in WINDOWED {
        let walk = walk(&sim, &c, w, c.start_ms, maxtime, false).await;
        let (last, rest) = walk.pages.split_last().unwrap();
        assert!(last.ids.is_empty(), "{}: {:?}", w.kind, last.ids.len());
        assert!(last.cursor.is_none());
        if w.is_tm() {
            assert_eq!(last.metadata, serde_json::json!({}), "{}", w.kind);
        } else {
            assert!(last.metadata["next_offset"].is_null(), "{}", w.kind);
            assert!(last
                .metadata
                .as_object()
                .unwrap()
                .contains_key("next_offset"));
        }
        // The page before it holds the window's last records and still has a cursor.
        let before = rest.last().unwrap();
        assert!(
            before.cursor.is_some() && !before.ids.is_empty(),
            "{}",
            w.kind
        );
        assert_eq!(
            walk.ids(),
            expected_ids(&sim, w.kind, maxtime),
            "{}",
            w.kind
        );
    }
    // The empty page's exact text, as Duo's maintainer quoted it for authentication.
    let w = WINDOWED[0];
    let walk = walk(&sim, &c, w, c.start_ms, maxtime, false).await;
    let cursor = walk.pages[walk.pages.len() - 2].cursor.clone().unwrap();
    let (_, text) = w
        .call(&c, c.start_ms, maxtime)
        .param("next_offset", cursor)
        .send(&sim)
        .await;
    assert!(
        text.starts_with(r#"{"response":{"authlogs":[],"metadata":{"next_offset":null,"#),
        "{text}"
    );
    sim.shutdown().await;
}

/// Every windowed kind under the strict preset (short pages, cursor on the last page, burst 5
/// per endpoint; 60/min rather than 600 so that a debug build meets the limit too): a collector
/// that follows cursors and waits out 429s gets every event exactly once.
#[tokio::test]
async fn strict_walk_returns_every_event_once() {
    let c = SimConfig {
        rate_limit_per_minute: Some(60),
        ..cfg().strict()
    };
    let sim = start(c.clone()).await;
    let maxtime = now_ms() - 2 * MIN;
    let mut rate_limited = 0;
    for w in WINDOWED {
        let walk = walk(&sim, &c, w, c.start_ms, maxtime, false).await;
        assert!(walk.pages.last().unwrap().ids.is_empty(), "{}", w.kind);
        assert_eq!(
            walk.ids(),
            expected_ids(&sim, w.kind, maxtime),
            "{}",
            w.kind
        );
        rate_limited += walk.rate_limited;
    }
    assert!(rate_limited > 0);
    assert_eq!(sim.handle().rate_limited_count(), rate_limited);
    sim.shutdown().await;
}

#[test]
fn strict_preset_and_mode_descriptions() {
    let strict = cfg().strict();
    assert_eq!(strict.short_page_rate, 0.25);
    assert!(strict.cursor_on_last_page);
    assert_eq!(strict.rate_limit_per_minute, Some(600));
    assert_eq!(strict.rate_limit_burst, 5);
    assert_eq!(strict.late_tail_rate, 0.0);
    assert_eq!(strict.describe_modes().len(), 3);
    assert!(cfg().describe_modes().is_empty());
    let late = SimConfig {
        late_tail_rate: 0.01,
        late_tail_ms: 300_000,
        clock_offset_ms: -45_000,
        ..cfg()
    };
    let modes = late.describe_modes().join("\n");
    assert!(
        modes.contains("late tail: 1.00%") && modes.contains("5m"),
        "{modes}"
    );
    assert!(modes.contains("-45000 ms"), "{modes}");
}

#[tokio::test]
async fn trust_monitor_offset_is_positional() {
    let c = cfg();
    let sim = start(c.clone()).await;
    let maxtime = now_ms() - 2 * MIN;
    let h = sim.handle();
    let all = h.expected_events(None, "trust_monitor", now_ms(), maxtime);
    let ids = |v: &Value| -> Vec<String> {
        v["response"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["sekey"].as_str().unwrap().to_string())
            .collect()
    };
    let want =
        |evs: &[ExpectedEvent]| -> Vec<String> { evs.iter().map(|e| e.id.clone()).collect() };
    let page = |mintime: i64, offset: Option<&str>| {
        let mut call = Call::get(&c, "/admin/v1/trust_monitor/events", &[])
            .param("mintime", mintime.to_string())
            .param("maxtime", maxtime.to_string())
            .param("limit", "50");
        if let Some(o) = offset {
            call = call.param("offset", o);
        }
        call
    };
    let (s, v) = page(c.start_ms, None).json(&sim).await;
    assert_eq!(s, 200);
    assert_eq!(ids(&v), want(&all[..50]));
    assert_eq!(v["response"]["metadata"]["next_offset"], "50");
    let (_, v) = page(c.start_ms, Some("50")).json(&sim).await;
    assert_eq!(ids(&v), want(&all[50..100]));
    assert_eq!(v["response"]["metadata"]["next_offset"], "100");

    // A collector that moves mintime mid-window but keeps the old offset skips records: the
    // offset counts from the start of the new query's result, as on Duo.
    let new_min = all[20].ts_ms + 1;
    let moved: Vec<ExpectedEvent> = all.iter().filter(|e| e.ts_ms >= new_min).cloned().collect();
    let (_, v) = page(new_min, Some("50")).json(&sim).await;
    assert_eq!(ids(&v), want(&moved[50..100]));
    assert_ne!(ids(&v), want(&all[50..100]));
    assert!(
        !ids(&v).contains(&all[50].id),
        "the right continuation is skipped"
    );

    // Positions count within the `type` filter too.
    let auth_only: Vec<String> = all
        .iter()
        .filter(|e| e.record["type"] == "auth")
        .map(|e| e.id.clone())
        .collect();
    let (_, v) = page(c.start_ms, Some("10"))
        .param("type", "auth")
        .json(&sim)
        .await;
    assert_eq!(ids(&v), auth_only[10..60].to_vec());

    // Past the end: empty, no next_offset.
    let (s, v) = page(c.start_ms, Some(&all.len().to_string()))
        .json(&sim)
        .await;
    assert_eq!(s, 200);
    assert!(ids(&v).is_empty());
    assert_eq!(v["response"]["metadata"], serde_json::json!({}));
    for bad in [
        "abc",
        "-5",
        "1597671838335-5bea5c1e682c4f1db3f075fd31385bd5",
    ] {
        let (s, v) = page(c.start_ms, Some(bad)).json(&sim).await;
        assert_eq!((s, code(&v)), (400, 40002), "{bad}: {v}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn reject_cursor_hits_only_requests_with_a_cursor() {
    let c = cfg();
    let sim = start(c.clone()).await;
    let h = sim.handle();
    let maxtime = now_ms() - 2 * MIN;
    let refused = serde_json::json!({"stat": "FAIL", "code": 40002,
        "message": "Invalid request parameters", "message_detail": "Invalid next_offset"});
    h.inject_faults(vec![Fault::RejectCursor]);
    for w in WINDOWED {
        let (s, v) = w.call(&c, c.start_ms, maxtime).json(&sim).await;
        assert_eq!(s, 200, "{}: the first page has no cursor", w.kind);
        assert_eq!(h.pending_faults(), 1);
        let cursor = w.next_cursor(&v["response"]["metadata"]).unwrap();
        h.inject_faults(vec![Fault::RejectCursor]);
        let with_cursor = w
            .call(&c, c.start_ms, maxtime)
            .param(w.cursor_param(), cursor);
        let (s, v) = with_cursor.json(&sim).await;
        assert_eq!((s, &v), (400, &refused), "{}", w.kind);
        assert_eq!(h.pending_faults(), 1);
        // The cursor itself is fine: only the injected fault refused it.
        h.clear_requests();
        assert_eq!(with_cursor.send(&sim).await.0, 400);
        assert_eq!(h.pending_faults(), 0);
        assert_eq!(h.requests()[0].fault, Some(Fault::RejectCursor));
        assert_eq!(with_cursor.send(&sim).await.0, 200);
        h.inject_faults(vec![Fault::RejectCursor]);
    }
    // v1 logs and other endpoints never carry a cursor; a rule behind it still matches.
    h.inject_faults(vec![Fault::Status(503)]);
    let admin = Call::get(&c, "/admin/v1/logs/administrator", &[])
        .param("mintime", "0")
        .param("offset", "5");
    assert_eq!(admin.send(&sim).await.0, 503);
    assert_eq!(admin.send(&sim).await.0, 200);
    let summary = Call::get(&c, "/admin/v1/info/summary", &[]);
    assert_eq!(summary.param("offset", "5").send(&sim).await.0, 200);
    assert_eq!(h.pending_faults(), 1);
    sim.shutdown().await;
}
