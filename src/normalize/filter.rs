//! `exclude_fields` for text that is passed through: the `raw` format and raw subtrees inside
//! the other formats. Only used when a sink configures exclusions.

use serde_json::Value;

/// The excluded paths below `path`, relative to it (`path` = `a.b`, exclude `a.b.c.d` → `c.d`).
pub(crate) fn nested_exclusions<'e>(excl: &'e [String], path: &str) -> Vec<&'e str> {
    if excl.is_empty() {
        return Vec::new();
    }
    excl.iter()
        .filter_map(|e| {
            if path.is_empty() {
                Some(e.as_str())
            } else {
                e.strip_prefix(path).and_then(|r| r.strip_prefix('.'))
            }
        })
        .collect()
}

/// Removes a dotted path from a value; arrays apply the rest of the path to each element.
pub(crate) fn remove_path(v: &mut Value, path: &str) {
    match v {
        Value::Object(map) => match path.split_once('.') {
            None => {
                map.remove(path);
            }
            Some((head, rest)) => {
                if let Some(child) = map.get_mut(head) {
                    remove_path(child, rest);
                }
            }
        },
        Value::Array(items) => {
            for item in items {
                remove_path(item, path);
            }
        }
        _ => {}
    }
}

/// Writes JSON `text` with `paths` removed.
pub(crate) fn write_filtered(out: &mut Vec<u8>, text: &str, paths: &[&str]) {
    match serde_json::from_str::<Value>(text) {
        Ok(mut v) => {
            for p in paths {
                remove_path(&mut v, p);
            }
            // Serializing a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &v);
        }
        Err(_) => out.extend_from_slice(text.as_bytes()),
    }
}
