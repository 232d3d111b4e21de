//! The integration tests: one binary, a module per topic (ripgrep's layout), so the
//! shared helpers compile once and `cargo test` links one executable instead of one per
//! file. `cargo test --test it <topic>::` runs one topic.

mod common;
mod fixtures;
mod nats_cluster;
mod proxy_support;
mod sink_support;

mod authentication;
mod bad_input;
mod chaos;
mod chaos_outage;
mod chaos_state;
mod cli_config_and_secrets;
mod cli_operator;
mod cli_stdout;
mod cluster;
mod connectivity;
mod crash_and_shutdown;
mod crash_per_sink;
mod duo_client;
mod duo_strict;
mod faults_and_retries;
mod inventory;
mod inventory_golden;
mod inventory_nats;
mod inventory_posture;
mod log_kinds_and_msp;
mod migrate_state;
mod normalize_golden;
mod normalize_mapping;
mod normalize_perf;
mod normalize_props;
mod parser_props;
mod proxy;
mod service;
mod sink_fanout;
mod sink_http;
mod sink_nats;
mod sink_syslog;
mod state_collect;
mod state_contract;
mod state_nats;
mod state_share;
mod systemd_container;
mod systemd_unit;
mod verify_user;
