//! Inventory listings, the summary and the Auth API push flow.

use std::collections::HashSet;

use serde_json::Value;

use super::*;
use crate::simulator::inventory::{InventoryCounts, PushOutcome};
use crate::simulator::SimConfig;

/// Pages a listing the way duo_client_python's `json_paging_api_call` does.
async fn page_all(sim: &Simulator, c: &SimConfig, path: &str, limit: usize) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut offset = 0;
    let mut requests = 0;
    loop {
        let (status, v) = Call::get(c, path, &[])
            .param("limit", limit.to_string())
            .param("offset", offset.to_string())
            .json(sim)
            .await;
        requests += 1;
        assert_eq!(status, 200, "{path}: {v}");
        out.extend(v["response"].as_array().unwrap().iter().cloned());
        match v["metadata"]["next_offset"].as_u64() {
            Some(n) => offset = n as usize,
            None => return (out, requests),
        }
    }
}

fn ids(list: &[Value], key: &str) -> Vec<String> {
    list.iter()
        .map(|v| v[key].as_str().unwrap().to_string())
        .collect()
}

fn inv_cfg() -> SimConfig {
    SimConfig {
        inventory: InventoryCounts {
            users: 700,
            admins: 9,
            groups: 6,
            endpoints: 120,
            integrations: 11,
        },
        rate_limit_per_minute: None,
        ..cfg().strict()
    }
}

#[tokio::test]
async fn every_listing_pages_each_entity_once_through_short_pages() {
    let c = inv_cfg();
    let sim = start(c.clone()).await;
    let truth = sim.handle().inventory(None).unwrap();
    for (path, key, limit, want) in [
        (
            "/admin/v1/users",
            "user_id",
            300,
            truth
                .users
                .iter()
                .map(|u| u.user_id.clone())
                .collect::<Vec<_>>(),
        ),
        (
            "/admin/v1/admins",
            "admin_id",
            100,
            truth.admins.iter().map(|a| a.admin_id.clone()).collect(),
        ),
        (
            "/admin/v1/groups",
            "group_id",
            100,
            truth.groups.iter().map(|g| g.group_id.clone()).collect(),
        ),
        (
            "/admin/v1/phones",
            "phone_id",
            100,
            truth.phones.iter().map(|p| p.phone_id.clone()).collect(),
        ),
        (
            "/admin/v1/endpoints",
            "epkey",
            50,
            truth.endpoints.iter().map(|e| e.epkey.clone()).collect(),
        ),
        (
            "/admin/v3/integrations",
            "integration_key",
            5,
            truth
                .integrations
                .iter()
                .map(|i| i.integration_key.clone())
                .collect(),
        ),
    ] {
        let (got, requests) = page_all(&sim, &c, path, limit).await;
        let got = ids(&got, key);
        assert_eq!(got, want, "{path}: every entity once, in order");
        assert!(
            requests > want.len().div_ceil(limit),
            "{path}: short pages and a last empty page"
        );
    }
    let short = sim
        .handle()
        .requests()
        .iter()
        .filter(|r| r.listing.is_some())
        .filter(|r| {
            let limit: usize = r
                .params
                .iter()
                .find(|(k, _)| k == "limit")
                .unwrap()
                .1
                .parse()
                .unwrap();
            r.records.is_some_and(|n| n > 0 && n < limit)
        })
        .count();
    assert!(short > 0, "some pages were short while more existed");
    sim.shutdown().await;
}

#[tokio::test]
async fn users_embed_phones_tokens_and_groups_and_phones_list_their_users() {
    let c = SimConfig {
        inventory: InventoryCounts {
            users: 400,
            ..InventoryCounts::default()
        },
        ..cfg()
    };
    let sim = start(c.clone()).await;
    let truth = sim.handle().inventory(None).unwrap();
    let (users, _) = page_all(&sim, &c, "/admin/v1/users", 300).await;
    let statuses: HashSet<&str> = users
        .iter()
        .map(|u| u["status"].as_str().unwrap())
        .collect();
    for s in ["active", "bypass", "disabled", "locked out"] {
        assert!(statuses.contains(s), "the mix has {s} users: {statuses:?}");
    }
    assert!(users.iter().any(|u| u["is_enrolled"] == false));
    assert!(users.iter().any(|u| u["last_login"].is_null()));
    let weak = |u: &Value| {
        let phones = u["phones"].as_array().unwrap();
        !phones.is_empty()
            && phones.iter().all(|p| {
                p["capabilities"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|c| c == "sms" || c == "phone")
            })
            && u["tokens"].as_array().unwrap().is_empty()
            && u["webauthncredentials"].as_array().unwrap().is_empty()
    };
    assert!(
        users.iter().any(weak),
        "some users hold only SMS or phone-call factors"
    );
    for (u, t) in users.iter().zip(&truth.users) {
        let phones: Vec<&str> = u["phones"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["phone_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            phones,
            t.phone_ids.iter().map(String::as_str).collect::<Vec<_>>()
        );
        let groups: Vec<&str> = u["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["group_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            groups,
            t.group_ids.iter().map(String::as_str).collect::<Vec<_>>()
        );
    }
    let (phones, _) = page_all(&sim, &c, "/admin/v1/phones", 500).await;
    let shared = phones
        .iter()
        .filter(|p| p["users"].as_array().unwrap().len() > 1)
        .count();
    assert!(shared > 0, "some phones are shared");
    let (apps, _) = page_all(&sim, &c, "/admin/v3/integrations", 100).await;
    assert!(
        apps.iter().all(|a| a["secret_key"].is_string()),
        "Duo lists secret keys; the collector must drop them"
    );
    let (status, summary) = Call::get(&c, "/admin/v1/info/summary", &[])
        .json(&sim)
        .await;
    assert_eq!(status, 200);
    assert_eq!(summary["response"]["user_count"], 400);
    assert_eq!(
        summary["response"]["telephony_credits_remaining"],
        truth.telephony_credits_remaining
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_paging_parameters_and_forbidden_listings_are_refused_like_duo() {
    let c = SimConfig {
        forbidden_kinds: vec!["admins".into()],
        ..cfg()
    };
    let sim = start(c.clone()).await;
    for limit in ["0", "301", "x"] {
        let (status, v) = Call::get(&c, "/admin/v1/users", &[("limit", limit)])
            .json(&sim)
            .await;
        assert_eq!((status, code(&v)), (400, 40002), "limit={limit}: {v}");
    }
    let (status, v) = Call::get(&c, "/admin/v1/admins", &[]).json(&sim).await;
    assert_eq!((status, code(&v)), (403, 40301), "{v}");
    sim.shutdown().await;
}

#[tokio::test]
async fn mutations_show_in_the_next_listing() {
    let c = cfg();
    let sim = start(c.clone()).await;
    let handle = sim.handle();
    let victim = handle.inventory(None).unwrap().users[3].user_id.clone();
    handle.mutate_inventory(None, |inv| {
        inv.users[3].status = "disabled".into();
        inv.users.remove(5);
    });
    let (users, _) = page_all(&sim, &c, "/admin/v1/users", 100).await;
    assert_eq!(users.len(), InventoryCounts::default().users - 1);
    let v = users
        .iter()
        .find(|u| u["user_id"] == victim.as_str())
        .unwrap();
    assert_eq!(v["status"], "disabled");
    sim.shutdown().await;
}

fn auth_call(c: &SimConfig, method: &'static str, path: &str, params: &[(&str, &str)]) -> Call {
    let (ikey, skey) = c.auth_api_keys.clone().unwrap();
    let mut call = Call::get(c, path, params).keys(&ikey, &skey);
    call.method = method;
    call.version = crate::duo::sign::SigVersion::V2Sha1;
    call
}

#[tokio::test]
async fn push_flow_answers_preauth_auth_and_auth_status_per_outcome() {
    let c = SimConfig {
        auth_api_keys: Some((
            "DIAUTHAP1KEYAUTHAP1X".into(),
            "authapisecretauthapisecretauthapisecret0".into(),
        )),
        ..cfg()
    };
    let sim = start(c.clone()).await;
    let handle = sim.handle();
    let inv = handle.inventory(None).unwrap();
    let phones = inv.phone_index();
    let pushable = |u: &&crate::simulator::inventory::User| {
        u.status == "active"
            && u.is_enrolled
            && u.phone_ids
                .iter()
                .any(|p| inv.phones[phones[p.as_str()]].can_push())
    };
    let mut candidates = inv.users.iter().filter(pushable);
    let (yes, no, silent, fraud) = (
        candidates.next().unwrap(),
        candidates.next().unwrap(),
        candidates.next().unwrap(),
        candidates.next().unwrap(),
    );
    handle.set_push_outcome(&no.username, PushOutcome::Deny);
    handle.set_push_outcome(&silent.username, PushOutcome::NoAnswer);
    handle.set_push_outcome(&fraud.username, PushOutcome::Fraud);
    for (user, want) in [
        (yes, ("allow", "allow")),
        (no, ("deny", "deny")),
        (silent, ("waiting", "pushed")),
        (fraud, ("deny", "fraud")),
    ] {
        let (status, pre) = auth_call(
            &c,
            "POST",
            "/auth/v2/preauth",
            &[("username", &user.username)],
        )
        .json(&sim)
        .await;
        assert_eq!(status, 200, "{pre}");
        assert_eq!(pre["response"]["result"], "auth");
        let (status, tx) = auth_call(
            &c,
            "POST",
            "/auth/v2/auth",
            &[
                ("username", &user.username),
                ("factor", "push"),
                ("device", "auto"),
                ("async", "1"),
                ("pushinfo", "requested_by=helpdesk&reason=callback"),
            ],
        )
        .json(&sim)
        .await;
        assert_eq!(status, 200, "{tx}");
        let txid = tx["response"]["txid"].as_str().unwrap().to_string();
        let mut last = Value::Null;
        for _ in 0..3 {
            let (status, v) = auth_call(&c, "GET", "/auth/v2/auth_status", &[("txid", &txid)])
                .json(&sim)
                .await;
            assert_eq!(status, 200, "{v}");
            last = v;
        }
        assert_eq!(
            (
                last["response"]["result"].as_str().unwrap(),
                last["response"]["status"].as_str().unwrap()
            ),
            want
        );
    }
    let pushes = handle.pushes();
    assert_eq!(pushes.len(), 4);
    assert!(pushes[0]
        .pushinfo
        .contains(&("requested_by".into(), "helpdesk".into())));
    let unenrolled = inv
        .users
        .iter()
        .find(|u| !u.is_enrolled && u.status == "active")
        .unwrap();
    let (_, pre) = auth_call(
        &c,
        "POST",
        "/auth/v2/preauth",
        &[("username", &unenrolled.username)],
    )
    .json(&sim)
    .await;
    assert_eq!(pre["response"]["result"], "enroll");
    // Admin API keys cannot push; Auth API keys cannot list users.
    let (status, _) = Call::get(&c, "/auth/v2/preauth", &[("username", "x")])
        .json(&sim)
        .await;
    assert_ne!(status, 200);
    let (status, v) = auth_call(&c, "GET", "/admin/v1/users", &[])
        .json(&sim)
        .await;
    assert_eq!((status, code(&v)), (403, 40301), "{v}");
    sim.shutdown().await;
}
