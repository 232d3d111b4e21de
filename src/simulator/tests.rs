//! Simulator tests: real HTTP against a bound simulator, requests signed with `crate::duo::sign`.

use std::collections::HashSet;

use serde_json::Value;

use super::data::{Dataset, Kind};
use super::*;
use crate::duo::sign::{authorization_header, rfc2822_date, signature_hex, SigVersion, SignInput};

const HOST: &str = "api-sim00001.duosecurity.com";
const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;

fn cfg() -> SimConfig {
    let now = now_ms();
    SimConfig {
        start_ms: now - 2 * DAY,
        end_ms: now - 10 * MIN,
        counts: KindCounts {
            authentication: 5000,
            administrator: 2600,
            telephony: 700,
            activity: 700,
            trust_monitor: 450,
            offline_enrollment: 300,
        },
        ..SimConfig::default()
    }
}

async fn start(cfg: SimConfig) -> Simulator {
    Simulator::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap()
}

/// One signed (or unsigned) request.
#[derive(Clone)]
struct Call {
    method: &'static str,
    path: String,
    params: Vec<(String, String)>,
    ikey: String,
    skey: String,
    host: String,
    version: SigVersion,
    date: String,
    x_duo_date: bool,
    signed: bool,
}

impl Call {
    fn get(c: &SimConfig, path: &str, params: &[(&str, &str)]) -> Call {
        Call {
            method: "GET",
            path: path.to_string(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ikey: c.ikey.clone(),
            skey: c.skey.clone(),
            host: c.api_hostname.clone(),
            version: SigVersion::V5,
            date: rfc2822_date(chrono::Utc::now()),
            x_duo_date: false,
            signed: true,
        }
    }

    fn param(mut self, k: &str, v: impl Into<String>) -> Call {
        self.params.push((k.to_string(), v.into()));
        self
    }

    fn keys(mut self, ikey: &str, skey: &str) -> Call {
        self.ikey = ikey.to_string();
        self.skey = skey.to_string();
        self
    }

    async fn send(&self, sim: &Simulator) -> (u16, String) {
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.params.iter())
            .finish();
        let json_body = self.method == "POST" && self.version == SigVersion::V5;
        let (url, body, sign_params): (String, Vec<u8>, Vec<(String, String)>) =
            match self.method {
                "POST" if json_body => {
                    let obj: serde_json::Map<String, Value> = self
                        .params
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect();
                    let body = serde_json::to_vec(&obj).unwrap();
                    (format!("{}{}", sim.base_url(), self.path), body, vec![])
                }
                "POST" => (
                    format!("{}{}", sim.base_url(), self.path),
                    encoded.into_bytes(),
                    self.params.clone(),
                ),
                _ => (
                    format!("{}{}?{}", sim.base_url(), self.path, encoded),
                    vec![],
                    self.params.clone(),
                ),
            };
        let x_duo: Vec<(String, String)> = if self.x_duo_date {
            vec![("X-Duo-Date".to_string(), self.date.clone())]
        } else {
            vec![]
        };
        let input = SignInput {
            date: &self.date,
            method: self.method,
            host: &self.host,
            path: &self.path,
            params: &sign_params,
            body: if json_body { &body } else { b"" },
            x_duo_headers: &x_duo,
        };
        let sig = signature_hex(self.version, self.skey.as_bytes(), &input);
        let client = reqwest::Client::new();
        let mut rb = if self.method == "POST" {
            client.post(&url).body(body.clone()).header(
                "Content-Type",
                if json_body {
                    "application/json"
                } else {
                    "application/x-www-form-urlencoded"
                },
            )
        } else {
            client.get(&url)
        };
        if self.signed {
            rb = rb.header("Authorization", authorization_header(&self.ikey, &sig));
            rb = if self.x_duo_date {
                rb.header("X-Duo-Date", &self.date)
            } else {
                rb.header("Date", &self.date)
            };
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    async fn json(&self, sim: &Simulator) -> (u16, Value) {
        let (status, text) = self.send(sim).await;
        let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        (status, v)
    }
}

fn code(v: &Value) -> i64 {
    v["code"].as_i64().unwrap_or(-1)
}

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

    // Trust Monitor: opaque offset, next_offset absent when done.
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
    let before = h.expected_events(None, "authentication", t0, i64::MAX).len();
    let after = h.expected_events(None, "authentication", t1, i64::MAX).len();
    assert!(before <= got && got <= after, "{before} {got} {after}");
    let ts_past = h
        .expected_events(None, "authentication", i64::MAX, t0)
        .len();
    assert!(ts_past > before, "some past events are not visible yet");
    assert!(before > 1000);
    sim.shutdown().await;
}

#[tokio::test]
async fn parameter_errors() {
    let c = cfg();
    let sim = start(c.clone()).await;
    let now = now_ms();
    let auth = "/admin/v2/logs/authentication";
    let cases: Vec<(Vec<(&str, String)>, u16, i64, Option<&str>)> = vec![
        (vec![("mintime", (now - DAY).to_string())], 400, 40001, None),
        (
            vec![
                ("mintime", ((now - DAY) / 1000).to_string()),
                ("maxtime", now.to_string()),
            ],
            400,
            40002,
            Some("'mintime' must be a timestamp in milliseconds"),
        ),
        (
            vec![
                ("mintime", (now - 181 * DAY).to_string()),
                ("maxtime", now.to_string()),
            ],
            400,
            40002,
            Some("mintime must be within the past 180 days"),
        ),
        (
            vec![("mintime", now.to_string()), ("maxtime", now.to_string())],
            400,
            40002,
            None,
        ),
        (
            vec![
                ("mintime", (now - DAY).to_string()),
                ("maxtime", now.to_string()),
                ("limit", "1001".into()),
            ],
            400,
            40002,
            None,
        ),
        (
            vec![
                ("mintime", (now - DAY).to_string()),
                ("maxtime", now.to_string()),
                ("next_offset", "garbage".into()),
            ],
            400,
            40002,
            None,
        ),
    ];
    for (params, status, want_code, detail) in cases {
        let mut call = Call::get(&c, auth, &[]);
        for (k, v) in &params {
            call = call.param(k, v.clone());
        }
        let (s, v) = call.json(&sim).await;
        assert_eq!((s, code(&v)), (status, want_code), "{params:?} {v}");
        assert_eq!(v["stat"], "FAIL");
        if let Some(d) = detail {
            assert_eq!(v["message_detail"], d);
        }
    }
    let (s, v) = Call::get(&c, "/admin/v1/trust_monitor/events", &[])
        .param("mintime", (now - DAY).to_string())
        .param("maxtime", now.to_string())
        .param("limit", "201")
        .json(&sim)
        .await;
    assert_eq!((s, code(&v)), (400, 40002));
    let (s, v) = Call::get(&c, "/admin/v1/nope", &[]).json(&sim).await;
    assert_eq!((s, code(&v)), (404, 40401));
    sim.shutdown().await;
}

#[tokio::test]
async fn signature_checks() {
    let c = cfg();
    let sim = start(c.clone()).await;
    let summary = Call::get(&c, "/admin/v1/info/summary", &[]);
    for version in [SigVersion::V2Sha1, SigVersion::V2Sha512, SigVersion::V5] {
        for x_duo_date in [false, true] {
            let mut call = summary.clone();
            call.version = version;
            call.x_duo_date = x_duo_date;
            let (s, v) = call.json(&sim).await;
            assert_eq!(s, 200, "{version:?} {x_duo_date} {v}");
            assert_eq!(v["response"]["user_count"], 20);
        }
    }
    // Log request with params, every version; date in other RFC 2822 spellings.
    let now = now_ms();
    let logs = Call::get(&c, "/admin/v2/logs/authentication", &[])
        .param("mintime", (now - DAY).to_string())
        .param("maxtime", now.to_string())
        .param("sort", "ts:asc")
        .param("next_offset", format!("{},{}", now - DAY, uuid::Uuid::nil()));
    for (version, date) in [
        (SigVersion::V2Sha1, chrono::Utc::now().to_rfc2822()),
        (
            SigVersion::V2Sha512,
            chrono::Utc::now()
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string(),
        ),
        (SigVersion::V5, rfc2822_date(chrono::Utc::now())),
    ] {
        let mut call = logs.clone();
        call.version = version;
        call.date = date;
        let (s, v) = call.json(&sim).await;
        assert_eq!(s, 200, "{version:?} {v}");
    }
    let (s, v) = summary.clone().keys(&c.ikey, "wrong").json(&sim).await;
    assert_eq!((s, code(&v)), (401, 40103));
    let (s, v) = summary
        .clone()
        .keys("DIUNKNOWNIKEY0000000", &c.skey)
        .json(&sim)
        .await;
    assert_eq!((s, code(&v)), (401, 40102));
    let mut stale = summary.clone();
    stale.date = rfc2822_date(chrono::Utc::now() - chrono::Duration::seconds(400));
    let (s, v) = stale.json(&sim).await;
    assert_eq!((s, code(&v)), (401, 40105));
    let mut wrong_host = summary.clone();
    wrong_host.host = "api-other.duosecurity.com".into();
    let (s, v) = wrong_host.json(&sim).await;
    assert_eq!((s, code(&v)), (401, 40103));
    let mut unsigned = summary.clone();
    unsigned.signed = false;
    let (s, v) = unsigned.json(&sim).await;
    assert_eq!((s, code(&v)), (401, 40101));
    // Ping is unsigned; check needs Auth API keys.
    let (s, v) = unsigned.clone().path_to("/auth/v2/ping").json(&sim).await;
    assert_eq!(s, 200);
    assert!(v["response"]["time"].as_i64().unwrap() > 1_600_000_000);
    let (s, v) = summary.clone().path_to("/auth/v2/check").json(&sim).await;
    assert_eq!((s, code(&v)), (403, 40301));
    sim.shutdown().await;
}

impl Call {
    fn path_to(mut self, path: &str) -> Call {
        self.path = path.to_string();
        self
    }
}

#[tokio::test]
async fn faults_are_consumed_in_order() {
    let c = cfg();
    let sim = start(c.clone()).await;
    let h = sim.handle();
    h.inject_faults(vec![
        Fault::Status(500),
        Fault::RateLimited,
        Fault::HtmlErrorPage,
        Fault::MalformedJson,
        Fault::TruncatedBody,
        Fault::Delay(Duration::from_millis(200)),
    ]);
    h.inject_fault_rules(vec![FaultRule {
        path_contains: Some("/auth/v2/ping".into()),
        fault: Fault::Status(503),
    }]);
    let now = now_ms();
    let call = Call::get(&c, "/admin/v2/logs/telephony", &[])
        .param("mintime", (now - DAY).to_string())
        .param("maxtime", now.to_string());
    // The summary endpoint is not a log endpoint: unfiltered faults skip it.
    let (s, _) = Call::get(&c, "/admin/v1/info/summary", &[]).send(&sim).await;
    assert_eq!(s, 200);
    let (s, body) = call.send(&sim).await;
    assert_eq!(s, 500);
    assert_eq!(code(&serde_json::from_str(&body).unwrap()), 50001);
    let (s, body) = call.send(&sim).await;
    assert_eq!(s, 429);
    assert_eq!(code(&serde_json::from_str(&body).unwrap()), 42901);
    let (s, body) = call.send(&sim).await;
    assert_eq!(s, 502);
    assert!(body.contains("<html>"));
    let (s, body) = call.send(&sim).await;
    assert_eq!(s, 200);
    assert!(serde_json::from_str::<Value>(&body).is_err());
    let (s, body) = call.send(&sim).await;
    assert_eq!(s, 200);
    assert!(serde_json::from_str::<Value>(&body).is_err());
    assert!(body.starts_with("{\"response\""));
    let t = std::time::Instant::now();
    let (s, _) = call.send(&sim).await;
    assert_eq!(s, 200);
    assert!(t.elapsed() >= Duration::from_millis(200));
    let (s, _) = call.send(&sim).await;
    assert_eq!(s, 200);
    let mut ping = call.clone().path_to("/auth/v2/ping");
    ping.signed = false;
    assert_eq!(ping.send(&sim).await.0, 503);
    assert_eq!(ping.send(&sim).await.0, 200);
    assert_eq!(h.pending_faults(), 0);
    let faults: Vec<Option<Fault>> = h.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(faults[1], Some(Fault::Status(500)));
    assert_eq!(faults[7], None);
    sim.shutdown().await;
}

fn child(n: u64) -> ChildAccount {
    ChildAccount {
        account_id: format!("DA{:018}", n),
        name: format!("Child Ünïcode {n}"),
        api_hostname: format!("api-child{n:03}.duosecurity.com"),
        counts: KindCounts {
            authentication: 120 + n as usize,
            ..KindCounts::uniform(30)
        },
        seed: 100 + n,
    }
}

#[tokio::test]
async fn accounts_and_child_data() {
    let mut c = cfg();
    c.accounts = Some(AccountsConfig {
        ikey: "DIACCOUNTSAPIKEY0001".into(),
        skey: "accountssecretaccountssecretaccountssec1".into(),
        children: vec![child(1), child(2)],
    });
    let acc = c.accounts.clone().unwrap();
    let sim = start(c.clone()).await;
    let h = sim.handle();
    let list = |version: SigVersion| {
        let mut call = Call::get(&c, "/accounts/v1/account/list", &[]).keys(&acc.ikey, &acc.skey);
        call.method = "POST";
        call.version = version;
        call
    };
    for version in [SigVersion::V2Sha1, SigVersion::V2Sha512, SigVersion::V5] {
        let (s, v) = list(version).json(&sim).await;
        assert_eq!(s, 200, "{version:?} {v}");
        let arr = v["response"].as_array().unwrap();
        assert_eq!(arr.len(), 2);
        assert_eq!(arr[1]["account_id"], child(2).account_id);
        assert_eq!(arr[1]["api_hostname"], child(2).api_hostname);
    }
    // Admin keys cannot list accounts.
    let mut admin_list = list(SigVersion::V5);
    admin_list = admin_list.keys(&c.ikey, &c.skey);
    assert_eq!(code(&admin_list.json(&sim).await.1), 40301);

    let now = now_ms();
    let maxtime = now - 2 * MIN;
    let child_call = |n: u64, host: &str| {
        let mut call = Call::get(&c, "/admin/v2/logs/authentication", &[])
            .keys(&acc.ikey, &acc.skey)
            .param("mintime", c.start_ms.to_string())
            .param("maxtime", maxtime.to_string())
            .param("limit", "1000")
            .param("sort", "ts:asc")
            .param("account_id", child(n).account_id);
        call.host = host.to_string();
        call
    };
    for (n, host) in [(1, child(1).api_hostname), (2, HOST.to_string())] {
        let (s, v) = child_call(n, &host).json(&sim).await;
        assert_eq!(s, 200, "{v}");
        let got: Vec<&str> = v["response"]["authlogs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["txid"].as_str().unwrap())
            .collect();
        let want = h.expected_events(Some(&child(n).account_id), "authentication", now, maxtime);
        assert_eq!(got.len(), 120 + n as usize);
        assert_eq!(got, want.iter().map(|e| e.id.as_str()).collect::<Vec<_>>());
    }
    let reqs = h.requests();
    assert_eq!(
        reqs.last().unwrap().account_id.as_deref(),
        Some(child(2).account_id.as_str())
    );
    // Accounts keys without account_id, admin keys with one, unknown child.
    let mut no_account = child_call(1, HOST);
    no_account.params.retain(|(k, _)| k != "account_id");
    assert_eq!(code(&no_account.json(&sim).await.1), 40301);
    let with_admin = child_call(1, HOST).keys(&c.ikey, &c.skey);
    assert_eq!(code(&with_admin.json(&sim).await.1), 40301);
    let (s, v) = child_call(9, HOST).json(&sim).await;
    assert_eq!((s, code(&v)), (400, 40002));
    // Parent data is separate.
    let parent = h.expected_events(None, "authentication", now, maxtime);
    assert_eq!(parent.len(), 5000);

    h.remove_child_account(&child(1).account_id);
    h.add_child_account(child(3));
    let (_, v) = list(SigVersion::V5).json(&sim).await;
    let ids: Vec<&str> = v["response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![child(2).account_id, child(3).account_id]);
    let (s, v) = child_call(1, &child(1).api_hostname).json(&sim).await;
    assert_eq!((s, code(&v)), (400, 40002));
    let (s, _) = child_call(3, &child(3).api_hostname).json(&sim).await;
    assert_eq!(s, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn forbidden_kinds_and_rate_limit() {
    let mut c = cfg();
    c.forbidden_kinds = vec!["trust_monitor".into()];
    c.rate_limit_per_minute = Some(3);
    let sim = start(c.clone()).await;
    let now = now_ms();
    let tm = Call::get(&c, "/admin/v1/trust_monitor/events", &[])
        .param("mintime", (now - DAY).to_string())
        .param("maxtime", now.to_string());
    let (s, v) = tm.json(&sim).await;
    assert_eq!((s, code(&v)), (403, 40301));
    let admin = Call::get(&c, "/admin/v1/logs/administrator", &[]).param("mintime", "0");
    assert_eq!(admin.send(&sim).await.0, 200);
    assert_eq!(admin.send(&sim).await.0, 200);
    let (s, v) = admin.json(&sim).await;
    assert_eq!((s, code(&v)), (429, 42901));
    // Non-log endpoints are not rate limited.
    let (s, _) = Call::get(&c, "/admin/v1/info/summary", &[]).send(&sim).await;
    assert_eq!(s, 200);
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
    let call = Call::get(&c, "/admin/v2/logs/authentication", &[])
        .param("mintime", (now - 20 * DAY).to_string())
        .param("maxtime", (now - 5 * MIN).to_string())
        .param("limit", "1000")
        .param("sort", "ts:asc");
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let (s, body) = call.send(&sim).await;
        assert_eq!(s, 200);
        eprintln!("page of 1000: {:?}, {} bytes", t.elapsed(), body.len());
    }
    sim.shutdown().await;
}
