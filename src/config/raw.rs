//! The config file as serde reads it: every field optional, so that validation can report all
//! problems at once instead of stopping at the first missing field.

use serde::Deserialize;

pub const TOP_KEYS: &[&str] = &["collector", "integration", "sink"];
pub const COLLECTOR_KEYS: &[&str] = &["state_dir"];
pub const INTEGRATION_KEYS: &[&str] = &[
    "name",
    "api_hostname",
    "ikey",
    "skey",
    "skey_file",
    "skey_env",
    "skey_credential",
    "logs",
    "schedule",
    "initial_lookback",
    "delay",
    "signature",
    "sinks",
    "connect_to",
    "ca_file",
    "page_size",
    "request_timeout",
    "accounts_api",
    "accounts",
    "account_refresh",
    "max_in_flight",
];
pub const SINK_KEYS: &[&str] = &[
    "name",
    "type",
    "path",
    "format",
    "exclude_fields",
    // syslog
    "transport",
    "address",
    "protocol",
    "facility",
    "hostname",
    "app_name",
    "max_message_size",
    // TLS (syslog, http, nats)
    "ca_file",
    "cert_file",
    "key_file",
    "server_name",
    // http
    "url",
    "flavor",
    "headers",
    "token_file",
    "token_env",
    "token_credential",
    "username",
    "password_file",
    "password_env",
    "gzip",
    "index",
    "source",
    // nats
    "stream",
    "subject",
    "create_stream",
    "creds_file",
    "tls_required",
    "ack_timeout",
    // syslog, http, nats
    "timeout",
    "batch_max_events",
    "batch_max_bytes",
];

#[derive(Debug, Default, Deserialize)]
pub struct RawCollector {
    pub state_dir: Option<String>,
}

#[derive(Default, Deserialize)]
pub struct RawIntegration {
    pub name: Option<String>,
    pub api_hostname: Option<String>,
    pub ikey: Option<String>,
    pub skey: Option<String>,
    pub skey_file: Option<String>,
    pub skey_env: Option<String>,
    pub skey_credential: Option<String>,
    pub logs: Option<Vec<String>>,
    pub schedule: Option<String>,
    pub initial_lookback: Option<String>,
    pub delay: Option<String>,
    pub signature: Option<String>,
    pub sinks: Option<Vec<String>>,
    pub connect_to: Option<String>,
    pub ca_file: Option<String>,
    pub page_size: Option<u32>,
    pub request_timeout: Option<String>,
    pub accounts_api: Option<bool>,
    pub accounts: Option<Vec<String>>,
    pub account_refresh: Option<String>,
    pub max_in_flight: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSink {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub path: Option<String>,
    pub format: Option<String>,
    pub exclude_fields: Option<Vec<String>>,
    pub transport: Option<String>,
    pub address: Option<String>,
    pub protocol: Option<String>,
    pub facility: Option<String>,
    pub hostname: Option<String>,
    pub app_name: Option<String>,
    pub max_message_size: Option<usize>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name: Option<String>,
    pub url: Option<String>,
    pub flavor: Option<String>,
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    pub token_file: Option<String>,
    pub token_env: Option<String>,
    pub token_credential: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    pub gzip: Option<bool>,
    pub index: Option<String>,
    pub source: Option<String>,
    pub stream: Option<String>,
    pub subject: Option<String>,
    pub create_stream: Option<bool>,
    pub creds_file: Option<String>,
    pub tls_required: Option<bool>,
    pub ack_timeout: Option<String>,
    pub timeout: Option<String>,
    pub batch_max_events: Option<usize>,
    pub batch_max_bytes: Option<usize>,
}
