//! The one table of `[[sink]]` keys: for every sink type, the keys it takes and the TOML type
//! of each. The accepted keys, the type checks and the docs' key list all derive from it, and
//! a validator reads a key only through [`Fragment`], which knows whether the table has it.

use std::collections::BTreeMap;

use super::SinkKind;
use crate::config::{Env, Report};

/// The TOML type a key's value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Flag,
    Count,
    TextList,
    TextTable,
}

impl Kind {
    fn holds(self, value: &toml::Value) -> bool {
        match self {
            Kind::Text => value.is_str(),
            Kind::Flag => value.is_bool(),
            Kind::Count => value.as_integer().is_some_and(|n| n >= 0),
            Kind::TextList => value
                .as_array()
                .is_some_and(|items| items.iter().all(toml::Value::is_str)),
            Kind::TextTable => value
                .as_table()
                .is_some_and(|t| t.values().all(toml::Value::is_str)),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Text => "a string",
            Kind::Flag => "true or false",
            Kind::Count => "a whole number, 0 or more",
            Kind::TextList => "a list of strings, e.g. [\"a\", \"b\"]",
            Kind::TextTable => "a table of strings, e.g. { X-Team = \"secops\" }",
        }
    }
}

/// One key a sink takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
}

const fn key(name: &'static str, kind: Kind) -> Key {
    Key { name, kind }
}

pub(super) const fn text(name: &'static str) -> Key {
    key(name, Kind::Text)
}

pub(super) const fn flag(name: &'static str) -> Key {
    key(name, Kind::Flag)
}

pub(super) const fn count(name: &'static str) -> Key {
    key(name, Kind::Count)
}

pub(super) const fn table(name: &'static str) -> Key {
    key(name, Kind::TextTable)
}

/// The keys every sink takes.
pub const COMMON: &[Key] = &[
    key("name", Kind::Text),
    key("type", Kind::Text),
    key("format", Kind::Text),
    key("exclude_fields", Kind::TextList),
];
pub(super) const TLS: &[Key] = &[
    key("ca_file", Kind::Text),
    key("cert_file", Kind::Text),
    key("key_file", Kind::Text),
    key("server_name", Kind::Text),
];
pub(super) const CLIENT_TLS: &[Key] = TLS.split_at(3).0;
pub(super) const CA_FILE: &[Key] = TLS.split_at(1).0;
pub(super) const TOKEN: &[Key] = &[
    key("token_file", Kind::Text),
    key("token_env", Kind::Text),
    key("token_credential", Kind::Text),
];
pub(super) const PASSWORD: &[Key] = &[
    key("username", Kind::Text),
    key("password_file", Kind::Text),
    key("password_env", Kind::Text),
];
pub(super) const BATCH: &[Key] = &[
    key("timeout", Kind::Text),
    key("batch_max_events", Kind::Count),
    key("batch_max_bytes", Kind::Count),
];

/// How a type turns its table into its settings (reporting every problem).
pub type Validator = fn(&mut Report, &Env, &str, &Fragment<'_>) -> Option<SinkKind>;

/// A sink type: its keys beyond [`COMMON`], in groups, and its validator.
#[derive(Debug, Clone, Copy)]
pub struct SinkType {
    pub name: &'static str,
    pub keys: &'static [&'static [Key]],
    pub validate: Validator,
}

impl SinkType {
    pub fn key(&self, name: &str) -> Option<Key> {
        self.keys
            .iter()
            .flat_map(|g| g.iter())
            .copied()
            .find(|k| k.name == name)
    }

    pub fn key_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.keys.iter().flat_map(|g| g.iter()).map(|k| k.name)
    }
}

pub const TYPES: [SinkType; 5] = [
    SinkType {
        name: "file",
        keys: &[&[text("path"), text("file_mode")]],
        validate: super::file,
    },
    SinkType {
        name: "stdout",
        keys: &[],
        validate: |_, _, _, _| Some(SinkKind::Stdout),
    },
    super::syslog::TYPE,
    super::http::TYPE,
    super::nats::TYPE,
];

/// `"file", "stdout", … or "nats"`, for messages.
pub fn type_names() -> String {
    let quoted: Vec<String> = TYPES.iter().map(|t| format!("{:?}", t.name)).collect();
    let (last, rest) = quoted
        .split_last()
        .map_or(("", &[][..]), |(l, r)| (l.as_str(), r));
    format!("{} or {last}", rest.join(", "))
}

/// Every key a `[[sink]]` may have (of one type or another), each once, in table order.
pub fn accepted_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = COMMON.iter().map(|k| k.name).collect();
    for name in TYPES.iter().flat_map(SinkType::key_names) {
        if !keys.contains(&name) {
            keys.push(name);
        }
    }
    keys
}

/// A `[[sink]]` table as its type's validator reads it.
pub struct Fragment<'a> {
    table: &'a toml::Table,
    sink_type: Option<SinkType>,
    /// The keys the validator asked for, so a test can show that none of a type's keys is
    /// accepted and then ignored.
    read: std::cell::RefCell<Vec<&'static str>>,
}

impl<'a> Fragment<'a> {
    pub fn new(table: &'a toml::Table, sink_type: Option<SinkType>) -> Fragment<'a> {
        Fragment {
            table,
            sink_type,
            read: Default::default(),
        }
    }

    fn declared(&self, name: &str) -> Option<Key> {
        COMMON
            .iter()
            .copied()
            .find(|k| k.name == name)
            .or_else(|| self.sink_type.and_then(|t| t.key(name)))
    }

    /// Reports every key that is not in the table for this type, or whose value has the wrong
    /// TOML type; false if a value had the wrong type (the others are reported, and the rest
    /// of the sink is still checked).
    pub fn check(&self, report: &mut Report, scope: &str) -> bool {
        let accepted = accepted_keys();
        let mut ok = true;
        for (name, value) in self.table {
            match self.declared(name) {
                Some(k) if k.kind.holds(value) => {}
                Some(k) => {
                    report.error(scope, name, format!("expected {}", k.kind.expected()));
                    ok = false;
                }
                None if !accepted.contains(&name.as_str()) => {
                    report.problems.push(format!(
                        "{scope}: unknown key `{name}` (valid keys: {})",
                        accepted.join(", ")
                    ));
                }
                None => {
                    if let Some(t) = self.sink_type {
                        report.error(
                            scope,
                            name,
                            format!(
                                "not used by a {} sink; remove it (or change `type`)",
                                t.name
                            ),
                        );
                    }
                }
            }
        }
        ok
    }

    pub fn sink_type(&self) -> Option<SinkType> {
        self.sink_type
    }

    /// Whether this type's table has the key (some keys are shared by types but not all).
    pub fn declares(&self, name: &str) -> bool {
        self.declared(name).is_some()
    }

    fn get(&self, name: &str) -> Option<&'a toml::Value> {
        let declared = self.declared(name);
        debug_assert!(declared.is_some(), "`{name}` is not in the sink key table");
        if let Some(k) = declared {
            self.read.borrow_mut().push(k.name);
        }
        self.table.get(name)
    }

    /// The type's keys that were never read.
    pub fn unread(&self) -> Vec<&'static str> {
        let read = self.read.borrow();
        self.sink_type
            .iter()
            .flat_map(SinkType::key_names)
            .filter(|k| !read.contains(k))
            .collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn str(&self, name: &str) -> Option<&'a str> {
        self.get(name)?.as_str()
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.str(name).map(str::to_string)
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        self.get(name)?.as_bool()
    }

    pub fn usize(&self, name: &str) -> Option<usize> {
        self.get(name)?
            .as_integer()
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub fn strings(&self, name: &str) -> Option<Vec<String>> {
        let items = self.get(name)?.as_array()?;
        Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        )
    }

    pub fn string_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let table = self.get(name)?.as_table()?;
        Some(
            table
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect(),
        )
    }
}
