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

pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
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
            self.out.extend_from_slice(v.to_string().as_bytes());
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

    /// Every field of `rec` a mapping did not consume, as it came (nulls included).
    pub fn leftovers(&mut self, rec: &Rec<'_>) {
        for field in &rec.fields {
            match &field.used {
                Use::Unused => self.raw(&field.key, field.raw),
                Use::Used => {}
                Use::Split(sub) => self.obj(&field.key, |w| w.leftovers(sub)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
