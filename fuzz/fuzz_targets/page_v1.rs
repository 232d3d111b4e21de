//! v1 log pages (administrator, offline enrollment): any body is a page or a `PageError`.
#![no_main]

use duo_collector::logs::{page, LogKind};
use libfuzzer_sys::fuzz_target;

const KINDS: [LogKind; 2] = [LogKind::Administrator, LogKind::OfflineEnrollment];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let kind = KINDS[pick as usize % KINDS.len()];
    if let Ok(parsed) = page::parse(kind, body) {
        let mut ids = std::collections::HashSet::new();
        for event in &parsed.events {
            // Identical records are told apart, never merged.
            assert!(ids.insert(event.event_id.clone()));
        }
    }
});
