//! Deterministic event generation and the paging engine over compact events.

use super::rng::{mix, unit_interval, uuid_v4, Rng};
use super::{KindCounts, SimConfig};

/// The log kinds the simulator serves: the collector's own [`LogKind`](crate::log_kind::LogKind)
/// (one declaration), with what the simulator needs to know of each.
pub use crate::log_kind::LogKind as Kind;

impl Kind {
    pub fn name(self) -> &'static str {
        self.as_str()
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        name.parse().ok()
    }

    fn index(self) -> usize {
        self as usize
    }

    /// v1 kinds have one-second resolution.
    pub fn is_v1(self) -> bool {
        self.paging() == crate::log_kind::Paging::V1
    }

    /// Timestamp unit in ms: 1000 for v1 kinds, 1 otherwise.
    pub fn unit_ms(self) -> i64 {
        if self.is_v1() {
            1000
        } else {
            1
        }
    }
}

/// One event, compact: 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ev {
    /// Event time in µs (whole seconds for v1 kinds).
    pub ts_us: i64,
    /// UUID-v4-shaped 128-bit id; ties on the timestamp are ordered by it.
    pub id: u128,
    /// Visible from `ms() + delay_ms`.
    pub delay_ms: u32,
}

impl Ev {
    pub fn ms(&self) -> i64 {
        self.ts_us.div_euclid(1000)
    }

    pub fn visible_at(&self) -> i64 {
        self.ms() + i64::from(self.delay_ms)
    }

    pub fn key(&self) -> (i64, u128) {
        (self.ms(), self.id)
    }
}

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Start {
    /// The first matching event in the sort direction.
    First,
    /// Strictly after this `(ms, id)` in the sort direction (v2 cursors).
    After((i64, u128)),
    /// At the n-th matching event, from 0 (Trust Monitor's positional offset).
    Position(usize),
}

/// A page request over one kind (times in ms, inclusive).
#[derive(Debug, Clone)]
pub struct PageReq {
    pub mintime: i64,
    pub maxtime: i64,
    pub limit: usize,
    pub desc: bool,
    pub start: Start,
    /// Cut a page of n ≥ 2 records to `1 + shorten % (n − 1)` records (a short page that
    /// still has more to come).
    pub shorten: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Indices into `KindData::events`, in response order.
    pub idx: Vec<usize>,
    /// More matching visible events follow.
    pub more: bool,
    pub boundary_split: bool,
}

/// The sorted events of one kind.
pub struct KindData {
    pub kind: Kind,
    pub events: Vec<Ev>,
    pub max_delay_ms: i64,
    /// The JSON text of every event (same index), when pre-rendered; else empty.
    pub rendered: Vec<Box<str>>,
}

impl KindData {
    fn lower(&self, ms: i64) -> usize {
        self.events.partition_point(|e| e.ms() < ms)
    }

    pub(super) fn upper(&self, ms: i64) -> usize {
        self.events.partition_point(|e| e.ms() <= ms)
    }

    /// Page through visible events with `mintime <= ms <= maxtime`, honouring the cursor.
    pub fn page(&self, req: &PageReq, now_ms: i64, filter: &dyn Fn(&Ev) -> bool) -> Page {
        let lo = self.lower(req.mintime);
        // Nothing later than `now` can be visible: bounds the scan over invisible events.
        let hi = self.upper(req.maxtime.min(now_ms)).max(lo);
        let ev = &self.events;
        let ok = |e: &Ev| e.visible_at() <= now_ms && filter(e);
        let mut out = Vec::with_capacity(req.limit.min(hi - lo));
        let mut next = None;
        if !req.desc {
            let mut i = match req.start {
                Start::After(c) => ev.partition_point(|e| e.key() <= c).max(lo),
                Start::First => lo,
                Start::Position(n) => {
                    let mut i = lo;
                    let mut skipped = 0;
                    while i < hi && skipped < n {
                        if ok(&ev[i]) {
                            skipped += 1;
                        }
                        i += 1;
                    }
                    i
                }
            };
            while i < hi {
                if ok(&ev[i]) {
                    if out.len() == req.limit {
                        next = Some(i);
                        break;
                    }
                    out.push(i);
                }
                i += 1;
            }
        } else {
            let mut skip = match req.start {
                Start::Position(n) => n,
                _ => 0,
            };
            let mut i = match req.start {
                Start::After(c) => ev.partition_point(|e| e.key() < c).min(hi),
                Start::First | Start::Position(_) => hi,
            };
            while i > lo {
                i -= 1;
                if ok(&ev[i]) {
                    if skip > 0 {
                        skip -= 1;
                        continue;
                    }
                    if out.len() == req.limit {
                        next = Some(i);
                        break;
                    }
                    out.push(i);
                }
            }
        }
        if let Some(h) = req.shorten.filter(|_| out.len() >= 2) {
            let keep = 1 + (h % (out.len() as u64 - 1)) as usize;
            next = Some(out[keep]);
            out.truncate(keep);
        }
        let unit = self.kind.unit_ms();
        let boundary_split = match (out.last(), next) {
            (Some(&last), Some(n)) => ev[last].ms().div_euclid(unit) == ev[n].ms().div_euclid(unit),
            _ => false,
        };
        Page {
            idx: out,
            more: next.is_some(),
            boundary_split,
        }
    }

    /// Number of visible events with `mintime <= ms <= maxtime`.
    pub fn count_visible(&self, mintime: i64, maxtime: i64, now_ms: i64) -> usize {
        let lo = self.lower(mintime);
        let hi = self.upper(maxtime.min(now_ms)).max(lo);
        let sure = self
            .upper(now_ms.saturating_sub(self.max_delay_ms))
            .clamp(lo, hi);
        (sure - lo)
            + self.events[sure..hi]
                .iter()
                .filter(|e| e.visible_at() <= now_ms)
                .count()
    }
}

/// Everything one account serves.
pub struct Dataset {
    pub seed: u64,
    /// The account's own id (`akey` in activity records).
    pub akey: String,
    /// `admin-XXXX.duosecurity.com`, for Trust Monitor triage URIs.
    pub admin_host: String,
    pub kinds: Vec<KindData>,
}

impl Dataset {
    pub fn generate(
        cfg: &SimConfig,
        seed: u64,
        counts: &KindCounts,
        account_id: Option<&str>,
        api_hostname: &str,
    ) -> Dataset {
        let publication = Publication::from_config(cfg);
        let kinds = Kind::ALL
            .iter()
            .map(|&k| KindData {
                kind: k,
                events: generate_events(
                    seed,
                    k,
                    counts.get(k),
                    cfg.start_ms,
                    cfg.end_ms,
                    &publication,
                    cfg.admin_second_over_1000 && k == Kind::Administrator,
                ),
                max_delay_ms: publication.max_delay_ms(),
                rendered: Vec::new(),
            })
            .collect();
        let host = api_hostname.to_ascii_lowercase();
        let admin_host = match host.strip_prefix("api-") {
            Some(rest) => format!("admin-{rest}"),
            None => format!("admin.{host}"),
        };
        Dataset {
            seed,
            akey: account_id
                .map(str::to_string)
                .unwrap_or_else(|| super::rng::duo_key("DA", mix(seed, 0xACC7))),
            admin_host,
            kinds,
        }
    }

    pub fn kind(&self, kind: Kind) -> &KindData {
        &self.kinds[kind.index()]
    }
}

/// Set `ts[s..s+g]` to one timestamp unit (that of `ts[s]`), keeping the slice sorted by unit.
fn make_group(ts: &mut [i64], s: usize, g: usize, unit_us: i64, rng: &mut Rng) {
    let Some(&first) = ts.get(s) else { return };
    let end = (s + g).min(ts.len());
    let base = first - first.rem_euclid(unit_us);
    for t in &mut ts[s..end] {
        *t = if unit_us == 1000 {
            base + rng.below(1000) as i64
        } else {
            base
        };
    }
}

/// When events become visible after their timestamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Publication {
    /// Every event: `deterministic(0..=this)`.
    pub max_delay_ms: i64,
    /// This fraction of events gets `max_delay_ms + deterministic(0..=late_tail_ms)` instead.
    pub late_tail_rate: f64,
    pub late_tail_ms: i64,
}

impl Publication {
    pub fn from_config(cfg: &SimConfig) -> Publication {
        // Delays are stored in a u32 of ms (49 days): clamp both parts into it.
        let max_delay_ms = cfg.max_visibility_delay_ms.clamp(0, i64::from(u32::MAX));
        Publication {
            max_delay_ms,
            late_tail_rate: cfg.late_tail_rate.clamp(0.0, 1.0),
            late_tail_ms: cfg
                .late_tail_ms
                .clamp(0, i64::from(u32::MAX) - max_delay_ms),
        }
    }

    /// The latest any event becomes visible after its timestamp.
    pub fn max_delay_ms(&self) -> i64 {
        if self.late_tail_rate > 0.0 {
            self.max_delay_ms + self.late_tail_ms
        } else {
            self.max_delay_ms
        }
    }

    /// The extra delay of a late event, or `None` for an on-time one. A hash of the event id,
    /// so that the rest of the dataset is the same with or without a late tail.
    fn late_extra_ms(&self, seed: u64, id: u128) -> Option<u64> {
        if self.late_tail_rate <= 0.0 {
            return None;
        }
        let h = mix(seed ^ 0x1A7E_7A11, (id >> 64) as u64 ^ id as u64);
        if unit_interval(h) >= self.late_tail_rate {
            return None;
        }
        Some(mix(h, 0x7A11) % (self.late_tail_ms as u64 + 1))
    }
}

/// Generate `count` events over `[start_ms, end_ms)`, sorted by `(ms, id)`.
///
/// Equal-unit groups (ms for v2, s for v1) of 2–40 events are placed at random and straddling
/// every index ≡ 99 (mod 100) (so also ≡ 999 mod 1000): page sizes 100 and 1000 split them.
pub fn generate_events(
    seed: u64,
    kind: Kind,
    count: usize,
    start_ms: i64,
    end_ms: i64,
    publication: &Publication,
    second_over_1000: bool,
) -> Vec<Ev> {
    let mut rng = Rng::new(mix(seed, 0x5EED_0000 + kind.index() as u64));
    let unit_us = kind.unit_ms() * 1000;
    let span_us = (end_ms.saturating_sub(start_ms).max(1) as u64).saturating_mul(1000);
    let start_us = start_ms.saturating_mul(1000);
    let mut ts: Vec<i64> = (0..count)
        .map(|_| start_us + rng.below(span_us) as i64)
        .collect();
    ts.sort_unstable();
    if unit_us > 1000 {
        for t in ts.iter_mut() {
            *t -= t.rem_euclid(unit_us);
        }
    }
    // Random groups first, so that the boundary groups below stay intact.
    let mut i = 0;
    while i < count {
        if rng.below(60) == 0 {
            let g = rng.range(2, 40) as usize;
            make_group(&mut ts, i, g, unit_us, &mut rng);
            i += g;
        } else {
            i += 1;
        }
    }
    if second_over_1000 && count > 1000 {
        let g = (1100 + rng.below(200) as usize).min(count);
        let s = (count - g) / 2;
        make_group(&mut ts, s, g, unit_us, &mut rng);
    }
    let mut b = 99;
    while b + 1 < count {
        let g = rng.range(2, 40) as usize;
        let s = b - rng.below(g as u64 - 1) as usize;
        make_group(&mut ts, s, g, unit_us, &mut rng);
        b += 100;
    }
    let max_delay = publication.max_delay_ms as u64;
    let mut evs: Vec<Ev> = ts
        .into_iter()
        .map(|ts_us| {
            let id = uuid_v4(rng.next_u64(), rng.next_u64());
            let on_time = rng.below(max_delay + 1);
            let delay = match publication.late_extra_ms(seed, id) {
                Some(extra) => max_delay + extra,
                None => on_time,
            };
            Ev {
                ts_us,
                id,
                delay_ms: u32::try_from(delay).unwrap_or(u32::MAX),
            }
        })
        .collect();
    evs.sort_unstable_by_key(Ev::key);
    evs
}
