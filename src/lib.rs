//! duo-collector: collects Cisco Duo Admin API logs and delivers them, acknowledged, to sinks.
//!
//! See ARCHITECTURE.md for the bird's-eye view and the invariants.

#![forbid(unsafe_code)]

/// Where a stream resumes: typed checkpoints and cursors (pure).
pub mod checkpoint;
/// Time through a trait, so tests decide what now is.
pub mod clock;
/// Per-integration collection: pager, ack-before-checkpoint.
pub mod collector;
/// TOML configuration and its validation.
pub mod config;
/// `test-connectivity`: the checklist.
pub mod connectivity;
/// The long-running service: scheduling, signals, shutdown.
pub mod daemon;
/// `duo-collector demo`: simulator plus collector in one process.
pub mod demo;
/// Duo API signing and HTTP client.
pub mod duo;
/// Events, batches and stream ids.
pub mod event;
/// The syslog facility (a leaf type).
pub mod facility;
/// Durations and rates for people.
pub mod human;
/// Identity context: inventory kinds, pages, pager, tracked state, changes, posture (pure).
pub mod inventory;
/// `InventoryKind` (a leaf).
pub mod inventory_kind;
/// Leases on streams, pure: fair share, renewal and stop timing.
pub mod lease;
/// Per-instance lease metrics (streams held, renewals, lost leases, CAS conflicts).
pub mod lease_metrics;
/// Duo log kinds (a leaf).
pub mod log_kind;
/// Duo log page parsing.
pub mod logs;
/// `migrate-state`: the collector's state copied between SQLite and NATS.
pub mod migrate_state;
/// A NATS login as configured, shared by the NATS sink and the NATS state store.
pub mod nats_connection;
/// Output formats (pure).
pub mod normalize;
/// Metrics, readiness, heartbeat.
pub mod observe;
/// Request pacing per (account, endpoint): adaptive rate, Duo's 429 schedule.
pub mod pacing;
/// The pagers as pure state machines.
pub mod pager;
/// The posture counts as Prometheus gauges.
pub mod posture_gauges;
/// `posture`: the posture report from the latest complete inventory snapshots.
pub mod posture_report;
/// `collect-now` progress display.
pub mod progress;
/// The `proxy` setting (a leaf).
pub mod proxy_setting;
/// Cron schedules.
pub mod schedule;
/// Secrets that never print.
pub mod secret;
/// systemd notifications and the metrics endpoint.
pub mod service;
/// The whole configuration: the config file and the sinks' own settings.
pub mod settings;
/// Duo's signature schemes (a leaf).
pub mod sig_version;
/// The embedded Duo API simulator.
pub mod simulator;
/// Sinks and acknowledged delivery.
pub mod sink;
/// The state store: SQLite checkpoints and run history, or NATS JetStream key-value buckets.
pub mod state;
/// `status` rendering.
pub mod status;
/// `status` on the NATS state store: lease holders and instances.
pub mod status_cluster;
/// TLS client configuration from certificate files.
pub mod tls;
/// `verify-user`: a Duo Push through the Auth API, its outcome to the sinks.
pub mod verify;
