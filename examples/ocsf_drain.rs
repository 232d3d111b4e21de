//! Input for the OCSF schema walk of `tests/ocsf/validate.py` beyond the golden snapshots:
//! every event of a default simulator dataset (all log kinds, thousands of records, every
//! record shape the generator makes), rendered in OCSF as a sink would, one event per line.
//! `.ci/run` runs it and hands the file to `validate.py --events`.
//!
//! Usage: `ocsf_drain OUT [SEED [FORMAT]]` (FORMAT `ocsf` unless given: `ecs` to check that
//! format by other means); prints `events=N` per log kind on stderr.

use std::io::Write;

use duo_collector::event::{Batch, Event, StreamId};
use duo_collector::logs::LogKind;
use duo_collector::normalize::{Format, Formatter};
use duo_collector::simulator::{SimConfig, Simulator};

const KINDS: [LogKind; 6] = LogKind::ALL;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out_path = args.next().ok_or("usage: ocsf_drain OUT [SEED [FORMAT]]")?;
    let seed = match args.next() {
        Some(s) => s.parse::<u64>().map_err(|e| format!("SEED {s:?}: {e}"))?,
        None => SimConfig::default().seed,
    };
    let format = match args.next() {
        Some(f) => f.parse::<Format>()?,
        None => Format::Ocsf,
    };
    let cfg = SimConfig {
        seed,
        ..SimConfig::default()
    };
    let sim = Simulator::start("127.0.0.1:0".parse()?, cfg).await?;
    let handle = sim.handle();
    let collected_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let formatter = Formatter::new(format, Vec::new());
    let mut file = std::io::BufWriter::new(std::fs::File::create(&out_path)?);
    let mut lines = Vec::new();
    for kind in KINDS {
        // Everything, as a drain after the visibility delay would deliver it.
        let events: Vec<Event> = handle
            .expected_events(None, kind.as_str(), i64::MAX, i64::MAX)
            .into_iter()
            .map(|e| Event {
                raw: e.record.to_string(),
                event_id: e.id,
                ts_ms: e.ts_ms,
            })
            .collect();
        let stream = StreamId::new("drain", None, kind);
        let batch = Batch::of_events(&stream, &collected_at, &events);
        lines.clear();
        for range in formatter.render_batch(&batch, &mut lines) {
            file.write_all(&lines[range])?;
            file.write_all(b"\n")?;
        }
        eprintln!("{kind}: events={}", events.len());
    }
    file.flush()?;
    Ok(())
}
