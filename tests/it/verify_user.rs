//! `verify-user` through the real binary against the simulator's Auth API push flow (strict
//! modes on): exit codes and messages per outcome, `--json`, the `pushinfo` Duo receives, the
//! outcome event in the file sink, no secret in any output, and delivery beside a running
//! collector.

use std::process::Output;

use duo_collector::simulator::inventory::PushOutcome;
use duo_collector::simulator::inventory::{Inventory, User};
use duo_collector::simulator::{SimHandle, Simulator};

use crate::common::*;

const AUTH_IKEY: &str = "DIVER1FYAUTHAP1KEY01";
const AUTH_SKEY: &str = "verifyauthsecretverifyauthsecretverify01";

struct Env {
    sim: Simulator,
    setup: Setup,
}

impl Env {
    async fn start() -> Env {
        Env::start_with(|_| {}).await
    }

    async fn start_with(change: impl FnOnce(&mut duo_collector::simulator::SimConfig)) -> Env {
        let now = now_ms();
        let mut cfg = sim_config(10, now - 3_600_000, now - 60_000);
        cfg.auth_api_keys = Some((AUTH_IKEY.into(), AUTH_SKEY.into()));
        change(&mut cfg);
        let sim = start_sim(cfg).await;
        let setup = Setup::new(&sim.base_url(), "");
        let auth_skey = setup.dir.path().join("corp.auth.skey");
        std::fs::write(&auth_skey, format!("{AUTH_SKEY}\n")).unwrap();
        set_mode(&auth_skey, 0o600);
        let keys = format!(
            "auth_ikey = \"{AUTH_IKEY}\"\nauth_skey_file = {:?}\n[[sink]]",
            auth_skey.display().to_string()
        );
        let config = std::fs::read_to_string(&setup.config)
            .unwrap()
            .replacen("[[sink]]", &keys, 1)
            .replace("format = \"raw\"", "format = \"ocsf\"");
        std::fs::write(&setup.config, config).unwrap();
        Env { sim, setup }
    }

    fn sim(&self) -> SimHandle {
        self.sim.handle()
    }

    fn inventory(&self) -> Inventory {
        self.sim().inventory(None).unwrap()
    }

    async fn verify(&self, extra: &[&str]) -> Output {
        let config = self.setup.config.to_str().unwrap();
        let mut args = vec!["verify-user", "--config", config, "--integration", "corp"];
        args.extend_from_slice(extra);
        let out = run_cli(&args).await;
        assert_no_secret(&out);
        out
    }

    /// The `--json` object of a run for `username`.
    async fn verify_json(
        &self,
        username: &str,
        extra: &[&str],
    ) -> (Option<i32>, serde_json::Value) {
        let mut args = vec!["--username", username, "--json"];
        args.extend_from_slice(extra);
        let out = self.verify(&args).await;
        let line = String::from_utf8_lossy(&out.stdout);
        let json =
            serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
        (out.status.code(), json)
    }

    /// The verification events in the file sink (OCSF).
    fn events(&self) -> Vec<serde_json::Value> {
        read_events(&self.setup.events)
    }
}

fn assert_no_secret(out: &Output) {
    for secret in [AUTH_SKEY, SKEY] {
        let all = text(out);
        assert!(!all.contains(secret), "a secret key was printed:\n{all}");
    }
}

fn push_capable(inv: &Inventory, user: &User) -> bool {
    let phones = inv.phone_index();
    user.phone_ids
        .iter()
        .any(|p| inv.phones[phones[p.as_str()]].can_push())
}

/// Active, enrolled users who can take a push.
fn pushable(inv: &Inventory) -> Vec<String> {
    inv.users
        .iter()
        .filter(|u| u.status == "active" && u.is_enrolled && push_capable(inv, u))
        .map(|u| u.username.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_exits_0_with_pushinfo_json_and_the_outcome_event_in_the_file_sink() {
    let env = Env::start().await;
    let alice = pushable(&env.inventory())[0].clone();
    let (code, json) = env
        .verify_json(
            &alice,
            &[
                "--requested-by",
                "helpdesk-7@desk",
                "--reason",
                "ticket 4711",
                "--log-level",
                "debug",
            ],
        )
        .await;
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["outcome"], "approved");
    assert_eq!(json["verified"], true);
    assert_eq!(json["user"], alice);
    assert!(
        json["device"]["id"].as_str().unwrap().starts_with("DP"),
        "{json:#}"
    );
    assert!(json["device"]["name"].is_string());
    assert!(json["elapsed_ms"].as_u64().is_some());
    assert_eq!(json["delivered_to"], serde_json::json!(["local"]));
    let txid = json["txid"].as_str().unwrap().to_string();

    let pushes = env.sim().pushes();
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].txid, txid);
    assert_eq!(pushes[0].username, alice);
    assert_eq!(pushes[0].device, json["device"]["id"]);
    assert_eq!(
        pushes[0].pushinfo,
        vec![
            ("requested_by".to_string(), "helpdesk-7@desk".to_string()),
            ("reason".to_string(), "ticket 4711".to_string()),
        ]
    );
    // `waiting` first, then the answer: the status was polled until it came.
    assert!(pushes[0].polls >= 2, "{:?}", pushes[0]);

    let events = env.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e["class_uid"], 3002);
    assert_eq!(e["activity_id"], 1);
    assert_eq!(e["status_id"], 1);
    assert_eq!(e["user"]["name"], alice);
    assert_eq!(e["metadata"]["uid"], format!("verify-user:{txid}"));
    assert_eq!(e["unmapped"]["txid"], txid);
    assert_eq!(e["auth_factors"][0]["device"]["uid"], json["device"]["id"]);
    assert_eq!(e["unmapped"]["verification"]["outcome"], "approved");
    assert_eq!(
        e["unmapped"]["verification"]["requested_by"],
        "helpdesk-7@desk"
    );
    assert_eq!(e["unmapped"]["verification"]["reason"], "ticket 4711");
    assert_eq!(e["unmapped"]["_duo_collector"]["integration"], "corp");
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_fraud_and_no_answer_exit_1_each_with_its_own_message() {
    let env = Env::start().await;
    let users = pushable(&env.inventory());
    let (no, fraud, silent) = (&users[0], &users[1], &users[2]);
    env.sim().set_push_outcome(no, PushOutcome::Deny);
    env.sim().set_push_outcome(fraud, PushOutcome::Fraud);
    env.sim().set_push_outcome(silent, PushOutcome::NoAnswer);

    let denied = env.verify(&["--username", no]).await;
    assert_eq!(denied.status.code(), Some(1), "{}", text(&denied));
    let out = String::from_utf8_lossy(&denied.stdout);
    assert!(out.starts_with("DENIED: "), "{out}");
    assert!(
        out.contains("denied the Duo Push") && !out.contains("fraud"),
        "{out}"
    );

    let reported = env.verify(&["--username", fraud]).await;
    assert_eq!(reported.status.code(), Some(1), "{}", text(&reported));
    let out = String::from_utf8_lossy(&reported.stdout);
    assert!(out.starts_with("FRAUD: "), "{out}");
    assert!(out.contains("reported it as fraud"), "{out}");

    let started = std::time::Instant::now();
    let (code, json) = env.verify_json(silent, &["--timeout", "3s"]).await;
    assert_eq!(code, Some(1), "{json:#}");
    assert_eq!(json["outcome"], "timed_out");
    assert!(
        json["message"].as_str().unwrap().contains("no answer"),
        "{json:#}"
    );
    assert!(json["elapsed_ms"].as_u64().unwrap() >= 3_000, "{json:#}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let silent_push = env
        .sim()
        .pushes()
        .into_iter()
        .find(|p| &p.username == silent)
        .unwrap();
    assert!(silent_push.polls >= 2, "{silent_push:?}");

    let outcomes: Vec<_> = env
        .events()
        .iter()
        .map(|e| {
            (
                e["unmapped"]["verification"]["outcome"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                e["status_id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("denied".into(), 2),
            ("fraud".into(), 2),
            ("timed_out".into(), 2)
        ]
    );
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_enrolled_and_no_push_capable_device_exit_1_without_a_push() {
    let env = Env::start().await;
    let inv = env.inventory();
    let unenrolled = inv
        .users
        .iter()
        .find(|u| u.status == "active" && !u.is_enrolled)
        .map(|u| u.username.clone())
        .unwrap_or_else(|| "nobody-such".to_string());
    let out = env.verify(&["--username", &unenrolled]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("NOT_ENROLLED: ") && stdout.contains("not enrolled"),
        "{stdout}"
    );

    // A user whose every device lacks push: make one from a pushable user by taking push
    // off their phones.
    let sms_only = pushable(&inv)[0].clone();
    env.sim().mutate_inventory(None, |inv| {
        let phones: Vec<String> = inv.user_by_name(&sms_only).unwrap().phone_ids.clone();
        for p in inv
            .phones
            .iter_mut()
            .filter(|p| phones.contains(&p.phone_id))
        {
            p.capabilities.retain(|c| c != "push" && c != "auto");
        }
    });
    let (code, json) = env.verify_json(&sms_only, &[]).await;
    assert_eq!(code, Some(1), "{json:#}");
    assert_eq!(json["outcome"], "no_push_device");
    assert!(json["message"]
        .as_str()
        .unwrap()
        .contains("no device that can receive Duo Push"));
    assert_eq!(json["txid"], serde_json::Value::Null);
    let phone = env.inventory().user_by_name(&sms_only).unwrap().phone_ids[0].clone();
    let (code, json) = env.verify_json(&sms_only, &["--device", &phone]).await;
    assert_eq!(
        (code, json["outcome"].as_str()),
        (Some(1), Some("device_cannot_push"))
    );
    let other = pushable(&env.inventory())[0].clone();
    let (code, json) = env
        .verify_json(&other, &["--device", "DPNOSUCHDEVICE000000"])
        .await;
    assert_eq!(
        (code, json["outcome"].as_str()),
        (Some(1), Some("device_not_found"))
    );

    assert!(env.sim().pushes().is_empty(), "{:?}", env.sim().pushes());
    let outcomes: Vec<_> = env
        .events()
        .iter()
        .map(|e| e["unmapped"]["verification"]["outcome"].clone())
        .collect();
    assert_eq!(
        outcomes,
        [
            "not_enrolled",
            "no_push_device",
            "device_cannot_push",
            "device_not_found"
        ]
    );
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_given_by_id_is_verified_the_same_way() {
    let env = Env::start().await;
    let inv = env.inventory();
    let name = pushable(&inv)[0].clone();
    let id = inv.user_by_name(&name).unwrap().user_id.clone();
    let out = env.verify(&["--user-id", &id, "--device", "auto"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("APPROVED: "));
    assert_eq!(env.sim().pushes()[0].user_id, id);
    assert_eq!(env.events()[0]["user"]["uid"], id);
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_auth_api_keys_or_integration_exit_2_and_say_how_to_fix_it() {
    let env = Env::start().await;
    let config = std::fs::read_to_string(&env.setup.config).unwrap();
    let without: String = config
        .lines()
        .filter(|l| !l.starts_with("auth_"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&env.setup.config, without).unwrap();
    let user = pushable(&env.inventory())[0].clone();
    let out = env.verify(&["--username", &user]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for needed in [
        "no Auth API keys",
        "\"Auth API\"",
        "auth_ikey",
        "auth_skey_file",
        "auth_skey_env",
        "auth_skey_credential",
    ] {
        assert!(err.contains(needed), "{needed} missing from: {err}");
    }

    let config = env.setup.config.to_str().unwrap();
    let out = run_cli(&[
        "verify-user",
        "--config",
        config,
        "--integration",
        "nope",
        "--username",
        &user,
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"nope\""));
    assert!(env.sim().pushes().is_empty());
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beside_a_running_collector_the_event_is_appended_and_nothing_is_cut() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::start().await;
    // What a collector holding the lock might have in the file: a committed line, then a page
    // written and not committed yet.
    let state_dir = env.setup.dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    std::fs::create_dir_all(env.setup.events.parent().unwrap()).unwrap();
    std::fs::write(&env.setup.events, "{\"committed\":1}\n").unwrap();
    let meta = std::fs::metadata(&env.setup.events).unwrap();
    let state = duo_collector::state::State::open(&env.setup.state_db()).unwrap();
    let mark = duo_collector::state::FileMark {
        sink: "local".into(),
        path: env.setup.events.display().to_string(),
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
    };
    state.record_file_mark(&mark, now_ms()).unwrap();
    let lock = std::fs::File::create(state_dir.join("lock")).unwrap();
    lock.try_lock().unwrap();
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&env.setup.events)
            .unwrap();
        f.write_all(b"{\"in_flight\":1}\n").unwrap();
    }

    let user = pushable(&env.inventory())[0].clone();
    let out = env.verify(&["--username", &user]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let events = env.events();
    assert_eq!(events.len(), 3, "{events:#?}");
    assert_eq!(events[0]["committed"], 1);
    assert_eq!(events[1]["in_flight"], 1);
    assert_eq!(events[2]["unmapped"]["verification"]["outcome"], "approved");
    // Recorded as committed, so that the service's next start keeps it.
    let len = std::fs::metadata(&env.setup.events).unwrap().len();
    assert_eq!(state.file_mark("local").unwrap().unwrap().len, len);
    drop(lock);

    // With no collector running, the sinks open as the service opens them: the page a crash
    // left uncommitted is cut first.
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&env.setup.events)
            .unwrap();
        f.write_all(b"{\"crashed\":1}\n").unwrap();
    }
    let out = env.verify(&["--username", &user]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let events = env.events();
    assert_eq!(events.len(), 4, "{events:#?}");
    assert!(events[3]["unmapped"]["verification"].is_object());
    assert!(
        events.iter().all(|e| e.get("crashed").is_none()),
        "{events:#?}"
    );
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_and_disabled_users_get_no_push_and_exit_1() {
    let env = Env::start().await;
    let users = pushable(&env.inventory());
    let (bypass, disabled) = (users[0].clone(), users[1].clone());
    env.sim().mutate_inventory(None, |inv| {
        for u in inv.users.iter_mut() {
            if u.username == bypass {
                u.status = "bypass".into();
            } else if u.username == disabled {
                u.status = "disabled".into();
            }
        }
    });
    let (code, json) = env.verify_json(&bypass, &[]).await;
    assert_eq!((code, json["outcome"].as_str()), (Some(1), Some("bypass")));
    assert!(
        json["message"].as_str().unwrap().contains("bypass"),
        "{json:#}"
    );
    let (code, json) = env.verify_json(&disabled, &[]).await;
    assert_eq!((code, json["outcome"].as_str()), (Some(1), Some("refused")));
    // Duo's own words come along.
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("(Duo: Your account is disabled)"),
        "{json:#}"
    );
    assert!(env.sim().pushes().is_empty());
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_status_polls_are_retried_on_duos_schedule_until_the_answer() {
    // One auth_status call per 3 s per key: the once-a-second polls meet 429s.
    let env = Env::start_with(|c| {
        c.rate_limit_per_minute = Some(20);
        c.rate_limit_burst = 1;
    })
    .await;
    let user = pushable(&env.inventory())[0].clone();
    let (code, json) = env.verify_json(&user, &["--timeout", "45s"]).await;
    assert_eq!(
        (code, json["outcome"].as_str()),
        (Some(0), Some("approved")),
        "{json:#}"
    );
    let polls: Vec<u16> = env
        .sim()
        .requests()
        .iter()
        .filter(|r| r.path == "/auth/v2/auth_status")
        .map(|r| r.status)
        .collect();
    assert!(polls.contains(&429), "{polls:?}");
    assert_eq!(polls.iter().filter(|s| **s == 200).count(), 2, "{polls:?}");
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_auth_api_keys_exit_1_with_duos_answer_and_no_secret() {
    let env = Env::start().await;
    let wrong = "wrongsecretwrongsecretwrongsecretwrong01";
    std::fs::write(env.setup.dir.path().join("corp.auth.skey"), wrong).unwrap();
    let user = pushable(&env.inventory())[0].clone();
    let out = env.verify(&["--username", &user]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Duo preauth failed") && err.contains("40103"),
        "{err}"
    );
    assert!(!text(&out).contains(wrong));
    assert!(env.events().is_empty());
    env.sim.shutdown().await;
}

/// Golden snapshots of the outcome event in every format, one per outcome kind that reads
/// differently (pushed and approved, fraud, timed out, no push at all). `tests/ocsf/validate.py`
/// checks `it__verify_user__*_ocsf.snap` against the OCSF 1.7.0 schema and the CEF lines with
/// the cefp parser.
#[test]
fn outcome_event_golden() {
    use duo_collector::event::{Batch, StreamId};
    use duo_collector::log_kind::LogKind;
    use duo_collector::normalize::{render_one, Format};
    use duo_collector::verify::record::{event_id, outcome_event, OutcomeFacts};
    use duo_collector::verify::{Device, Outcome, UserRef};

    let device = Device {
        id: "DP0000000000000000P1".into(),
        name: Some("iPhone".into()),
        display_name: Some("iOS (XXX-XXX-0100)".into()),
        number: Some("XXX-XXX-0100".into()),
        capabilities: vec!["auto".into(), "push".into()],
    };
    let by_name = UserRef::Username("zoë.okafor".into());
    let by_id = UserRef::UserId("DU0000000000000000U1".into());
    let cases = [
        (
            Outcome::Approved,
            &by_name,
            Some("Success. Logging you in..."),
        ),
        (
            Outcome::Fraud,
            &by_id,
            Some("Login request reported as fraudulent."),
        ),
        (
            Outcome::TimedOut,
            &by_name,
            Some("Pushed a login request to your device..."),
        ),
        (
            Outcome::NotEnrolled,
            &by_name,
            Some("Enroll an authentication device to proceed"),
        ),
    ];
    let stream = StreamId::new("corp", None, LogKind::Authentication);
    let mut rendered: std::collections::BTreeMap<&str, Vec<serde_json::Value>> = Default::default();
    for (i, (outcome, user, duo_says)) in cases.into_iter().enumerate() {
        let txid = format!("0c1d2e3f-0000-4000-8000-00000000000{i}");
        let facts = OutcomeFacts {
            user,
            device: outcome.pushed().then_some(&device),
            txid: outcome.pushed().then_some(txid.as_str()),
            outcome,
            message: &outcome.message(user.as_str(), Some("iOS (XXX-XXX-0100)"), duo_says),
            duo_status_msg: duo_says,
            requested_by: "jdoe@helpdesk-3",
            reason: "ticket 4711",
            auth_ikey: "DI0000000000000000AU",
            hostname: "helpdesk-3",
            elapsed_ms: 6_012,
            at_ms: 1_760_000_000_000 + i as i64,
        };
        let event = outcome_event(&facts, event_id(facts.txid, &format!("corp:{i}")));
        let batch = Batch::of_events(
            &stream,
            "2025-10-09T08:53:20.000Z",
            std::slice::from_ref(&event),
        );
        for format in Format::ALL {
            let line = render_one(format, &batch, &event);
            let value = if format == Format::Cef {
                serde_json::json!({"line": line, "event_id": event.event_id, "special": false})
            } else {
                serde_json::from_str(&line).unwrap()
            };
            rendered.entry(format.as_str()).or_default().push(value);
        }
    }
    for (format, events) in rendered {
        insta::assert_json_snapshot!(format!("outcomes_{format}"), events);
    }
}
