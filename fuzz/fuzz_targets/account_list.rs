//! The Accounts API's child account list: any body is a list or a `PageError`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let _ = duo_collector::collector::parse_children(body);
});
