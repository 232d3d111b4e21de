//! The config file as serde reads it: every field optional, so that validation can report all
//! problems at once instead of stopping at the first missing field. `[[sink]]` tables are
//! not here: each sink type reads its own keys (`sink::config`).

use serde::Deserialize;

pub const TOP_KEYS: &[&str] = &["collector", "state", "integration", "sink"];
pub const COLLECTOR_KEYS: &[&str] = &[
    "state_dir",
    "metrics_listen",
    "unready_after_failures",
    "log_format",
];
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
    "proxy",
    "page_size",
    "request_timeout",
    "accounts_api",
    "accounts",
    "account_refresh",
    "max_in_flight",
    "requests_per_minute",
    "auth_ikey",
    "auth_skey",
    "auth_skey_file",
    "auth_skey_env",
    "auth_skey_credential",
    "inventory",
    "inventory_schedule",
    "inactive_after",
];
#[derive(Debug, Default, Deserialize)]
pub struct RawCollector {
    pub state_dir: Option<String>,
    pub metrics_listen: Option<String>,
    pub unready_after_failures: Option<u32>,
    pub log_format: Option<String>,
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
    pub proxy: Option<String>,
    pub page_size: Option<u32>,
    pub request_timeout: Option<String>,
    pub accounts_api: Option<bool>,
    pub accounts: Option<Vec<String>>,
    pub account_refresh: Option<String>,
    pub max_in_flight: Option<usize>,
    pub requests_per_minute: Option<f64>,
    pub auth_ikey: Option<String>,
    pub auth_skey: Option<String>,
    pub auth_skey_file: Option<String>,
    pub auth_skey_env: Option<String>,
    pub auth_skey_credential: Option<String>,
    pub inventory: Option<Vec<String>>,
    pub inventory_schedule: Option<String>,
    pub inactive_after: Option<String>,
}
