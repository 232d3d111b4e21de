//! The config loader: any text is a `Config` or a `ConfigError` (never a panic).
#![no_main]

use duo_collector::config::Env;
use duo_collector::settings::parse_config_str;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The loader reads the files a config names (they seldom exist here); device and kernel
    // files are skipped, so that a read cannot block or run forever.
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let env = Env::from_pairs(&[("DUO_SKEY", "fuzz-skey-fuzz-skey-fuzz-skey-fuzz-skey")]);
    if let Err(e) = parse_config_str(text, "fuzz.toml", &env) {
        let _ = e.to_string();
    }
});
