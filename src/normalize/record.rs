//! A Duo record as borrowed `(key, raw JSON value)` pairs, with bookkeeping of which fields a
//! mapping consumed, so that everything else can be passed through untouched (`unmapped` in OCSF,
//! `cisco_duo.<kind>` in ECS): nothing is lost and nothing is parsed twice.
//!
//! Getters are typed and forgiving: a value of the wrong type is simply not consumed (it then
//! lands in the pass-through part of the output), never an error.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// How a mapping used a field.
pub(crate) enum Use<'a> {
    Unused,
    Used,
    /// An object whose own fields were partly consumed.
    Split(Box<Rec<'a>>),
    /// Passed through as this JSON text instead of the value as it came (a JSON document
    /// that Duo sends as a string, parsed).
    Replaced(String),
}

pub(crate) struct Field<'a> {
    pub key: Cow<'a, str>,
    pub raw: &'a RawValue,
    pub used: Use<'a>,
}

/// The fields of one JSON object, in document order.
#[derive(Default)]
pub(crate) struct Rec<'a> {
    pub fields: Vec<Field<'a>>,
    /// Fields a mapping added to the pass-through part, `(key, JSON text)`, written after
    /// the record's own.
    pub extra: Vec<(String, String)>,
}

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

struct Fields<'a>(Vec<Field<'a>>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    let raw: &'de RawValue = map.next_value()?;
                    fields.push(Field {
                        key,
                        raw,
                        used: Use::Unused,
                    });
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(V)
    }
}

/// The text of a JSON string value, borrowed when it has no escapes.
pub(crate) fn raw_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let t = raw.get();
    if !t.starts_with('"') || t.len() < 2 {
        return None;
    }
    if !t.contains('\\') {
        return Some(Cow::Borrowed(&t[1..t.len() - 1]));
    }
    serde_json::from_str::<String>(t).ok().map(Cow::Owned)
}

impl<'a> Rec<'a> {
    /// The fields of a JSON object; `None` when the text is not one.
    pub fn parse(text: &'a str) -> Option<Rec<'a>> {
        serde_json::from_str::<Fields<'a>>(text).ok().map(|f| Rec {
            fields: f.0,
            extra: Vec::new(),
        })
    }

    fn idx(&self, key: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.key == key)
    }

    /// The raw value of a field, unless absent or null. Does not consume it.
    pub fn peek(&self, key: &str) -> Option<&'a RawValue> {
        let i = self.idx(key)?;
        let raw = self.fields[i].raw;
        (raw.get() != "null").then_some(raw)
    }

    /// Marks a field consumed.
    pub fn mark(&mut self, key: &str) {
        if let Some(i) = self.idx(key) {
            if matches!(self.fields[i].used, Use::Unused) {
                self.fields[i].used = Use::Used;
            }
        }
    }

    /// A string field, not consumed.
    pub fn peek_str(&self, key: &str) -> Option<Cow<'a, str>> {
        self.peek(key).and_then(raw_str)
    }

    /// A string field, consumed if it is a string. Null consumes too (and returns `None`).
    pub fn str(&mut self, key: &str) -> Option<Cow<'a, str>> {
        let i = self.idx(key)?;
        let raw = self.fields[i].raw;
        if raw.get() == "null" {
            self.fields[i].used = Use::Used;
            return None;
        }
        let s = raw_str(raw)?;
        self.fields[i].used = Use::Used;
        Some(s)
    }

    /// A non-empty string, consumed (an empty string is consumed too and gives `None`).
    pub fn text(&mut self, key: &str) -> Option<Cow<'a, str>> {
        self.str(key).filter(|s| !s.is_empty())
    }

    /// A boolean field, consumed if it is one.
    pub fn bool(&mut self, key: &str) -> Option<bool> {
        let i = self.idx(key)?;
        let b = match self.fields[i].raw.get() {
            "true" => true,
            "false" => false,
            _ => return None,
        };
        self.fields[i].used = Use::Used;
        Some(b)
    }

    /// An integer field, consumed if it is one.
    pub fn int(&mut self, key: &str) -> Option<i64> {
        let i = self.idx(key)?;
        let n = self.fields[i].raw.get().parse::<i64>().ok()?;
        self.fields[i].used = Use::Used;
        Some(n)
    }

    /// An integer field, not consumed.
    pub fn peek_int(&self, key: &str) -> Option<i64> {
        self.peek(key)?.get().parse::<i64>().ok()
    }

    /// A nested object, to be consumed field by field. A null is consumed; any other
    /// non-object is left as it is.
    pub fn child(&mut self, key: &str) -> Option<&mut Rec<'a>> {
        let i = self.idx(key)?;
        let raw = self.fields[i].raw;
        if raw.get() == "null" {
            self.fields[i].used = Use::Used;
            return None;
        }
        if !matches!(self.fields[i].used, Use::Split(_)) {
            let sub = Rec::parse(raw.get())?;
            self.fields[i].used = Use::Split(Box::new(sub));
        }
        match &mut self.fields[i].used {
            Use::Split(sub) => Some(sub),
            _ => None,
        }
    }

    /// Passes a field through as `json` instead of its own value.
    pub fn replace(&mut self, key: &str, json: String) {
        if let Some(i) = self.idx(key) {
            self.fields[i].used = Use::Replaced(json);
        }
    }

    /// Adds a field to the pass-through part (`json` must be valid JSON). A key the pass-through
    /// part already has gets a leading `_` (until it is free), so no key is written twice.
    pub fn add(&mut self, key: &str, json: String) {
        let mut key = key.to_owned();
        let taken = |rec: &Self, key: &str| {
            rec.fields
                .iter()
                .any(|f| f.key == key && !matches!(f.used, Use::Used))
                || rec.extra.iter().any(|(k, _)| k == key)
        };
        while taken(self, &key) {
            key.insert(0, '_');
        }
        self.extra.push((key, json));
    }

    /// A string field holding a JSON object (Duo's `details`): passed through as the object.
    /// Returns whether it was one.
    pub fn parse_embedded(&mut self, key: &str) -> bool {
        let Some(doc) = self
            .peek_str(key)
            .and_then(|s| embedded_object(&s).map(str::to_owned))
        else {
            return false;
        };
        self.replace(key, doc);
        true
    }

    /// An array of strings, consumed only if every element is a string.
    pub fn strings(&mut self, key: &str) -> Option<Vec<Cow<'a, str>>> {
        let i = self.idx(key)?;
        let items: Vec<&'a RawValue> = serde_json::from_str(self.fields[i].raw.get()).ok()?;
        let strings: Option<Vec<_>> = items.into_iter().map(raw_str).collect();
        let strings = strings?;
        self.fields[i].used = Use::Used;
        Some(strings)
    }

    /// The elements of an array field, not consumed.
    pub fn peek_array(&self, key: &str) -> Vec<&'a RawValue> {
        self.peek(key)
            .and_then(|r| serde_json::from_str(r.get()).ok())
            .unwrap_or_default()
    }
}

/// A field holding a JSON document as a string (Duo's `description`, `details`): the document
/// text when it is a JSON object.
pub(crate) fn embedded_object(s: &str) -> Option<&str> {
    let t = s.trim();
    if !t.starts_with('{') {
        return None;
    }
    serde_json::from_str::<&RawValue>(t).ok().map(|r| r.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_getters_leave_wrong_types_unconsumed() {
        let text = r#"{"a":"x","b":"unknown","c":5,"d":null,"e\u00e9":{"f":"\"q\""},"g":["a",1]}"#;
        let mut r = Rec::parse(text).unwrap();
        assert_eq!(r.str("a").as_deref(), Some("x"));
        assert_eq!(r.bool("b"), None);
        assert_eq!(r.str("c"), None);
        assert_eq!(r.int("c"), Some(5));
        assert_eq!(r.str("d"), None);
        assert_eq!(r.child("eé").unwrap().str("f").as_deref(), Some("\"q\""));
        assert!(r.strings("g").is_none());
        assert!(matches!(r.fields[1].used, Use::Unused));
        assert!(matches!(r.fields[5].used, Use::Unused));
        assert!(Rec::parse("[1]").is_none());
    }

    #[test]
    fn added_fields_never_repeat_a_key() {
        let mut r = Rec::parse(r#"{"address":"a","ip":"b"}"#).unwrap();
        r.mark("ip");
        r.add("address", "1".into());
        r.add("address", "2".into());
        r.add("ip", "3".into());
        let keys: Vec<&str> = r.extra.iter().map(|(k, _)| k.as_str()).collect();
        // `ip` was consumed: it is not written, so its key is free.
        assert_eq!(keys, ["_address", "__address", "ip"]);
    }
}
