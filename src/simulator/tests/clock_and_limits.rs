//! Duo's clock (Date header, ping, Date check, visibility, 180-day floor), the late tail, and
//! per-endpoint rate limits.

use reqwest::header::{HeaderMap, DATE, RETRY_AFTER};
use serde_json::Value;

use super::*;

const AUTH: &str = "/admin/v2/logs/authentication";
const TELEPHONY: &str = "/admin/v2/logs/telephony";

/// The one `Date` header: an IMF-fixdate, as ms since the epoch.
fn date_header_ms(headers: &HeaderMap) -> i64 {
    let dates: Vec<_> = headers.get_all(DATE).iter().collect();
    assert_eq!(dates.len(), 1, "exactly one Date header: {dates:?}");
    let text = dates[0].to_str().unwrap();
    assert!(text.ends_with(" GMT") && text.len() == 29, "{text}");
    chrono::DateTime::parse_from_rfc2822(text)
        .unwrap()
        .timestamp_millis()
}

/// `t` (second resolution) lies in `[lo − 1 s, hi]`.
fn assert_between(t: i64, lo: i64, hi: i64, what: &str) {
    assert!(lo - 1000 <= t && t <= hi, "{what}: {t} not in [{lo}, {hi}]");
}

#[tokio::test]
async fn duo_clock_drives_the_date_header_ping_and_the_date_check() {
    let c = SimConfig {
        clock_offset_ms: -45_000,
        ..cfg()
    };
    let sim = start(c.clone()).await;
    let h = sim.handle();
    let client = reqwest::Client::new();
    let mut ping = Call::get(&c, "/auth/v2/ping", &[]);
    ping.signed = false;
    let before = now_ms();
    let (s, headers, body) = ping.send_raw(&client, &sim).await;
    let after = now_ms();
    assert_eq!(s, 200);
    let duo = |t: i64| t - 45_000;
    assert_between(date_header_ms(&headers), duo(before), duo(after), "Date");
    let v: Value = serde_json::from_str(&body).unwrap();
    let time_ms = v["response"]["time"].as_i64().unwrap() * 1000;
    assert_between(time_ms, duo(before), duo(after), "ping time");
    let duo_now = h.duo_now_ms();
    assert_between(duo_now, duo(before), duo(now_ms()) + 1000, "duo_now_ms");

    // Successes, errors and injected faults all carry exactly one Date, Duo's.
    let now = now_ms();
    let log = Call::get(&c, AUTH, &[])
        .param("mintime", (now - DAY).to_string())
        .param("maxtime", (now - MIN).to_string());
    let mut unsigned = log.clone();
    unsigned.signed = false;
    h.inject_faults(vec![Fault::HtmlErrorPage]);
    for (call, status) in [(&log, 502), (&log, 200), (&unsigned, 401)] {
        let before = now_ms();
        let (s, headers, _) = call.send_raw(&client, &sim).await;
        assert_eq!(s, status);
        assert_between(date_header_ms(&headers), duo(before), duo(now_ms()), "Date");
    }

    // A new offset takes effect at once, for the Date header and the request Date check.
    h.set_clock_offset_ms(3_600_000);
    let before = now_ms();
    let (_, headers, _) = ping.send_raw(&client, &sim).await;
    assert_between(
        date_header_ms(&headers),
        before + 3_600_000,
        now_ms() + 3_600_000,
        "Date an hour ahead",
    );
    let summary = Call::get(&c, "/admin/v1/info/summary", &[]);
    let (s, v) = summary.clone().json(&sim).await;
    assert_eq!(
        (s, code(&v)),
        (401, 40105),
        "the host's date is an hour off"
    );
    let (s, _) = summary.dated(h.duo_now_ms()).json(&sim).await;
    assert_eq!(s, 200);
    let last = h.requests().pop().unwrap();
    assert!(last.received_at_ms >= before + 3_600_000, "{last:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn duo_clock_drives_visibility_and_the_180_day_floor() {
    let now = now_ms();
    let c = SimConfig {
        start_ms: now - 10 * MIN,
        end_ms: now + 20 * MIN,
        counts: KindCounts {
            authentication: 1000,
            ..KindCounts::default()
        },
        max_visibility_delay_ms: 60_000,
        ..cfg()
    };
    let sim = start(c.clone()).await;
    let h = sim.handle();
    let total = |offset: i64| {
        h.set_clock_offset_ms(offset);
        let call = Call::get(&c, AUTH, &[])
            .param("mintime", c.start_ms.to_string())
            .param("maxtime", (now + 60 * MIN).to_string())
            .dated(h.duo_now_ms());
        let sim = &sim;
        async move {
            let (s, v) = call.json(sim).await;
            assert_eq!(s, 200, "{v}");
            v["response"]["metadata"]["total_objects"].as_u64().unwrap()
        }
    };
    let at_real_now = total(0).await;
    assert!(0 < at_real_now && at_real_now < 1000, "{at_real_now}");
    assert_eq!(total(2 * 3_600_000).await, 1000, "Duo is two hours on");
    assert_eq!(total(-3_600_000).await, 0, "Duo is an hour behind");

    let floor_call = |mintime: i64, offset: i64| {
        h.set_clock_offset_ms(offset);
        Call::get(&c, AUTH, &[])
            .param("mintime", mintime.to_string())
            .param("maxtime", (now - MIN).to_string())
            .dated(h.duo_now_ms())
    };
    let inside = now - 180 * DAY + 10 * MIN;
    assert_eq!(floor_call(inside, 0).send(&sim).await.0, 200);
    let (s, v) = floor_call(inside, DAY).json(&sim).await;
    assert_eq!((s, code(&v)), (400, 40002));
    assert_eq!(
        v["message_detail"],
        "mintime must be within the past 180 days"
    );
    let outside = now - 180 * DAY - 10 * MIN;
    assert_eq!(floor_call(outside, 0).send(&sim).await.0, 400);
    assert_eq!(floor_call(outside, -DAY).send(&sim).await.0, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn late_tail_is_published_after_the_usual_delay_and_expected_events_know_it() {
    let now = now_ms();
    let delay = MIN;
    let tail = 30 * MIN;
    let c = SimConfig {
        start_ms: now - 90 * MIN,
        end_ms: now - MIN,
        counts: KindCounts {
            authentication: 4000,
            ..KindCounts::default()
        },
        max_visibility_delay_ms: delay,
        late_tail_rate: 0.2,
        late_tail_ms: tail,
        max_clock_skew_s: 100_000,
        ..cfg()
    };
    let sim = start(c.clone()).await;
    let h = sim.handle();
    let t = h.duo_now_ms();
    let count = |visible_at: i64, up_to: i64| {
        h.expected_events(None, "authentication", visible_at, up_to)
            .len()
    };
    // Older than the usual delay, yet not all published: the late tail.
    let settled = t - delay;
    let (published, all) = (count(t, settled), count(i64::MAX, settled));
    assert!(published < all, "{published} of {all}");
    assert!(
        published * 10 > all * 7,
        "{published} of {all}: about a fifth is late"
    );
    // Nothing is later than the usual delay plus the tail.
    let beyond_tail = t - delay - tail;
    assert_eq!(count(t, beyond_tail), count(i64::MAX, beyond_tail));
    assert!(count(t, beyond_tail) > 1000);

    // The server publishes exactly what `expected_events` says.
    let call = |at: i64| {
        Call::get(&c, AUTH, &[])
            .param("mintime", c.start_ms.to_string())
            .param("maxtime", settled.to_string())
            .dated(at)
    };
    let t0 = h.duo_now_ms();
    let (_, v) = call(t0).json(&sim).await;
    let t1 = h.duo_now_ms();
    let served = v["response"]["metadata"]["total_objects"].as_u64().unwrap() as usize;
    assert!(
        count(t0, settled) <= served && served <= count(t1, settled),
        "{served}"
    );
    h.set_clock_offset_ms(delay + tail + 1000);
    let (_, v) = call(h.duo_now_ms()).json(&sim).await;
    assert_eq!(v["response"]["metadata"]["total_objects"], all);
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_limits_are_per_endpoint_token_buckets_on_duos_clock() {
    let mut c = cfg();
    c.rate_limit_per_minute = Some(6);
    c.rate_limit_burst = 3;
    c.accounts = Some(AccountsConfig {
        ikey: "DIACCOUNTSAPIKEY0001".into(),
        skey: "accountssecretaccountssecretaccountssec1".into(),
        children: vec![ChildAccount {
            account_id: "DA000000000000000001".into(),
            name: "Child".into(),
            api_hostname: "api-child001.duosecurity.com".into(),
            counts: KindCounts::uniform(20),
            seed: 5,
        }],
    });
    let sim = start(c.clone()).await;
    let h = sim.handle();
    let client = reqwest::Client::new();
    let now = now_ms();
    let log = |path: &str| {
        Call::get(&c, path, &[])
            .param("mintime", (now - DAY).to_string())
            .param("maxtime", (now - MIN).to_string())
            .dated(h.duo_now_ms())
    };
    let statuses = |path: &'static str, n: usize| {
        let client = client.clone();
        let call = log(path);
        let sim = &sim;
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                let (s, headers, body) = call.send_raw(&client, sim).await;
                if s == 429 {
                    assert!(
                        headers.get(RETRY_AFTER).is_none(),
                        "Duo sends no Retry-After"
                    );
                    assert_eq!(code(&serde_json::from_str(&body).unwrap()), 42901);
                }
                out.push(s);
            }
            out
        }
    };
    // Each endpoint of one account gets its own burst.
    assert_eq!(statuses(AUTH, 4).await, [200, 200, 200, 429]);
    assert_eq!(statuses(TELEPHONY, 4).await, [200, 200, 200, 429]);
    assert_eq!(h.rate_limited_count_for(AUTH), 1);
    assert_eq!(h.rate_limited_count_for(TELEPHONY), 1);
    // Another account (here also another key) has buckets of its own.
    let acc = c.accounts.clone().unwrap();
    let child = log(AUTH)
        .keys(&acc.ikey, &acc.skey)
        .param("account_id", acc.children[0].account_id.clone());
    assert_eq!(child.send(&sim).await.0, 200);
    // Ping is never limited; the summary endpoint has its own bucket.
    let mut ping = Call::get(&c, "/auth/v2/ping", &[]);
    ping.signed = false;
    for _ in 0..10 {
        assert_eq!(ping.send(&sim).await.0, 200);
    }
    let summary = Call::get(&c, "/admin/v1/info/summary", &[]);
    assert_eq!(summary.send(&sim).await.0, 200);

    // 6/min is one token per 10 s of Duo's clock; a bucket holds at most 3.
    h.set_clock_offset_ms(10_000);
    assert_eq!(statuses(AUTH, 2).await, [200, 429]);
    h.set_clock_offset_ms(35_000);
    assert_eq!(statuses(AUTH, 3).await, [200, 200, 429]);
    assert_eq!(statuses(TELEPHONY, 4).await, [200, 200, 200, 429]);
    assert_eq!(h.rate_limited_count_for(AUTH), 3);
    assert_eq!(h.rate_limited_count_for(TELEPHONY), 2);
    assert_eq!(h.rate_limited_count_for("/auth/v2/ping"), 0);
    assert_eq!(h.rate_limited_count(), 5);
    // Injected 429s are not the limiter's.
    h.inject_faults(vec![Fault::RateLimited]);
    assert_eq!(summary.dated(h.duo_now_ms()).send(&sim).await.0, 200);
    assert_eq!(log("/admin/v2/logs/activity").send(&sim).await.0, 429);
    assert_eq!(h.rate_limited_count(), 5);
    sim.shutdown().await;
}
