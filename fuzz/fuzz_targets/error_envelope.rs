//! Duo's error envelope: any status and body become a `DuoError` with printable text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let status = u16::from_be_bytes([data[0], data[1]]);
    let error = duo_collector::duo::error::from_response(status, &data[2..]);
    let _ = (error.code(), error.is_transient(), error.is_refused());
    let text = error.to_string();
    assert!(!text.contains('\u{0}'));
});
