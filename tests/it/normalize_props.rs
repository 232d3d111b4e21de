//! Nothing is lost: for every log kind, every leaf value of a (randomly perturbed) simulator
//! record appears somewhere in the OCSF and in the ECS output; and no record, however
//! malformed, makes a formatter panic or emit invalid JSON.

use crate::fixtures::*;
use duo_collector::normalize::{render_one, Format};
use proptest::prelude::*;
use serde_json::{json, Value};

const ODD: &[&str] = &[
    "unknown",
    "[2001:db8::7]:8443",
    "198.51.100.9:65535",
    "fe80::1%eth0",
    "::",
    "not an ip",
    "Zoë | a=b \\ c\nd ☃ 🙂",
    "{\"embedded\":\"json\"}",
    "",
];

fn count_leaves(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.values().map(count_leaves).sum(),
        Value::Array(a) => a.iter().map(count_leaves).sum(),
        _ => 1,
    }
}

/// The `n`th leaf (depth first).
fn nth_leaf<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
    match v {
        Value::Object(m) => m.values_mut().find_map(|x| nth_leaf(x, n)),
        Value::Array(a) => a.iter_mut().find_map(|x| nth_leaf(x, n)),
        leaf => {
            if *n == 0 {
                Some(leaf)
            } else {
                *n -= 1;
                None
            }
        }
    }
}

/// Replaces leaf `i` (modulo the leaf count) by variant `p`: nulls, odd IPs, unicode, wrong
/// types, nested objects and arrays.
fn perturb(v: &mut Value, choices: &[(usize, usize)]) {
    for &(i, p) in choices {
        let count = count_leaves(v);
        if count == 0 {
            return;
        }
        let mut n = i % count;
        if let Some(leaf) = nth_leaf(v, &mut n) {
            *leaf = match p % 6 {
                0 => Value::Null,
                1 => json!(ODD[p % ODD.len()]),
                2 => json!(true),
                3 => json!(-17),
                4 => json!({"nested": ODD[p % ODD.len()], "n": 1.5}),
                _ => json!([ODD[p % ODD.len()], null]),
            };
        }
    }
}

fn out_leaves(line: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let mut l = Vec::new();
    leaves(&v, &mut l);
    l
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_leaf_survives_in_ocsf_and_ecs(
        seed in any::<u64>(),
        pick in 0usize..12,
        choices in proptest::collection::vec((0usize..200, 0usize..60), 0..6),
        msp in any::<bool>(),
    ) {
        for (kind, recs) in records(seed, 12) {
            let Some((id, ts, rec)) = recs.get(pick % recs.len().max(1)) else { continue };
            let mut rec = rec.clone();
            perturb(&mut rec, &choices);
            let stream = stream(kind, msp);
            let ev = event(id, *ts, &rec);
            let b = batch(&stream, &[], msp);
            let mut want = Vec::new();
            leaves(&rec, &mut want);
            for format in [Format::Ocsf, Format::Ecs] {
                let line = render_one(format, &b, &ev);
                let got = out_leaves(&line);
                for leaf in &want {
                    prop_assert!(got.contains(leaf), "{kind} {format}: {leaf:?} lost\nrecord {rec}\noutput {line}");
                }
            }
            // CEF and raw never panic and stay one line.
            for format in [Format::Cef, Format::Raw] {
                let line = render_one(format, &b, &ev);
                prop_assert!(!line.contains('\n'));
            }
        }
    }
}
