//! Benchmark helper (`bench/run`): fetches every authentication page of the first integration in
//! a config from the Duo API (the simulator) and throws the records away — no normalization, no
//! sink, no checkpoint — so the simulator's own throughput can be seen. The only work per page
//! is what the pager needs: the borrowed envelope parse for the cursor.
//!
//! Usage: `fetch_pages CONFIG`; prints `events=N pages=N seconds=S` on stdout.

use std::time::Instant;

use duo_collector::duo::{Call, DuoClient, RetryPolicy};
use duo_collector::logs::page::parse_v2;
use duo_collector::logs::LogKind;
use duo_collector::settings::Config;
use tokio_util::sync::CancellationToken;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: fetch_pages CONFIG")?;
    let config = Config::load(std::path::Path::new(&path)).map_err(|e| e.to_string())?;
    let integration = config.integrations.first().ok_or("no [[integration]]")?;
    let client = DuoClient::for_integration(integration, RetryPolicy::default())?;
    let cancel = CancellationToken::new();
    let now = chrono::Utc::now().timestamp_millis();
    let mintime = now - integration.initial_lookback.as_millis() as i64;
    let maxtime = now - integration.delay.as_millis() as i64;
    let (mut events, mut pages, mut cursor) = (0usize, 0usize, None::<String>);
    let started = Instant::now();
    loop {
        let mut params = vec![
            ("mintime".to_string(), mintime.to_string()),
            ("maxtime".to_string(), maxtime.to_string()),
            ("limit".to_string(), "1000".to_string()),
            ("sort".to_string(), "ts:asc".to_string()),
        ];
        if let Some(c) = &cursor {
            params.push(("next_offset".to_string(), c.clone()));
        }
        let page = client
            .request(
                &Call::get(
                    &integration.api_hostname,
                    LogKind::Authentication.path(),
                    &params,
                ),
                &cancel,
                |body| parse_v2(LogKind::Authentication, body),
            )
            .await?;
        pages += 1;
        events += page.events.len();
        match page.next_offset {
            // Duo's rule: follow the cursor until a page has none (or is empty).
            Some(next) if !page.events.is_empty() => cursor = Some(next),
            _ => break,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("events={events} pages={pages} seconds={seconds:.3}");
    Ok(())
}
