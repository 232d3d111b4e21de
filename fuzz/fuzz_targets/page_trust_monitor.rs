//! Trust Monitor pages: any body is a page or a `PageError`.
#![no_main]

use duo_collector::logs::{page, LogKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(parsed) = page::parse(LogKind::TrustMonitor, body) {
        for event in &parsed.events {
            assert!(!event.event_id.is_empty());
        }
    }
});
