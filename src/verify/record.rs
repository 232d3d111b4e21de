//! The outcome as one event, pure. It is shaped like a record of Duo's authentication log
//! (`txid`, `user`, `factor`, `result`, `reason`, `auth_device`, …; `event_type`
//! `verification`), so every format renders
//! it as it renders Duo's authentications (OCSF Authentication 3002, activity Logon; ECS
//! `authentication`; raw; CEF), and the verification's own facts (who asked, why, the
//! outcome, how long it took) travel under `verification`, which lands in OCSF `unmapped` and
//! ECS `cisco_duo.auth`.

use serde_json::{json, Value};

use super::decide::{Device, Outcome, UserRef};
use crate::event::Event;

/// Everything the event says.
pub struct OutcomeFacts<'a> {
    pub user: &'a UserRef,
    pub device: Option<&'a Device>,
    pub txid: Option<&'a str>,
    pub outcome: Outcome,
    pub message: &'a str,
    /// Duo's last `status_msg` (from `auth_status` or `preauth`).
    pub duo_status_msg: Option<&'a str>,
    pub requested_by: &'a str,
    pub reason: &'a str,
    /// The Auth API application's integration key (not a secret: Duo logs it as
    /// `application.key`).
    pub auth_ikey: &'a str,
    /// The host the request came from.
    pub hostname: &'a str,
    pub elapsed_ms: u64,
    pub at_ms: i64,
}

/// The event id: unique per verification, and never a Duo `txid` alone, so that Duo's own
/// authentication record of the same push (collected later with the logs) is not taken for
/// a duplicate of this one downstream.
pub fn event_id(txid: Option<&str>, fallback: &str) -> String {
    format!("verify-user:{}", txid.unwrap_or(fallback))
}

pub fn outcome_event(facts: &OutcomeFacts<'_>, event_id: String) -> Event {
    let (result, reason) = facts.outcome.result_and_reason();
    let at = chrono::DateTime::from_timestamp_millis(facts.at_ms).unwrap_or_default();
    let (name, key) = match facts.user {
        UserRef::Username(u) => (Value::from(u.as_str()), Value::Null),
        UserRef::UserId(id) => (Value::Null, Value::from(id.as_str())),
    };
    let auth_device = match facts.device {
        Some(d) => json!({"key": d.id, "name": d.label()}),
        None => json!({"key": null, "name": null}),
    };
    let record = json!({
        "txid": facts.txid,
        "timestamp": facts.at_ms.div_euclid(1000),
        "isotimestamp": at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(),
        // Duo's own values are `authentication` and `enrollment`; this one says the record is
        // the collector's, not Duo's log of the same push (ECS `event.action`, CEF `act`).
        "event_type": "verification",
        "factor": if facts.outcome.pushed() { "duo_push" } else { "not_available" },
        "result": result,
        "reason": reason,
        "user": {"name": name, "key": key},
        "application": {"name": "duo-collector verify-user", "key": facts.auth_ikey},
        "auth_device": auth_device,
        "access_device": {"hostname": facts.hostname},
        "verification": {
            "outcome": facts.outcome.as_str(),
            "verified": facts.outcome == Outcome::Approved,
            "message": facts.message,
            "requested_by": facts.requested_by,
            "reason": facts.reason,
            "duo_status_msg": facts.duo_status_msg,
            "elapsed_ms": facts.elapsed_ms,
        },
    });
    Event {
        raw: record.to_string(),
        event_id,
        ts_ms: facts.at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Batch, StreamId};
    use crate::log_kind::LogKind;
    use crate::normalize::{render_one, Format};

    fn facts<'a>(
        user: &'a UserRef,
        device: Option<&'a Device>,
        outcome: Outcome,
    ) -> OutcomeFacts<'a> {
        OutcomeFacts {
            user,
            device,
            txid: outcome.pushed().then_some("tx-1"),
            outcome,
            message: "msg",
            duo_status_msg: Some("Success. Logging you in..."),
            requested_by: "helpdesk@host",
            reason: "help desk verification",
            auth_ikey: "DIAUTH",
            hostname: "host",
            elapsed_ms: 1234,
            at_ms: 1_700_000_000_123,
        }
    }

    fn render(format: Format, event: &Event) -> String {
        let stream = StreamId::new("corp", None, LogKind::Authentication);
        let batch = Batch::of_events(&stream, "2023-11-14T22:13:20Z", std::slice::from_ref(event));
        render_one(format, &batch, event)
    }

    fn ocsf(event: &Event) -> Value {
        serde_json::from_str(&render(Format::Ocsf, event)).unwrap()
    }

    #[test]
    fn ecs_cef_and_raw_carry_the_verification_as_other_authentications() {
        let user = UserRef::Username("alice".into());
        let event = outcome_event(
            &facts(&user, None, Outcome::Denied),
            "verify-user:tx-1".into(),
        );
        let ecs: Value = serde_json::from_str(&render(Format::Ecs, &event)).unwrap();
        assert_eq!(ecs["event"]["outcome"], "failure");
        assert_eq!(ecs["user"]["name"], "alice");
        assert_eq!(
            ecs["cisco_duo"]["auth"]["verification"]["outcome"],
            "denied"
        );
        let raw: Value = serde_json::from_str(&render(Format::Raw, &event)).unwrap();
        assert_eq!(raw["verification"]["requested_by"], "helpdesk@host");
        assert_eq!(raw["_duo_collector"]["event_id"], "verify-user:tx-1");
        let cef = render(Format::Cef, &event);
        assert!(cef.starts_with("CEF:0|"), "{cef}");
        assert!(cef.contains("alice"), "{cef}");
    }

    #[test]
    fn an_approval_renders_as_a_successful_ocsf_logon_with_the_verification_unmapped() {
        let user = UserRef::Username("alice".into());
        let device = Device {
            id: "DP1".into(),
            name: Some("iPhone".into()),
            display_name: None,
            number: None,
            capabilities: vec!["push".into()],
        };
        let f = facts(&user, Some(&device), Outcome::Approved);
        let event = outcome_event(&f, event_id(f.txid, "x"));
        assert_eq!(event.event_id, "verify-user:tx-1");
        let v = ocsf(&event);
        assert_eq!(v["class_uid"], 3002);
        assert_eq!(v["activity_id"], 1);
        assert_eq!(v["status_id"], 1);
        assert_eq!(v["user"]["name"], "alice");
        assert_eq!(v["auth_factors"][0]["factor_type_id"], 5);
        assert_eq!(v["auth_factors"][0]["device"]["uid"], "DP1");
        assert_eq!(v["metadata"]["uid"], "verify-user:tx-1");
        let ver = &v["unmapped"]["verification"];
        assert_eq!(ver["outcome"], "approved");
        assert_eq!(ver["requested_by"], "helpdesk@host");
        assert_eq!(ver["elapsed_ms"], 1234);
    }

    #[test]
    fn fraud_and_outcomes_without_a_push_are_failures() {
        let user = UserRef::UserId("DU1".into());
        let fraud = outcome_event(&facts(&user, None, Outcome::Fraud), "id".into());
        let v = ocsf(&fraud);
        assert_eq!(v["status_id"], 2);
        assert_eq!(v["severity_id"], 4);
        assert_eq!(v["user"]["uid"], "DU1");
        let unenrolled = outcome_event(&facts(&user, None, Outcome::NotEnrolled), "id".into());
        let v = ocsf(&unenrolled);
        assert_eq!(v["status_id"], 2);
        assert_eq!(v["status_detail"], "not_enrolled");
        assert!(v.get("auth_factors").is_none());
        assert_eq!(event_id(None, "fallback"), "verify-user:fallback");
    }
}
