//! Configuration: the TOML file, validated into [`ConfigFile`] with every problem reported at
//! once — all of it but the sinks' own settings, which the sinks validate (the `sink` module, put
//! together with this in `settings`). `config` imports no module that imports it.
//!
//! Layers: `raw` (what serde reads, everything optional) → `validate` and `integration`
//! (checks that name the integration and the field, and resolve secrets) → the types below.

mod credentials;
mod hosts;
mod integration;
mod raw;
mod report;
mod secrets;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::inventory_kind::InventoryKind;
use crate::log_kind::LogKind;
use crate::proxy_setting::ProxySetting;
use crate::schedule::Schedule;
use crate::secret::Secret;
use crate::sig_version::SigVersion;

pub use raw::{COLLECTOR_KEYS, INTEGRATION_KEYS};
pub use report::{Env, Report, UNIT_CREDENTIALS_DIR, UNIT_CREDENTIAL_ID};
pub use secrets::optional_secret;
pub use validate::{duplicate_names, parse_config_file, parse_duration_field, validate_name};

/// Where the config is read from when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/duo-collector/config.toml";
/// Where state lives when neither `state_dir` nor `$STATE_DIRECTORY` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/duo-collector";
/// Duo keeps 180 days of logs; a `mintime` older than this is refused.
pub const MAX_LOOKBACK: Duration = Duration::from_secs(180 * 86_400);
/// Requests per minute per (account, endpoint) unless configured: the figure a Duo maintainer
/// gave for the authentication, telephony and administrator log endpoints (duo_client_python
/// issue #101), in line with Duo's "no more than once per minute" polling advice. Accounts
/// that allow more can raise `requests_per_minute`; a 429 slows pacing down again.
pub const DEFAULT_REQUESTS_PER_MINUTE: f64 = 2.0;

/// The config file, validated but for the sinks' own settings.
pub struct ConfigFile {
    /// The file's name in messages.
    pub source_name: String,
    pub collector: CollectorSettings,
    pub integrations: Vec<Integration>,
    /// Every `[[sink]]` as written, in file order.
    pub sinks: Vec<SinkSection>,
    /// `[state]` as written, for `settings` to validate (it shares the NATS sink's login keys).
    pub state: Option<toml::Table>,
    /// The problems and warnings found so far; the sinks' validation adds theirs.
    pub report: Report,
    /// False for a config read with [`Env::without_secrets`]: its secrets are empty and it
    /// must not be used to call Duo or a sink.
    pub secrets_resolved: bool,
}

/// One `[[sink]]` table as written, for its sink type to validate.
#[derive(Debug, Clone)]
pub struct SinkSection {
    /// `sink "NAME"` (or `sink #N`), naming it in messages.
    pub scope: String,
    pub table: toml::Table,
}

impl SinkSection {
    pub fn name(&self) -> Option<&str> {
        self.table.get("name").and_then(toml::Value::as_str)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CollectorSettings {
    pub state_dir: PathBuf,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; off when `None`.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Consecutive failed runs of one stream after which `/readyz` reports unready.
    pub unready_after_failures: u32,
    /// The log line format (the `--log-format` flag wins).
    pub log_format: Option<LogFormat>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// journald-friendly text (no timestamps under systemd).
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "{other:?} is not a log format; use \"text\" or \"json\""
            )),
        }
    }
}

/// One Duo Admin API integration (one set of keys on one account).
#[derive(Debug, Clone, PartialEq)]
pub struct Integration {
    pub name: String,
    pub api_hostname: String,
    pub ikey: String,
    pub skey: Secret,
    pub logs: Vec<LogKind>,
    pub schedule: Schedule,
    pub initial_lookback: Duration,
    pub delay: Duration,
    pub signature: SigVersion,
    pub sinks: Vec<String>,
    pub connect_to: Option<url::Url>,
    pub ca_file: Option<PathBuf>,
    /// The HTTP(S) proxy for Duo requests: the environment's (default), this one, or none.
    pub proxy: ProxySetting,
    /// Records asked for per page (`limit`), capped per endpoint.
    pub page_size: u32,
    /// Whole-request timeout for one API call.
    pub request_timeout: Duration,
    /// Whether `logs` was given; if not, kinds the keys may not read are skipped, not failed.
    pub logs_explicit: bool,
    /// MSP: the keys are Accounts API keys; collect every child account's logs.
    pub accounts_api: bool,
    /// MSP: only these child account ids (empty = all).
    pub accounts: Vec<String>,
    /// MSP: how often the child account list is fetched again.
    pub account_refresh: Duration,
    /// Pages in flight at once for this integration (across its streams).
    pub max_in_flight: usize,
    /// The most requests per minute sent to one endpoint of one account (the unit Duo
    /// rate-limits); pacing adapts below it on 429s.
    pub requests_per_minute: f64,
    /// Optional Auth API keys (for push verification); `test-connectivity` checks them.
    pub auth_api: Option<AuthApiKeys>,
    /// The inventory kinds snapshotted (empty: none).
    pub inventory: Vec<InventoryKind>,
    /// When `run` takes the inventory snapshots.
    pub inventory_schedule: Schedule,
    /// A user whose last login is older than this counts as inactive in the posture report.
    pub inactive_after: Duration,
}

/// An Auth API application's keys.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthApiKeys {
    pub ikey: String,
    pub skey: Secret,
}

/// Every problem found in a config file, in file order.
#[derive(Debug, thiserror::Error)]
#[error("{} problem(s) in {}:\n{}", .problems.len(), .source_name, .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub source_name: String,
    pub problems: Vec<String>,
}

/// Reads the config file's text, or says why it cannot be read and what to do.
pub fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        source_name: path.display().to_string(),
        problems: vec![format!(
            "cannot read the config file: {e}{}",
            unreadable_config_hint(path, e.kind())
        )],
    })
}

impl ConfigFile {
    /// Warnings about the file itself: secrets in a file others can read.
    pub fn file_warnings(&self, path: &Path) -> Vec<String> {
        secrets::config_file_permission_warning(path, self.report.literal_secret)
            .into_iter()
            .chain(proxy_password_permission_warning(path, &self.integrations))
            .collect()
    }
}

impl CollectorSettings {
    /// Why the service could not keep its state in `state_dir`, if it could not: the directory
    /// (or the nearest existing parent, which the service would create it in) must be
    /// writable by this user.
    pub fn state_dir_problem(&self) -> Option<String> {
        let dir = &self.state_dir;
        let existing = dir.ancestors().find(|p| p.exists())?;
        if !existing.is_dir() {
            return Some(format!("{} is not a directory", existing.display()));
        }
        match tempfile::tempfile_in(existing) {
            Ok(_) => None,
            Err(e) if existing == dir.as_path() => Some(format!(
                "{} is not writable by this user ({e}); the service user needs to write its state there",
                dir.display()
            )),
            Err(e) => Some(format!(
                "{} does not exist and cannot be created: {} is not writable by this user ({e})",
                dir.display(),
                existing.display()
            )),
        }
    }

    pub fn state_db_path(&self) -> PathBuf {
        self.state_dir.join("state.db")
    }
}

/// A proxy URL with credentials in the config is a secret in the file, like a literal `skey`.
fn proxy_password_permission_warning(path: &Path, integrations: &[Integration]) -> Option<String> {
    let with_credentials = integrations
        .iter()
        .find(|i| matches!(&i.proxy, ProxySetting::Explicit(url) if url.has_credentials()))?;
    secrets::others_can_read(path).map(|why| {
        format!(
            "{}: {why} and holds proxy credentials (integration {:?}, field `proxy`); run chmod 600 on it, or put HTTPS_PROXY in a root-only EnvironmentFile= instead",
            path.display(),
            with_credentials.name
        )
    })
}

/// What to do about a config file that cannot be read, by the reason.
fn unreadable_config_hint(path: &Path, kind: std::io::ErrorKind) -> String {
    match kind {
        std::io::ErrorKind::NotFound if path == Path::new(DEFAULT_CONFIG_PATH) => format!(
            " ({DEFAULT_CONFIG_PATH} is the default: install the package, copy config.toml.example there, or pass --config PATH)"
        ),
        std::io::ErrorKind::NotFound => {
            " (check the --config path, or copy config.toml.example there)".to_string()
        }
        std::io::ErrorKind::PermissionDenied => format!(
            " (the packaged config is readable by root and the duo-collector group only: run this as root, e.g. sudo duo-collector ..., or check the modes of {} and its directory)",
            path.display()
        ),
        _ => String::new(),
    }
}
