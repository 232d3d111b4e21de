//! Keys of the state buckets, pure: a key is dot-separated tokens, one per part (integration,
//! account, log kind, endpoint, sink name). A KV key may only hold `A-Za-z0-9-_/=.`, and the
//! dot separates tokens, while integration names, account ids and endpoints may hold anything;
//! so each part is escaped: letters, digits and `-` stay, every other byte becomes `_XX` (its
//! hex), and an empty part (the integration's own account) is `_` alone. Every part reads back
//! exactly, and no two parts share a token.

use crate::event::StreamId;
use crate::log_kind::LogKind;

/// One part as a key token.
pub fn token(part: &str) -> String {
    if part.is_empty() {
        return "_".to_string();
    }
    let mut out = String::with_capacity(part.len());
    for byte in part.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("_{byte:02X}"));
        }
    }
    out
}

/// A token back into its part; `None` for text [`token`] never writes.
pub fn part(token: &str) -> Option<String> {
    if token == "_" {
        return Some(String::new());
    }
    if token.is_empty() {
        return None;
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => {
                let hex = token.get(i + 1..i + 3)?;
                let byte = u8::from_str_radix(hex, 16).ok()?;
                if byte.is_ascii_alphanumeric() || byte == b'-' || hex != hex.to_uppercase() {
                    return None;
                }
                out.push(byte);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b == b'-' => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// The parts joined into a key.
pub fn key(parts: &[&str]) -> String {
    parts.iter().map(|p| token(p)).collect::<Vec<_>>().join(".")
}

/// A key back into its parts; `None` for a key not written by [`key`].
pub fn parts(key: &str) -> Option<Vec<String>> {
    key.split('.').map(part).collect()
}

/// A stream's key: integration, account (`_` for its own), log kind.
pub fn stream_key(stream: &StreamId) -> String {
    key(&[
        &stream.integration,
        stream.account_id.as_deref().unwrap_or(""),
        // A log kind's name, or `inventory_<kind>`: an inventory kind's stream is its own.
        stream.source_name(),
    ])
}

/// The stream a key names; `None` for another key or an unknown log kind.
pub fn stream_of(key: &str) -> Option<StreamId> {
    let parts = parts(key)?;
    let [integration, account, log] = parts.as_slice() else {
        return None;
    };
    let account = (!account.is_empty()).then(|| account.clone());
    if let Some(kind) = crate::inventory_kind::InventoryKind::ALL
        .into_iter()
        .find(|k| k.log_name() == log)
    {
        return Some(StreamId::inventory(integration, account, kind));
    }
    let log: LogKind = log.parse().ok()?;
    Some(StreamId::new(integration, account, log))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn valid_kv_key(key: &str) -> bool {
        !key.is_empty()
            && !key.starts_with('.')
            && !key.ends_with('.')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
    }

    #[test]
    fn parts_that_kv_keys_do_not_allow_are_escaped() {
        assert_eq!(token("corp"), "corp");
        assert_eq!(token(""), "_");
        assert_eq!(token("a.b c/é"), "a_2Eb_20c_2F_C3_A9");
        assert_eq!(token("_"), "_5F");
        let child = StreamId::new("msp east", Some("DA1.x".into()), LogKind::TrustMonitor);
        let own = StreamId::new("corp", None, LogKind::Authentication);
        assert_eq!(stream_key(&own), "corp._.authentication");
        assert_eq!(stream_of(&stream_key(&child)), Some(child));
        assert_eq!(stream_of(&stream_key(&own)), Some(own));
        assert_eq!(stream_of("corp._.nope"), None);
        // Each inventory kind is a stream of its own, apart from the administrator log.
        let users = StreamId::inventory("corp", None, crate::inventory_kind::InventoryKind::Users);
        let admins =
            StreamId::inventory("corp", None, crate::inventory_kind::InventoryKind::Admins);
        assert_eq!(stream_key(&users), "corp._.inventory_5Fusers");
        assert_ne!(stream_key(&admins), stream_key(&users));
        assert_eq!(stream_of(&stream_key(&users)), Some(users));
        assert_eq!(part("_zz"), None);
        assert_eq!(part("_41"), None, "a letter is never escaped");
        assert_eq!(part("a_2e"), None, "escapes are upper-case hex");
    }

    proptest! {
        #[test]
        fn every_part_reads_back_and_makes_a_valid_key(a in ".*", b in ".*") {
            let k = key(&[&a, &b]);
            prop_assert!(valid_kv_key(&k), "{k}");
            prop_assert_eq!(parts(&k), Some(vec![a, b]));
        }
    }
}
