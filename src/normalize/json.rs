//! A JSON object writer straight into the output buffer: no `Value` tree per event.
//!
//! It knows the dotted path of every key it writes, so `exclude_fields` costs nothing when
//! empty and is exact when not: an excluded key is never written; an excluded path inside a
//! pass-through subtree (a raw Duo value) is removed from that subtree alone. Objects and
//! arrays that end up empty are rolled back, so no `{}` or `[]` is emitted.

use serde_json::value::RawValue;

use super::filter;
use super::record::{Rec, Use};

pub(crate) struct W<'o> {
    pub out: &'o mut Vec<u8>,
    excl: &'o [String],
    path: String,
    /// For each open container: nothing written in it yet.
    first: Vec<bool>,
}

/// Whether any byte of the word is a control character, `"` or `\\` (SWAR: eight at a time).
#[inline]
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    // Bytes below 0x20 (bytes >= 0x80 are excluded by `!word`), or equal to `"` or `\`.
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    control | has_zero(word ^ (ONES * u64::from(b'"'))) | has_zero(word ^ (ONES * u64::from(b'\\')))
        != 0
}

/// The index of the first byte that needs escaping: whole words skipped eight bytes at a time.
#[inline]
fn first_escape(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while i + 8 <= bytes.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[i..i + 8]);
        if needs_escape(u64::from_le_bytes(word)) {
            break;
        }
        i += 8;
    }
    while i < bytes.len() && !matches!(bytes[i], 0..=0x1f | b'"' | b'\\') {
        i += 1;
    }
    i
}

pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    loop {
        let i = first_escape(bytes, start);
        out.extend_from_slice(&bytes[start..i]);
        let Some(&b) = bytes.get(i) else { break };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    out.push(b'"');
}

impl<'o> W<'o> {
    pub fn new(out: &'o mut Vec<u8>, excl: &'o [String]) -> Self {
        W {
            out,
            excl,
            path: String::new(),
            first: Vec::with_capacity(8),
        }
    }

    /// Writes the whole event as one object.
    pub fn top(&mut self, f: impl FnOnce(&mut Self)) {
        self.out.push(b'{');
        self.first.push(true);
        f(self);
        self.first.pop();
        self.out.push(b'}');
    }

    /// Writes `,"key":` unless the path is excluded; returns the rollback position and the
    /// path length to restore.
    fn begin(&mut self, key: &str) -> Option<(usize, usize)> {
        let path_len = self.path.len();
        if !self.excl.is_empty() {
            if path_len > 0 {
                self.path.push('.');
            }
            self.path.push_str(key);
            if self.excl.contains(&self.path) {
                self.path.truncate(path_len);
                return None;
            }
        }
        let pos = self.out.len();
        if !self.first.last().copied().unwrap_or(true) {
            self.out.push(b',');
        }
        push_json_str(self.out, key);
        self.out.push(b':');
        Some((pos, path_len))
    }

    fn end(&mut self, path_len: usize) {
        self.path.truncate(path_len);
        if let Some(f) = self.first.last_mut() {
            *f = false;
        }
    }

    pub fn str(&mut self, key: &str, v: &str) {
        if let Some((_, p)) = self.begin(key) {
            push_json_str(self.out, v);
            self.end(p);
        }
    }

    pub fn opt_str(&mut self, key: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.str(key, v);
        }
    }

    pub fn num(&mut self, key: &str, v: i64) {
        if let Some((_, p)) = self.begin(key) {
            // Writing into a Vec cannot fail.
            let _ = std::io::Write::write_fmt(self.out, format_args!("{v}"));
            self.end(p);
        }
    }

    pub fn bool(&mut self, key: &str, v: bool) {
        if let Some((_, p)) = self.begin(key) {
            self.out
                .extend_from_slice(if v { b"true" } else { b"false" });
            self.end(p);
        }
    }

    /// A JSON value passed through as it is (minus excluded paths inside it).
    pub fn raw(&mut self, key: &str, v: &RawValue) {
        self.raw_text(key, v.get());
    }

    /// `text` must be valid JSON.
    pub fn raw_text(&mut self, key: &str, text: &str) {
        if let Some((_, p)) = self.begin(key) {
            let inner = filter::nested_exclusions(self.excl, &self.path);
            if inner.is_empty() {
                self.out.extend_from_slice(text.trim().as_bytes());
            } else {
                filter::write_filtered(self.out, text, &inner);
            }
            self.end(p);
        }
    }

    /// A nested object; dropped when `f` writes nothing into it.
    pub fn obj(&mut self, key: &str, f: impl FnOnce(&mut Self)) {
        self.container(key, b'{', b'}', f)
    }

    /// An array; inside, write elements with the `item_*` methods.
    pub fn arr(&mut self, key: &str, f: impl FnOnce(&mut Self)) {
        self.container(key, b'[', b']', f)
    }

    fn container(&mut self, key: &str, open: u8, close: u8, f: impl FnOnce(&mut Self)) {
        let Some((pos, p)) = self.begin(key) else {
            return;
        };
        self.out.push(open);
        self.first.push(true);
        f(self);
        let empty = self.first.pop().unwrap_or(true);
        if empty {
            self.out.truncate(pos);
            self.path.truncate(p);
        } else {
            self.out.push(close);
            self.end(p);
        }
    }

    fn item_sep(&mut self) -> usize {
        let pos = self.out.len();
        if !self.first.last().copied().unwrap_or(true) {
            self.out.push(b',');
        }
        pos
    }

    pub fn item_str(&mut self, v: &str) {
        self.item_sep();
        push_json_str(self.out, v);
        if let Some(f) = self.first.last_mut() {
            *f = false;
        }
    }

    pub fn item_obj(&mut self, f: impl FnOnce(&mut Self)) {
        let pos = self.item_sep();
        self.out.push(b'{');
        self.first.push(true);
        f(self);
        let empty = self.first.pop().unwrap_or(true);
        if empty {
            self.out.truncate(pos);
        } else {
            self.out.push(b'}');
            if let Some(f) = self.first.last_mut() {
                *f = false;
            }
        }
    }

    /// Every field of `rec` a mapping did not consume, as it came (nulls included), then the
    /// fields the mapping added.
    pub fn leftovers(&mut self, rec: &Rec<'_>) {
        for field in &rec.fields {
            match &field.used {
                Use::Unused => self.raw(&field.key, field.raw),
                Use::Used => {}
                Use::Split(sub) => self.obj(&field.key, |w| w.leftovers(sub)),
                Use::Replaced(json) => self.raw_text(&field.key, json),
            }
        }
        for (key, json) in &rec.extra {
            self.raw_text(key, json);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_like_serde_json() {
        let mut samples: Vec<String> = vec![
            String::new(),
            "plain ascii text, longer than eight bytes".into(),
            "Zoë \"q\" \\ back\nline\r\ttab \u{1}\u{1f}\u{7f} 李雷 user🙂".into(),
        ];
        // Every special byte at every position of a 17-byte string (both SWAR words and tail).
        for special in (0u8..0x20).chain([b'"', b'\\', b' ', 0x7f]) {
            for pos in 0..17 {
                let mut b = vec![b'a'; 17];
                b[pos] = special;
                samples.push(String::from_utf8(b).unwrap());
            }
        }
        for s in samples {
            let mut out = Vec::new();
            push_json_str(&mut out, &s);
            let text = String::from_utf8(out).unwrap();
            assert_eq!(serde_json::from_str::<String>(&text).unwrap(), s);
            // serde_json writes \b and \f where this writes \u0008 and \u000c.
            let expected = serde_json::to_string(&s)
                .unwrap()
                .replace("\\b", "\\u0008")
                .replace("\\f", "\\u000c");
            assert_eq!(text, expected);
        }
    }

    #[test]
    fn writes_escapes_excludes_and_drops_empty_containers() {
        let mut out = Vec::new();
        let excl = vec!["a.b".to_string(), "r.x.y".to_string()];
        let raw: Box<RawValue> =
            serde_json::from_str(r#"{"x":{"y":1,"z":2},"w":[{"x":{"y":3}}]}"#).unwrap();
        let mut w = W::new(&mut out, &excl);
        w.top(|w| {
            w.obj("a", |w| w.str("b", "gone"));
            w.obj("c", |w| {
                w.str("d", "q\"\\\n\u{1}é");
                w.arr("e", |_| {});
                w.arr("f", |w| {
                    w.item_str("1");
                    w.item_obj(|_| {});
                    w.item_obj(|w| w.num("n", 2));
                });
            });
            w.raw("r", &raw);
            w.bool("t", true);
        });
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"c":{"d":"q\"\\\n\u{1}é","f":["1",{"n":2}]},
                "r":{"x":{"z":2},"w":[{"x":{"y":3}}]},"t":true})
        );
    }
}
