//! `collect-now` progress: a line per stream that updates in place on a terminal (indicatif),
//! or a plain line every few seconds per stream when stderr is not a terminal.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::event::StreamId;
use crate::observe::{CommittedPage, PageListener};

struct StreamProgress {
    bar: Option<ProgressBar>,
    events: u64,
    started: Instant,
    last_line: Instant,
}

pub struct ProgressDisplay {
    multi: Option<MultiProgress>,
    streams: Mutex<HashMap<StreamId, StreamProgress>>,
}

impl ProgressDisplay {
    /// Bars when stderr is a terminal, plain lines otherwise.
    pub fn new() -> ProgressDisplay {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        ProgressDisplay {
            multi: terminal.then(MultiProgress::new),
            streams: Mutex::new(HashMap::new()),
        }
    }

    fn describe(stream: &StreamId, p: &StreamProgress, position_ms: i64) -> String {
        let covered = chrono::DateTime::from_timestamp_millis(position_ms)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        let behind = crate::human::duration_secs((crate::clock::now_ms() - position_ms) / 1000);
        let rate = crate::human::rate(p.events, p.started.elapsed())
            .map(|r| format!(", {r}"))
            .unwrap_or_default();
        format!(
            "{stream}: up to {covered} ({behind} behind), {}{rate}",
            crate::human::count(p.events, "event", "events")
        )
    }
}

impl Default for ProgressDisplay {
    fn default() -> Self {
        Self::new()
    }
}

impl PageListener for ProgressDisplay {
    fn page(&self, page: &CommittedPage<'_>) {
        let stream = page.stream;
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let entry = streams.entry(stream.clone()).or_insert_with(|| {
            let bar = self.multi.as_ref().map(|m| {
                let bar = m.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            });
            StreamProgress {
                bar,
                events: 0,
                started: Instant::now(),
                last_line: Instant::now() - Duration::from_secs(60),
            }
        });
        entry.events += page.events as u64;
        let line = Self::describe(stream, entry, page.position_ms);
        match &entry.bar {
            Some(bar) => bar.set_message(line),
            None if entry.last_line.elapsed() >= Duration::from_secs(5) => {
                entry.last_line = Instant::now();
                eprintln!("progress {line}");
            }
            None => {}
        }
    }

    fn finished(&self, stream: &StreamId, failed: bool) {
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bar) = streams.get(stream).and_then(|p| p.bar.as_ref()) {
            let verdict = if failed { "failed" } else { "done" };
            bar.finish_with_message(format!("{stream}: {verdict}"));
        }
    }
}
