//! `duo-collector migrate-state`: copies the collector's state from `state.db` into the NATS
//! buckets of `[state]` (a single host growing into a cluster without collecting again), or
//! back. The decisions are in `plan.rs` (pure); here the stores are opened, checked (no
//! collector holds the state-dir lock or a lease), read, written and read back.

mod plan;

use std::path::{Path, PathBuf};

pub use plan::{differences, plan, render, Counts, Direction, Names, Overlap, Plan, Refusal};

use crate::config::DEFAULT_CONFIG_PATH;
use crate::settings::Config;
use crate::state::{
    try_lock_state_dir, NatsStore, NatsStoreSettings, SnapshotInfo, State, StateDump, StateError,
    StateStore, StoreSettings,
};

/// `migrate-state`'s command line.
#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "Copy the collector's state between state.db and the NATS buckets of [state] (and back)",
    long_about = "Copies the collector's state between state_dir/state.db (SQLite) and the NATS \
JetStream key-value buckets that [state] names (backend = \"nats\", url, bucket_prefix, ...): \
every stream's checkpoint (windows, cursors, v1 fingerprints), its run history, the learned \
request rates and rate limits, Duo's clock offsets, the sinks' status and the file sinks' \
committed lengths. A single host grows into a cluster without collecting again (--to nats), \
and a cluster goes back to one host (--to sqlite).

It refuses (exit 1) while a collector runs on the state: the state-dir lock held (the service, \
a collect-now) or any stream's lease held in the buckets; and when the target already holds \
state under the source's keys (a stream, a sink, ...), naming it, unless --force, which \
replaces those keys with the source's (the target's other streams are left as they are). \
The source's state is only read. After the copy the target is read back and compared with the \
source.

Complete inventory snapshots are copied too (after the dump, a chunk at a time): the next \
snapshot of each kind reports the changes since. A target holding a snapshot the source has is \
refused unless --force.",
    after_long_help = "Growing from one host:
  1. add [state] backend = \"nats\", url = \"nats://...\" to the config; systemctl stop duo-collector
  2. duo-collector migrate-state --to nats --dry-run   -- what would be copied
  3. duo-collector migrate-state --to nats
  4. systemctl start duo-collector (and the other hosts, with the same [state])

Exit codes: 0 copied (or --dry-run planned), 1 refused or failed, 2 invalid config or usage."
)]
pub struct MigrateStateArgs {
    /// Path of the TOML config file; its [state] section must have backend = "nats".
    #[arg(long, short = 'c', env = "DUO_COLLECTOR_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Where the state goes: "nats" (from state.db into the buckets) or "sqlite" (back).
    #[arg(long, value_enum)]
    pub to: Direction,
    /// The SQLite file, if not state_dir/state.db (the source with --to nats, the target
    /// with --to sqlite); its directory's lock is checked as state_dir's would be.
    #[arg(long, visible_alias = "from-state-db")]
    pub state_db: Option<PathBuf>,
    /// Replace what the target holds under the source's keys.
    #[arg(long)]
    pub force: bool,
    /// Check and print what would be copied; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Refused(Refusal),
    #[error("[state]: field `backend`: migrate-state copies between state.db and the NATS buckets [state] names, and [state] has backend = \"sqlite\" (or is absent): set backend = \"nats\" with its url (and login keys) in the config, then run again")]
    NoNats,
    #[error("cannot use the state directory {dir}: {source}; run migrate-state as the service's user (e.g. sudo -u duo-collector) or give this user write access")]
    StateDir { dir: String, source: std::io::Error },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the copy in {target} does not read back as the source ({}): run again with --force, and report a bug if it persists", .differences.join("; "))]
    NotReadBack {
        target: String,
        differences: Vec<String>,
    },
}

impl MigrateError {
    /// Exit 2 (the config must change), not 1.
    pub fn is_usage(&self) -> bool {
        matches!(self, MigrateError::NoNats)
    }
}

/// Runs the command; returns the summary to print.
pub async fn run(config: &Config, args: &MigrateStateArgs) -> Result<String, MigrateError> {
    let StoreSettings::Nats(nats) = &config.state else {
        return Err(MigrateError::NoNats);
    };
    let db = args
        .state_db
        .clone()
        .unwrap_or_else(|| config.state_db_path());
    let dir = db.parent().unwrap_or(Path::new(".")).to_path_buf();
    let refused = |r| Err(MigrateError::Refused(r));
    if args.to == Direction::Nats && !db.exists() {
        return refused(Refusal::NoStateDb {
            path: db.display().to_string(),
        });
    }
    let dir_error = |source| MigrateError::StateDir {
        dir: dir.display().to_string(),
        source,
    };
    // Held until the copy is done: no collector starts on this state meanwhile.
    let Some(_lock) = try_lock_state_dir(&dir).map_err(dir_error)? else {
        return refused(Refusal::Locked {
            dir: dir.display().to_string(),
        });
    };
    let buckets = describe_buckets(nats);
    let store = NatsStore::open(nats).await?;
    let holders = store.lease_holders().await?;
    if !holders.is_empty() {
        return refused(Refusal::Leased { buckets, holders });
    }
    let nats_store = StateStore::Nats(store);
    let sqlite_name = format!("the state database {}", db.display());
    // A dry run creates no state database where there is none.
    let sqlite = if db.exists() || !args.dry_run {
        Some(StateStore::sqlite(State::open(&db)?))
    } else {
        None
    };
    let (source, target, names) = match args.to {
        Direction::Nats => (
            sqlite.as_ref(),
            Some(&nats_store),
            Names {
                source: sqlite_name,
                target: buckets,
            },
        ),
        Direction::Sqlite => (
            Some(&nats_store),
            sqlite.as_ref(),
            Names {
                source: buckets,
                target: sqlite_name,
            },
        ),
    };
    let source_dump = export(source).await?;
    let target_dump = export(target).await?;
    let plan = plan::plan(args.to, &source_dump, &target_dump, &names, args.force)
        .map_err(MigrateError::Refused)?;
    // Inventory snapshots go apart from the dump: a tenant's entities are copied a chunk at a
    // time, never held whole.
    let snapshots = match source {
        Some(source) => source.snapshots().await?,
        None => Vec::new(),
    };
    if let (Some(target), false) = (target, args.force) {
        let held: Vec<String> = target
            .snapshots()
            .await?
            .iter()
            .filter(|t| snapshots.iter().any(|s| same_snapshot(s, t)))
            .map(describe_snapshot)
            .collect();
        if !held.is_empty() {
            return refused(Refusal::SnapshotsHeld {
                target: names.target.clone(),
                snapshots: held,
            });
        }
    }
    let inventory_line = |verb: &str| {
        format!(
            "inventory snapshots {verb}: {} (complete ones; the next snapshot of each reports the changes since)\n",
            snapshots.len()
        )
    };
    let Some(target) = target.filter(|_| !args.dry_run) else {
        return Ok(render(&plan, &names, true) + &inventory_line("to copy"));
    };
    target.import(source_dump.clone(), args.force).await?;
    let after = target.export_all().await?;
    let differences = differences(&source_dump, &after);
    if !differences.is_empty() {
        return Err(MigrateError::NotReadBack {
            target: names.target,
            differences,
        });
    }
    if let Some(source) = source {
        target
            .copy_snapshots_from(source, crate::clock::now_ms())
            .await?;
    }
    tracing::info!(streams = plan.copied.streams, runs = plan.copied.runs, snapshots = snapshots.len(), to = ?args.to, "state copied");
    Ok(render(&plan, &names, false) + &inventory_line("copied"))
}

fn same_snapshot(a: &SnapshotInfo, b: &SnapshotInfo) -> bool {
    (&a.integration, &a.account_id, &a.kind) == (&b.integration, &b.account_id, &b.kind)
}

fn describe_snapshot(s: &SnapshotInfo) -> String {
    match &s.account_id {
        Some(account) => format!("{}/{account}/{}", s.integration, s.kind),
        None => format!("{}/{}", s.integration, s.kind),
    }
}

/// A store's dump; an absent store (no state database yet, on a dry run) holds nothing.
async fn export(store: Option<&StateStore>) -> Result<StateDump, StateError> {
    match store {
        Some(store) => store.export_all().await,
        None => Ok(StateDump::default()),
    }
}

/// The buckets as messages name them (`[state] url` holds no credentials: validated so).
fn describe_buckets(nats: &NatsStoreSettings) -> String {
    format!(
        "the NATS buckets {}-* at {}",
        nats.bucket_prefix, nats.connection.url
    )
}

/// The command for `main.rs`: prints the summary (stdout) or the refusal (stderr) and returns
/// the exit code.
pub async fn run_command(config: &Config, args: &MigrateStateArgs) -> u8 {
    match run(config, args).await {
        Ok(summary) => {
            // The state is copied whatever becomes of the summary (a reader that went away).
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), summary.as_bytes());
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            if e.is_usage() {
                2
            } else {
                1
            }
        }
    }
}
