//! The dataset as the simulator serves it: generated (`data.rs`), and each record's JSON text
//! rendered (`records.rs`) once up front with `prerender`, or on demand.

use super::data::{Dataset, Kind};
use super::records::{natural_id, render};
use super::{ChildAccount, ExpectedEvent, SimConfig};

impl Dataset {
    /// This dataset with every record rendered once up front when `prerender` says so
    /// (`SimConfig::prerender`: the benchmark's simulator serves pages at memory speed).
    pub fn prerendered_if(mut self, prerender: bool) -> Dataset {
        if prerender {
            self.prerender();
        }
        self
    }

    pub fn for_child(cfg: &SimConfig, child: &ChildAccount) -> Dataset {
        Dataset::generate(
            cfg,
            child.seed,
            &child.counts,
            Some(&child.account_id),
            &child.api_hostname,
        )
        .prerendered_if(cfg.prerender)
    }

    /// Renders the JSON text of every event once, on all cores.
    fn prerender(&mut self) {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let rendered: Vec<Vec<Box<str>>> = Kind::ALL
            .iter()
            .map(|&kind| {
                let n = self.kind(kind).events.len();
                let chunk = n.div_ceil(threads).max(1);
                let this = &*self;
                std::thread::scope(|s| {
                    let parts: Vec<_> = (0..n)
                        .step_by(chunk)
                        .map(|lo| {
                            s.spawn(move || {
                                (lo..(lo + chunk).min(n))
                                    .map(|i| render(this, kind, i).to_string().into_boxed_str())
                                    .collect::<Vec<_>>()
                            })
                        })
                        .collect();
                    parts
                        .into_iter()
                        .flat_map(|p| p.join().unwrap_or_default())
                        .collect()
                })
            })
            .collect();
        for (kd, r) in self.kinds.iter_mut().zip(rendered) {
            kd.rendered = r;
        }
    }

    /// The JSON text of event `idx` of `kind`: pre-rendered, or rendered now.
    pub fn record_text(&self, kind: Kind, idx: usize) -> std::borrow::Cow<'_, str> {
        match self.kind(kind).rendered.get(idx) {
            Some(text) => std::borrow::Cow::Borrowed(text),
            None => std::borrow::Cow::Owned(render(self, kind, idx).to_string()),
        }
    }

    /// See `SimHandle::expected_events`.
    pub fn expected(&self, kind: Kind, visible_at_ms: i64, up_to_ts_ms: i64) -> Vec<ExpectedEvent> {
        let kd = self.kind(kind);
        let hi = kd.upper(up_to_ts_ms);
        kd.events[..hi]
            .iter()
            .enumerate()
            .filter(|(_, e)| e.visible_at() <= visible_at_ms)
            .map(|(i, e)| ExpectedEvent {
                ts_ms: e.ms(),
                id: natural_id(kind, e),
                record: render(self, kind, i),
            })
            .collect()
    }
}
