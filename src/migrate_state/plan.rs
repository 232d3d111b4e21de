//! What `migrate-state` copies, decided without I/O from the two stores' dumps: the keys the
//! target already holds (refused unless `--force`), the target's own streams (left as they
//! are), the counts for the summary, and after the copy whether the target reads back as the
//! source. Every refusal names what is in the way and the fix.

use std::collections::BTreeSet;
use std::fmt;

use crate::state::{LeaseHolder, StateDump};

/// Where the state goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    /// From `state.db` into the NATS buckets of `[state]`.
    Nats,
    /// From the NATS buckets of `[state]` into `state.db`.
    Sqlite,
}

/// The keys the source has that the target holds too, by concern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlap {
    pub streams: Vec<String>,
    pub rates: Vec<String>,
    pub clocks: Vec<String>,
    pub sinks: Vec<String>,
    pub files: Vec<String>,
}

impl Overlap {
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    fn count(&self) -> usize {
        self.streams.len()
            + self.rates.len()
            + self.clocks.len()
            + self.sinks.len()
            + self.files.len()
    }

    /// "2 streams (corp/authentication, corp/administrator), 1 sink status (local)".
    fn describe(&self) -> String {
        let parts = [
            ("stream", &self.streams),
            ("learned rate", &self.rates),
            ("Duo clock reading", &self.clocks),
            ("sink status", &self.sinks),
            ("file mark", &self.files),
        ];
        parts
            .iter()
            .filter(|(_, names)| !names.is_empty())
            .map(|(what, names)| format!("{} ({})", plural(names.len(), what), shortened(names)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How much a dump holds, per concern.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub streams: usize,
    pub checkpoints: usize,
    pub runs: usize,
    pub rates: usize,
    pub clocks: usize,
    pub sinks: usize,
    pub files: usize,
}

impl Counts {
    pub fn of(dump: &StateDump) -> Counts {
        Counts {
            streams: dump.streams.len(),
            checkpoints: dump
                .streams
                .iter()
                .filter(|s| s.checkpoint.is_some())
                .count(),
            runs: dump.streams.iter().map(|s| s.runs.len()).sum(),
            rates: dump.rates.len(),
            clocks: dump.clocks.len(),
            sinks: dump.sinks.len(),
            files: dump.files.len(),
        }
    }
}

/// The copy to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub direction: Direction,
    pub copied: Counts,
    /// What the target held under the source's keys, replaced (only with `--force`).
    pub replaced: Overlap,
    /// Streams only the target has: left as they are.
    pub kept: Vec<String>,
}

/// Why nothing was copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The source holds no state at all (a wrong `state_dir`, `--state-db` or `bucket_prefix`?).
    NothingToCopy { source: String },
    /// No state database where the source should be.
    NoStateDb { path: String },
    /// A collector holds the state-dir lock.
    Locked { dir: String },
    /// Collectors hold leases on streams in the buckets.
    Leased {
        buckets: String,
        holders: Vec<LeaseHolder>,
    },
    /// The target holds inventory snapshots the source has too, and `--force` was not given.
    SnapshotsHeld {
        target: String,
        snapshots: Vec<String>,
    },
    /// The target holds state under the source's keys, and `--force` was not given.
    TargetHolds {
        target: String,
        overlap: Box<Overlap>,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NothingToCopy { source } => write!(
                f,
                "{source} holds no state to copy: check `state_dir` (or --state-db) and `[state] bucket_prefix` in the config"
            ),
            Refusal::SnapshotsHeld { target, snapshots } => write!(
                f,
                "{target} already holds inventory snapshots of {}: --force replaces them with the source's",
                snapshots.join(", ")
            ),
            Refusal::NoStateDb { path } => write!(
                f,
                "no state database at {path}: check `state_dir` in the config, or name the file with --state-db"
            ),
            Refusal::Locked { dir } => write!(
                f,
                "a collector is running with state_dir {dir} (the service, or a collect-now holds {dir}/lock): stop it first (systemctl stop duo-collector); copying under it would copy checkpoints that are still moving"
            ),
            Refusal::Leased { buckets, holders } => {
                let names: Vec<String> = holders
                    .iter()
                    .map(|h| format!("{} by {}", h.stream, h.instance))
                    .collect();
                write!(
                    f,
                    "collectors are running on {buckets}: {} held ({}); stop every collector that uses these buckets and run again (a stopped collector's lease expires lease_ttl after its last renewal); copying under them would copy checkpoints that are still moving",
                    plural(holders.len(), "stream"),
                    shortened(&names)
                )
            }
            Refusal::TargetHolds { target, overlap } => write!(
                f,
                "{target} already holds state under the source's keys: {}; nothing was copied. Run again with --force to replace it with the source's (the target's other streams are left as they are), or move it away first",
                overlap.describe()
            ),
        }
    }
}

/// The copy of `source` into `target`, or why not.
pub fn plan(
    direction: Direction,
    source: &StateDump,
    target: &StateDump,
    names: &Names,
    force: bool,
) -> Result<Plan, Refusal> {
    if source.is_empty() {
        return Err(Refusal::NothingToCopy {
            source: names.source.clone(),
        });
    }
    let overlap = overlap(source, target);
    if !overlap.is_empty() && !force {
        return Err(Refusal::TargetHolds {
            target: names.target.clone(),
            overlap: Box::new(overlap),
        });
    }
    let copied: BTreeSet<_> = source.streams.iter().map(|s| &s.stream).collect();
    let kept = target
        .streams
        .iter()
        .filter(|s| !copied.contains(&s.stream))
        .map(|s| s.stream.to_string())
        .collect();
    Ok(Plan {
        direction,
        copied: Counts::of(source),
        replaced: overlap,
        kept,
    })
}

/// How the two stores are called in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub source: String,
    pub target: String,
}

fn overlap(source: &StateDump, target: &StateDump) -> Overlap {
    fn common<K: Ord + fmt::Display, T, U>(
        ours: &[T],
        theirs: &[U],
        key_ours: impl Fn(&T) -> K,
        key_theirs: impl Fn(&U) -> K,
    ) -> Vec<String> {
        let held: BTreeSet<K> = theirs.iter().map(key_theirs).collect();
        ours.iter()
            .map(key_ours)
            .filter(|k| held.contains(k))
            .map(|k| k.to_string())
            .collect()
    }
    let rate = |r: &crate::state::RateDump| {
        let account = if r.key.account.is_empty() {
            String::new()
        } else {
            format!("/{}", r.key.account)
        };
        format!("{}{account} {}", r.integration, r.key.endpoint)
    };
    Overlap {
        streams: common(
            &source.streams,
            &target.streams,
            |s| s.stream.to_string(),
            |s| s.stream.to_string(),
        ),
        rates: common(&source.rates, &target.rates, rate, rate),
        clocks: common(
            &source.clocks,
            &target.clocks,
            |c| c.integration.clone(),
            |c| c.integration.clone(),
        ),
        sinks: common(
            &source.sinks,
            &target.sinks,
            |s| s.sink.clone(),
            |s| s.sink.clone(),
        ),
        files: common(
            &source.files,
            &target.files,
            |m| m.mark.sink.clone(),
            |m| m.mark.sink.clone(),
        ),
    }
}

/// What of `source` the target does not hold as the source has it, after the copy: empty
/// when the copy is whole.
pub fn differences(source: &StateDump, after: &StateDump) -> Vec<String> {
    let mut out = Vec::new();
    for stream in &source.streams {
        match after.streams.iter().find(|s| s.stream == stream.stream) {
            None => out.push(format!("the stream {} is missing", stream.stream)),
            Some(copy) if copy.checkpoint != stream.checkpoint => {
                out.push(format!("the checkpoint of {} differs", stream.stream))
            }
            Some(copy) if copy.runs != stream.runs => {
                out.push(format!("the runs of {} differ", stream.stream))
            }
            Some(_) => {}
        }
    }
    let mut missing = |n: usize, what: &str| {
        if n > 0 {
            out.push(format!("{n} of the source's {what} are missing"));
        }
    };
    missing(absent(&source.rates, &after.rates), "learned rates");
    missing(absent(&source.clocks, &after.clocks), "Duo clock readings");
    missing(absent(&source.sinks, &after.sinks), "sink statuses");
    missing(absent(&source.files, &after.files), "file marks");
    out
}

/// How many of `held` are not in `copy`.
fn absent<T: PartialEq>(held: &[T], copy: &[T]) -> usize {
    held.iter().filter(|x| !copy.contains(x)).count()
}

/// The summary the command prints.
pub fn render(plan: &Plan, names: &Names, dry_run: bool) -> String {
    let c = &plan.copied;
    let verb = if dry_run { "would copy" } else { "copied" };
    let mut out = format!(
        "migrate-state {verb} {} into {}:\n  {}: {}, {}\n  {}\n  {}\n  {}\n  {}\n",
        names.source,
        names.target,
        plural(c.streams, "stream"),
        plural(c.checkpoints, "checkpoint"),
        plural(c.runs, "run"),
        plural(c.rates, "learned rate"),
        plural(c.clocks, "Duo clock reading"),
        plural(c.sinks, "sink status"),
        plural(c.files, "file mark"),
    );
    if !plan.replaced.is_empty() {
        let verb = if dry_run { "would replace" } else { "replaced" };
        out.push_str(&format!(
            "  {verb} what the target held (--force): {}\n",
            plan.replaced.describe()
        ));
    }
    if !plan.kept.is_empty() {
        out.push_str(&format!(
            "  left as they are in the target: {} ({})\n",
            plural(plan.kept.len(), "stream"),
            shortened(&plan.kept)
        ));
    }
    if !dry_run {
        out.push_str(match plan.direction {
            Direction::Nats => "Next: keep [state] backend = \"nats\" in the config and start the collectors; each resumes from the copied checkpoints. state.db is left as it was: do not collect on it again without migrate-state --to sqlite.\n",
            Direction::Sqlite => "Next: set [state] backend = \"sqlite\" (or remove [state]) in the config and start the collector; it resumes from the copied checkpoints. The buckets are left as they were: do not collect on them again without migrate-state --to nats --force.\n",
        });
    }
    out
}

fn plural(n: usize, what: &str) -> String {
    match (n, what.ends_with('s')) {
        (1, _) => format!("1 {what}"),
        (_, true) => format!("{n} {what}es"),
        _ => format!("{n} {what}s"),
    }
}

/// The first names and how many more: a refusal names what is in the way without a page of it.
fn shortened(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut out = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        out.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    out
}

#[cfg(test)]
mod tests;
