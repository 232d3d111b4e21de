//! Errors, signatures, faults, accounts, permissions and rate limits.

use serde_json::Value;

use super::*;

#[tokio::test]
async fn parameter_errors() {
    let c = cfg();
    let sim = start(c.clone()).await;
    let now = now_ms();
    let auth = "/admin/v2/logs/authentication";
    type Case<'a> = (Vec<(&'a str, String)>, u16, i64, Option<&'a str>);
    // The past day's window and one more parameter.
    let last_day = |(k, v): (&'static str, &str)| {
        vec![
            ("mintime", (now - DAY).to_string()),
            ("maxtime", now.to_string()),
            (k, v.to_string()),
        ]
    };
    let cases: Vec<Case> = vec![
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
        (last_day(("limit", "1001")), 400, 40002, None),
        (last_day(("next_offset", "garbage")), 400, 40002, None),
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
    let users = sim.handle().inventory(None).map(|i| i.users.len()).unwrap();
    for version in [SigVersion::V2Sha1, SigVersion::V2Sha512, SigVersion::V5] {
        for x_duo_date in [false, true] {
            let mut call = summary.clone();
            call.version = version;
            call.x_duo_date = x_duo_date;
            let (s, v) = call.json(&sim).await;
            assert_eq!(s, 200, "{version:?} {x_duo_date} {v}");
            // The summary counts the account's inventory.
            assert_eq!(v["response"]["user_count"], users);
        }
    }
    // Log request with params, every version; date in other RFC 2822 spellings.
    let now = now_ms();
    let logs = Call::get(&c, "/admin/v2/logs/authentication", &[])
        .param("mintime", (now - DAY).to_string())
        .param("maxtime", now.to_string())
        .param("sort", "ts:asc")
        .param(
            "next_offset",
            format!("{},{}", now - DAY, uuid::Uuid::nil()),
        );
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
    h.inject_faults(vec![FaultRule {
        path_contains: Some("/auth/v2/ping".into()),
        fault: Fault::Status(503),
    }]);
    let now = now_ms();
    let call = Call::get(&c, "/admin/v2/logs/telephony", &[])
        .param("mintime", (now - DAY).to_string())
        .param("maxtime", now.to_string());
    // The summary endpoint is not a log endpoint: unfiltered faults skip it.
    let (s, _) = Call::get(&c, "/admin/v1/info/summary", &[])
        .send(&sim)
        .await;
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
    // Rules built by a collect() infer the element type too.
    h.inject_faults(
        (0..2)
            .map(|_| FaultRule::from(Fault::RateLimited))
            .collect(),
    );
    assert_eq!(call.send(&sim).await.0, 429);
    assert_eq!(h.pending_faults(), 1);
    h.inject_fault_rules(vec![]);
    assert_eq!(call.send(&sim).await.0, 429);
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
    c.rate_limit_burst = 2;
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
    // Buckets are per endpoint: the forbidden Trust Monitor request spent its own token, and
    // the summary endpoint has a bucket of its own too.
    let (s, _) = Call::get(&c, "/admin/v1/info/summary", &[])
        .send(&sim)
        .await;
    assert_eq!(s, 200);
    sim.shutdown().await;
}
