//! The decisions of `verify-user`, pure: Duo's answers in, the next step or the outcome out.
//! No I/O and no clock: the caller hands in how long things took.

use std::time::Duration;

use serde::Deserialize;

use crate::logs::page::{response_of, PageError};

/// How long to wait between two `auth_status` calls that said "waiting". Duo's own examples
/// poll about once a second; a call that long-polled already waited that long.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Who the push is for, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Username(String),
    UserId(String),
}

impl UserRef {
    /// The request parameter naming the user (`username` or `user_id`).
    pub fn param(&self) -> (String, String) {
        match self {
            UserRef::Username(u) => ("username".to_string(), u.clone()),
            UserRef::UserId(id) => ("user_id".to_string(), id.clone()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            UserRef::Username(s) | UserRef::UserId(s) => s,
        }
    }
}

/// `--device`: the first push-capable device, or this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Id(String),
}

impl DeviceChoice {
    pub fn parse(text: &str) -> DeviceChoice {
        match text.trim() {
            "" | "auto" => DeviceChoice::Auto,
            id => DeviceChoice::Id(id.to_string()),
        }
    }
}

/// A device from `preauth`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Device {
    #[serde(rename = "device")]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
}

impl Device {
    pub fn can_push(&self) -> bool {
        self.capabilities.iter().any(|c| c == "push")
    }

    /// What a person recognizes: Duo's display name, else the name, else the masked number.
    pub fn label(&self) -> String {
        [&self.display_name, &self.name, &self.number]
            .into_iter()
            .flatten()
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| self.id.clone())
    }
}

/// `preauth`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Preauth {
    pub result: String,
    #[serde(default)]
    pub status_msg: Option<String>,
    #[serde(default)]
    pub devices: Vec<Device>,
}

/// `auth_status`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuthStatus {
    pub result: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub status_msg: Option<String>,
}

#[derive(Deserialize)]
struct Txid {
    txid: String,
}

fn parse_response<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, PageError> {
    let response = response_of(body)?;
    serde_json::from_str(response.get())
        .map_err(|e| PageError(format!("unexpected {what} response ({e})")))
}

pub fn parse_preauth(body: &[u8]) -> Result<Preauth, PageError> {
    parse_response(body, "preauth")
}

pub fn parse_auth_status(body: &[u8]) -> Result<AuthStatus, PageError> {
    parse_response(body, "auth_status")
}

pub fn parse_txid(body: &[u8]) -> Result<String, PageError> {
    parse_response::<Txid>(body, "auth").map(|t| t.txid)
}

/// How a verification ended. Only `Approved` verifies the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Approved,
    Denied,
    /// Denied and reported as fraud: whoever asked may not be the user.
    Fraud,
    TimedOut,
    NotEnrolled,
    /// Duo lets this user in without a second factor: nothing can be verified.
    Bypass,
    /// Duo refuses the user outright (disabled, locked out, denied by policy).
    Refused,
    NoPushDevice,
    DeviceNotFound,
    DeviceCannotPush,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Approved => "approved",
            Outcome::Denied => "denied",
            Outcome::Fraud => "fraud",
            Outcome::TimedOut => "timed_out",
            Outcome::NotEnrolled => "not_enrolled",
            Outcome::Bypass => "bypass",
            Outcome::Refused => "refused",
            Outcome::NoPushDevice => "no_push_device",
            Outcome::DeviceNotFound => "device_not_found",
            Outcome::DeviceCannotPush => "device_cannot_push",
        }
    }

    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Approved => 0,
            _ => 1,
        }
    }

    /// Whether a push was sent (the outcomes after `auth`).
    pub fn pushed(self) -> bool {
        matches!(
            self,
            Outcome::Approved | Outcome::Denied | Outcome::Fraud | Outcome::TimedOut
        )
    }

    /// The Duo authentication log's `result` and `reason` for this outcome, so the event reads
    /// like Duo's own records; where Duo has no word the outcome names itself.
    pub fn result_and_reason(self) -> (&'static str, &'static str) {
        match self {
            Outcome::Approved => ("success", "user_approved"),
            Outcome::Fraud => ("fraud", "user_marked_fraud"),
            Outcome::Denied => ("denied", "user_denied"),
            Outcome::TimedOut => ("denied", "no_response"),
            Outcome::Bypass => ("denied", "bypass_user"),
            other => ("denied", other.as_str()),
        }
    }

    /// One sentence for the person at the help desk.
    pub fn message(self, user: &str, device: Option<&str>, duo_says: Option<&str>) -> String {
        let on = device.map(|d| format!(" on {d}")).unwrap_or_default();
        let duo = duo_says
            .filter(|s| !s.is_empty())
            .map(|s| format!(" (Duo: {s})"))
            .unwrap_or_default();
        match self {
            Outcome::Approved => format!("{user} approved the Duo Push{on}: verified"),
            Outcome::Denied => format!("{user} denied the Duo Push{on}: NOT verified"),
            Outcome::Fraud => format!(
                "{user} denied the Duo Push{on} and reported it as fraud: NOT verified; treat the caller as suspicious"
            ),
            Outcome::TimedOut => format!(
                "no answer to the Duo Push{on} before the timeout: NOT verified (ask the user to open Duo Mobile, or try again with a longer --timeout)"
            ),
            Outcome::NotEnrolled => format!(
                "{user} is not enrolled in Duo (or does not exist): no push sent, NOT verified{duo}"
            ),
            Outcome::Bypass => format!(
                "{user} is in bypass status: Duo lets them in without a second factor, so no push can verify them; NOT verified{duo}"
            ),
            Outcome::Refused => format!(
                "Duo refuses {user} (disabled, locked out or denied by policy): no push sent, NOT verified{duo}"
            ),
            Outcome::NoPushDevice => format!(
                "{user} has no device that can receive Duo Push (only SMS, phone call, tokens or none): no push sent, NOT verified"
            ),
            Outcome::DeviceNotFound => format!(
                "{user} has no device {}: no push sent, NOT verified (omit --device, or use --device auto, to pick the first push-capable one)",
                device.unwrap_or("?")
            ),
            Outcome::DeviceCannotPush => format!(
                "device {} of {user} cannot receive Duo Push: no push sent, NOT verified (use --device auto, or another device)",
                device.unwrap_or("?")
            ),
        }
    }
}

/// What `preauth` leads to: a push to this device, or an outcome without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterPreauth {
    Push(Device),
    Done(Outcome),
    /// A `result` Duo does not document: stop and say so.
    Unexpected(String),
}

pub fn after_preauth(preauth: &Preauth, choice: &DeviceChoice) -> AfterPreauth {
    match preauth.result.as_str() {
        "auth" => {}
        "enroll" => return AfterPreauth::Done(Outcome::NotEnrolled),
        "allow" => return AfterPreauth::Done(Outcome::Bypass),
        "deny" => return AfterPreauth::Done(Outcome::Refused),
        other => return AfterPreauth::Unexpected(other.to_string()),
    }
    match choice {
        DeviceChoice::Auto => preauth
            .devices
            .iter()
            .find(|d| d.can_push())
            .map_or(AfterPreauth::Done(Outcome::NoPushDevice), |d| {
                AfterPreauth::Push(d.clone())
            }),
        DeviceChoice::Id(id) => match preauth.devices.iter().find(|d| &d.id == id) {
            None => AfterPreauth::Done(Outcome::DeviceNotFound),
            Some(d) if !d.can_push() => AfterPreauth::Done(Outcome::DeviceCannotPush),
            Some(d) => AfterPreauth::Push(d.clone()),
        },
    }
}

/// What one `auth_status` answer leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterStatus {
    /// Still waiting for the user: ask again after this pause.
    Wait(Duration),
    Done(Outcome),
    /// The answer came too late, or a further wait would end after the deadline.
    TimedOut,
    Unexpected(String),
}

/// `took`: how long the `auth_status` call itself took (Duo may long-poll); `remaining`: the
/// time left before `--timeout` after the call.
pub fn after_status(status: &AuthStatus, took: Duration, remaining: Duration) -> AfterStatus {
    match status.result.as_str() {
        "allow" => AfterStatus::Done(Outcome::Approved),
        "deny" if status.status.as_deref() == Some("fraud") => AfterStatus::Done(Outcome::Fraud),
        "deny" => AfterStatus::Done(Outcome::Denied),
        "waiting" if remaining.is_zero() => AfterStatus::TimedOut,
        "waiting" => AfterStatus::Wait(POLL_INTERVAL.saturating_sub(took).min(remaining)),
        other => AfterStatus::Unexpected(other.to_string()),
    }
}

/// The `pushinfo` parameter: URL-encoded key/value pairs shown in Duo Mobile (Duo's limit is
/// 20,000 bytes; ours are a few dozen).
pub fn pushinfo(requested_by: &str, reason: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("requested_by", requested_by)
        .append_pair("reason", reason)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, caps: &[&str]) -> Device {
        Device {
            id: id.to_string(),
            name: None,
            display_name: Some(format!("Phone {id}")),
            number: None,
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn preauth(result: &str, devices: Vec<Device>) -> Preauth {
        Preauth {
            result: result.to_string(),
            status_msg: None,
            devices,
        }
    }

    fn status(result: &str, st: &str) -> AuthStatus {
        AuthStatus {
            result: result.to_string(),
            status: Some(st.to_string()),
            status_msg: None,
        }
    }

    #[test]
    fn preauth_results_other_than_auth_end_without_a_push() {
        for (result, outcome) in [
            ("enroll", Outcome::NotEnrolled),
            ("allow", Outcome::Bypass),
            ("deny", Outcome::Refused),
        ] {
            let p = preauth(result, vec![device("DP1", &["push"])]);
            assert_eq!(
                after_preauth(&p, &DeviceChoice::Auto),
                AfterPreauth::Done(outcome)
            );
        }
        assert_eq!(
            after_preauth(&preauth("later", vec![]), &DeviceChoice::Auto),
            AfterPreauth::Unexpected("later".into())
        );
    }

    #[test]
    fn auto_takes_the_first_push_capable_device() {
        let sms = device("DP1", &["sms", "phone"]);
        let push = device("DP2", &["auto", "push", "sms"]);
        let later = device("DP3", &["push"]);
        let p = preauth("auth", vec![sms.clone(), push.clone(), later]);
        assert_eq!(
            after_preauth(&p, &DeviceChoice::Auto),
            AfterPreauth::Push(push)
        );
        let none = preauth("auth", vec![sms]);
        assert_eq!(
            after_preauth(&none, &DeviceChoice::Auto),
            AfterPreauth::Done(Outcome::NoPushDevice)
        );
        assert_eq!(
            after_preauth(&preauth("auth", vec![]), &DeviceChoice::Auto),
            AfterPreauth::Done(Outcome::NoPushDevice)
        );
    }

    #[test]
    fn a_given_device_must_exist_and_push() {
        let p = preauth(
            "auth",
            vec![device("DP1", &["sms"]), device("DP2", &["push"])],
        );
        let pick = |id: &str| after_preauth(&p, &DeviceChoice::parse(id));
        assert_eq!(pick("DP2"), AfterPreauth::Push(device("DP2", &["push"])));
        assert_eq!(pick("DP1"), AfterPreauth::Done(Outcome::DeviceCannotPush));
        assert_eq!(pick("DP9"), AfterPreauth::Done(Outcome::DeviceNotFound));
        assert_eq!(DeviceChoice::parse("auto"), DeviceChoice::Auto);
    }

    #[test]
    fn waiting_polls_about_once_a_second_until_the_deadline() {
        let w = status("waiting", "pushed");
        let ms = Duration::from_millis;
        assert_eq!(
            after_status(&w, ms(100), ms(30_000)),
            AfterStatus::Wait(ms(900))
        );
        // A long-polling call already waited: ask again at once.
        assert_eq!(
            after_status(&w, ms(5_000), ms(30_000)),
            AfterStatus::Wait(Duration::ZERO)
        );
        // Never sleep past the deadline.
        assert_eq!(
            after_status(&w, ms(100), ms(300)),
            AfterStatus::Wait(ms(300))
        );
        assert_eq!(
            after_status(&w, ms(100), Duration::ZERO),
            AfterStatus::TimedOut
        );
    }

    #[test]
    fn answers_end_the_wait_even_at_the_deadline() {
        let z = Duration::ZERO;
        assert_eq!(
            after_status(&status("allow", "allow"), z, z),
            AfterStatus::Done(Outcome::Approved)
        );
        assert_eq!(
            after_status(&status("deny", "deny"), z, z),
            AfterStatus::Done(Outcome::Denied)
        );
        assert_eq!(
            after_status(&status("deny", "fraud"), z, z),
            AfterStatus::Done(Outcome::Fraud)
        );
        assert_eq!(
            after_status(&status("maybe", "x"), z, z),
            AfterStatus::Unexpected("maybe".into())
        );
    }

    #[test]
    fn only_approval_exits_zero_and_every_outcome_has_its_own_message() {
        let all = [
            Outcome::Approved,
            Outcome::Denied,
            Outcome::Fraud,
            Outcome::TimedOut,
            Outcome::NotEnrolled,
            Outcome::Bypass,
            Outcome::Refused,
            Outcome::NoPushDevice,
            Outcome::DeviceNotFound,
            Outcome::DeviceCannotPush,
        ];
        let mut messages = std::collections::HashSet::new();
        for o in all {
            assert_eq!(o.exit_code() == 0, o == Outcome::Approved, "{o:?}");
            assert!(messages.insert(o.message("alice", Some("DP1"), None)));
            let (result, _) = o.result_and_reason();
            assert_eq!(result == "success", o == Outcome::Approved);
        }
    }

    #[test]
    fn pushinfo_is_url_encoded_pairs() {
        let info = pushinfo("helpdesk@host-1", "help desk verification & more");
        assert_eq!(
            info,
            "requested_by=helpdesk%40host-1&reason=help+desk+verification+%26+more"
        );
        let back: Vec<(String, String)> = url::form_urlencoded::parse(info.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(back[1].1, "help desk verification & more");
    }

    #[test]
    fn duo_answers_parse_and_garbage_is_an_error() {
        let pre = br#"{"stat":"OK","response":{"result":"auth","status_msg":"Account is active",
            "devices":[{"device":"DP1","type":"phone","number":"XXX-XXX-0001","name":"iPhone",
            "capabilities":["auto","push"]}]}}"#;
        let p = parse_preauth(pre).unwrap();
        assert_eq!(p.devices[0].id, "DP1");
        assert!(p.devices[0].can_push());
        assert_eq!(p.devices[0].label(), "iPhone");
        let st = br#"{"stat":"OK","response":{"result":"deny","status":"fraud","status_msg":"x"}}"#;
        assert_eq!(
            parse_auth_status(st).unwrap().status.as_deref(),
            Some("fraud")
        );
        assert_eq!(
            parse_txid(br#"{"stat":"OK","response":{"txid":"t-1"}}"#).unwrap(),
            "t-1"
        );
        assert!(parse_preauth(b"{\"stat\":\"OK\",\"response\":{}}").is_err());
        assert!(parse_txid(b"<html>").is_err());
    }
}
