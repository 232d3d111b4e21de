//! `duo-collector verify-user`: is the person on the phone really this Duo user? One Duo Push,
//! through the integration's Auth API keys (duo-api.md §2.10): `preauth` (is the user
//! enrolled, which devices can take a push), `auth` with `factor=push` and `async=1` and a
//! `pushinfo` saying who asks and why, then `auth_status` until the user answers or the
//! timeout. The outcome also goes to the integration's sinks as one event.
//!
//! `decide.rs` holds every decision (pure); `record.rs` the event (pure); this file and
//! `deliver.rs` the I/O.

mod args;
pub mod decide;
mod deliver;
pub mod record;

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::{AuthApiKeys, Integration};
use crate::duo::{Call, DuoClient, DuoError, RetryPolicy};
use crate::settings::Config;
pub use args::VerifyUserArgs;
pub use decide::{Device, DeviceChoice, Outcome, UserRef};
pub use deliver::DeliverError;

/// What `verify-user` was asked.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    pub integration: String,
    pub user: UserRef,
    pub device: DeviceChoice,
    /// How long to wait for the user's answer once the push is sent.
    pub timeout: Duration,
    /// Shown in Duo Mobile; default: `<local user>@<host>`.
    pub requested_by: Option<String>,
    pub reason: String,
}

/// How it ended.
#[derive(Debug)]
pub struct Verification {
    pub outcome: Outcome,
    pub message: String,
    pub user: String,
    pub device: Option<Device>,
    pub txid: Option<String>,
    pub requested_by: String,
    pub elapsed: Duration,
    /// The sinks that acknowledged the outcome event, or why it was not delivered.
    pub delivery: Result<Vec<String>, DeliverError>,
}

impl Verification {
    /// The text report: the outcome in capitals, then the facts behind it.
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "{}: {}\n",
            self.outcome.as_str().to_ascii_uppercase(),
            self.message
        );
        if let Some(txid) = &self.txid {
            out.push_str(&format!("  txid {txid}\n"));
        }
        out.push_str(&format!(
            "  requested by {}, {} elapsed\n",
            self.requested_by,
            crate::human::duration_secs(self.elapsed.as_secs() as i64)
        ));
        if let Ok(sinks) = &self.delivery {
            out.push_str(&format!(
                "  outcome event delivered to {}\n",
                sinks.join(", ")
            ));
        }
        out
    }

    /// The `--json` object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "outcome": self.outcome.as_str(),
            "verified": self.outcome == Outcome::Approved,
            "message": self.message,
            "user": self.user,
            "device": self.device.as_ref().map(|d| serde_json::json!({"id": d.id, "name": d.label()})),
            "txid": self.txid,
            "requested_by": self.requested_by,
            "elapsed_ms": u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX),
            "delivered_to": self.delivery.as_ref().ok(),
            "delivery_error": self.delivery.as_ref().err().map(|e| e.to_string()),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("integration {0:?} is not in the config")]
    UnknownIntegration(String),
    #[error("integration {0:?} has no Auth API keys. verify-user sends the push with the keys of an \"Auth API\" application (the Admin API keys cannot): in the Duo Admin Panel, Applications → Protect an Application → \"Auth API\", then add to this [[integration]]: auth_ikey = \"<its integration key>\" and its secret key in one of auth_skey_file = \"/etc/duo-collector/credentials/{0}.auth.skey\" (mode 0600), auth_skey_credential = \"{0}.auth.skey\" (systemd LoadCredential=) or auth_skey_env = \"<variable name>\"; `duo-collector test-connectivity` checks them")]
    NoAuthKeys(String),
    #[error("Duo {step} failed: {error}{}", .error.hint().map(|h| format!(" ({h})")).unwrap_or_default())]
    Duo { step: &'static str, error: DuoError },
    #[error("Duo {step} answered result {result:?}, which this version does not know; nothing was verified")]
    Unexpected { step: &'static str, result: String },
    #[error("interrupted; nothing was verified")]
    Cancelled,
}

impl VerifyError {
    /// A config problem (exit 2) rather than a failed verification (exit 1).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            VerifyError::UnknownIntegration(_) | VerifyError::NoAuthKeys(_)
        )
    }

    fn duo(step: &'static str) -> impl Fn(DuoError) -> VerifyError {
        move |error| match error {
            DuoError::Cancelled => VerifyError::Cancelled,
            error => VerifyError::Duo { step, error },
        }
    }
}

/// The local user (the one behind sudo, if any) and this host: who asks, as Duo Mobile shows it.
fn default_requested_by() -> String {
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown user".to_string());
    format!("{user}@{}", hostname())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// What the Duo exchange found, before the event is delivered.
struct Exchange {
    outcome: Outcome,
    device: Option<Device>,
    txid: Option<String>,
    duo_status_msg: Option<String>,
}

/// Sends the push and waits for the answer, then delivers the outcome event.
pub async fn run(
    config: &Config,
    request: &VerifyRequest,
    cancel: &CancellationToken,
) -> Result<Verification, VerifyError> {
    let started = Instant::now();
    let integration = config
        .integration(&request.integration)
        .ok_or_else(|| VerifyError::UnknownIntegration(request.integration.clone()))?;
    let keys = integration
        .auth_api
        .as_ref()
        .ok_or_else(|| VerifyError::NoAuthKeys(integration.name.clone()))?;
    let requested_by = request
        .requested_by
        .clone()
        .unwrap_or_else(default_requested_by);
    let client = DuoClient::for_integration(integration, RetryPolicy::default())
        .map_err(VerifyError::duo("client setup"))?
        .with_keys(&keys.ikey, &keys.skey);
    let exchange = exchange(&client, integration, request, &requested_by, cancel).await?;
    let user = request.user.as_str().to_string();
    let device_label = exchange
        .device
        .as_ref()
        .map(Device::label)
        .or(match &request.device {
            DeviceChoice::Id(id) => Some(id.clone()),
            DeviceChoice::Auto => None,
        });
    let message = exchange.outcome.message(
        &user,
        device_label.as_deref(),
        exchange.duo_status_msg.as_deref(),
    );
    let elapsed = started.elapsed();
    tracing::info!(integration = %integration.name, outcome = exchange.outcome.as_str(), txid = exchange.txid.as_deref().unwrap_or(""), elapsed_ms = elapsed.as_millis() as u64, "verify-user: done");
    let event = outcome_event(
        integration,
        keys,
        request,
        &exchange,
        &message,
        &requested_by,
        elapsed,
    );
    let delivery = deliver::deliver_outcome(config, integration, event, cancel).await;
    Ok(Verification {
        outcome: exchange.outcome,
        message,
        user,
        device: exchange.device,
        txid: exchange.txid,
        requested_by,
        elapsed,
        delivery,
    })
}

fn outcome_event(
    integration: &Integration,
    keys: &AuthApiKeys,
    request: &VerifyRequest,
    exchange: &Exchange,
    message: &str,
    requested_by: &str,
    elapsed: Duration,
) -> crate::event::Event {
    let facts = record::OutcomeFacts {
        user: &request.user,
        device: exchange.device.as_ref(),
        txid: exchange.txid.as_deref(),
        outcome: exchange.outcome,
        message,
        duo_status_msg: exchange.duo_status_msg.as_deref(),
        requested_by,
        reason: &request.reason,
        auth_ikey: &keys.ikey,
        hostname: &hostname(),
        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        at_ms: crate::clock::now_ms(),
    };
    let fallback = format!("{}:{}", integration.name, uuid::Uuid::new_v4());
    record::outcome_event(&facts, record::event_id(facts.txid, &fallback))
}

async fn exchange(
    client: &DuoClient,
    integration: &Integration,
    request: &VerifyRequest,
    requested_by: &str,
    cancel: &CancellationToken,
) -> Result<Exchange, VerifyError> {
    let host = integration.api_hostname.as_str();
    let user_param = request.user.param();
    let preauth = client
        .request(
            &Call::post(host, "/auth/v2/preauth", std::slice::from_ref(&user_param)),
            cancel,
            decide::parse_preauth,
        )
        .await
        .map_err(VerifyError::duo("preauth"))?;
    let device = match decide::after_preauth(&preauth, &request.device) {
        decide::AfterPreauth::Push(device) => device,
        decide::AfterPreauth::Done(outcome) => {
            return Ok(Exchange {
                outcome,
                device: None,
                txid: None,
                duo_status_msg: preauth.status_msg,
            })
        }
        decide::AfterPreauth::Unexpected(result) => {
            return Err(VerifyError::Unexpected {
                step: "preauth",
                result,
            })
        }
    };
    let params = vec![
        user_param,
        ("factor".to_string(), "push".to_string()),
        ("device".to_string(), device.id.clone()),
        ("async".to_string(), "1".to_string()),
        ("type".to_string(), "Verification".to_string()),
        (
            "pushinfo".to_string(),
            decide::pushinfo(requested_by, &request.reason),
        ),
    ];
    let txid = client
        .request(
            &Call::post(host, "/auth/v2/auth", &params),
            cancel,
            decide::parse_txid,
        )
        .await
        .map_err(VerifyError::duo("auth (push)"))?;
    tracing::info!(integration = %integration.name, txid = %txid, device = %device.id, "verify-user: push sent");
    let (outcome, duo_status_msg) =
        wait_for_answer(client, host, &txid, request.timeout, cancel).await?;
    Ok(Exchange {
        outcome,
        device: Some(device),
        txid: Some(txid),
        duo_status_msg,
    })
}

/// Polls `auth_status` until the user answers or `timeout` has passed; a call still running
/// (Duo may long-poll, or the client may be backing off a 429) at the deadline is abandoned.
async fn wait_for_answer(
    client: &DuoClient,
    host: &str,
    txid: &str,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<(Outcome, Option<String>), VerifyError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let params = [("txid".to_string(), txid.to_string())];
    let call = Call::get(host, "/auth/v2/auth_status", &params);
    let mut last_msg = None;
    loop {
        let asked = tokio::time::Instant::now();
        let status = match tokio::time::timeout_at(
            deadline,
            client.request(&call, cancel, decide::parse_auth_status),
        )
        .await
        {
            Err(_) => return Ok((Outcome::TimedOut, last_msg)),
            Ok(answer) => answer.map_err(VerifyError::duo("auth_status"))?,
        };
        last_msg = status.status_msg.clone();
        let now = tokio::time::Instant::now();
        match decide::after_status(
            &status,
            now - asked,
            deadline.saturating_duration_since(now),
        ) {
            decide::AfterStatus::Done(outcome) => return Ok((outcome, last_msg)),
            decide::AfterStatus::TimedOut => return Ok((Outcome::TimedOut, last_msg)),
            decide::AfterStatus::Unexpected(result) => {
                return Err(VerifyError::Unexpected {
                    step: "auth_status",
                    result,
                })
            }
            decide::AfterStatus::Wait(pause) => {
                tracing::debug!(
                    txid,
                    status = status.status.as_deref().unwrap_or(""),
                    "verify-user: waiting for the user"
                );
                tokio::select! {
                    _ = cancel.cancelled() => return Err(VerifyError::Cancelled),
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}
