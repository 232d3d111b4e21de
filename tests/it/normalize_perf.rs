//! Render cost per event, per format (ignored by default; run with
//! `cargo test --release --test it normalize_perf:: -- --ignored --nocapture`).

use std::time::Instant;

use crate::fixtures::*;
use duo_collector::event::Event;
use duo_collector::normalize::{Format, Formatter};

#[test]
#[ignore]
fn render_cost_per_event() {
    for (kind, recs) in records(11, 2000) {
        let events: Vec<Event> = recs.iter().map(|(id, ts, r)| event(id, *ts, r)).collect();
        let stream = stream(kind, false);
        let b = batch(&stream, &events, false);
        let mut line = format!("{kind:>18}:");
        for format in Format::ALL {
            let f = Formatter::new(format, Vec::new());
            let mut out = Vec::with_capacity(events.len() * 2000);
            let rounds = 20;
            let start = Instant::now();
            for _ in 0..rounds {
                out.clear();
                f.render_batch(&b, &mut out);
            }
            let per = start.elapsed().as_secs_f64() / (rounds * events.len()) as f64;
            line += &format!("  {format} {:.2} µs", per * 1e6);
        }
        println!("{line}");
    }
}
