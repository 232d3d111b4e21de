//! v2 log pages (authentication, telephony, activity): any body is a page or a `PageError`.
#![no_main]

use duo_collector::logs::{page, LogKind};
use libfuzzer_sys::fuzz_target;

const KINDS: [LogKind; 3] = [
    LogKind::Authentication,
    LogKind::Telephony,
    LogKind::Activity,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let kind = KINDS[pick as usize % KINDS.len()];
    if let Ok(parsed) = page::parse(kind, body) {
        for event in &parsed.events {
            assert!(!event.event_id.is_empty());
        }
    }
});
