//! ArcSight CEF: `CEF:0|Cisco|Duo|<version>|<log>:<action>|<name>|<severity>|<extension>`.
//!
//! Escaping follows the CEF specification: in the header `\` and `|` are escaped with a
//! backslash (a line break becomes a space); in the extension `\`, `=` and line breaks
//! (`\n`, `\r`) are. Every log kind has a full key map (README "Formats"); custom strings
//! always come with their `csNLabel`. `cs5`/`cs6`/`flexString1` carry the collector's
//! integration, account id and account name.

use std::borrow::Cow;

use super::ip::split_ip;
use super::record::{embedded_object, Rec};
use super::Ctx;
use crate::event::Event;
use crate::logs::LogKind;

pub(super) fn push_header(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.extend_from_slice(b"\\\\"),
            '|' => out.extend_from_slice(b"\\|"),
            '\n' | '\r' => out.push(b' '),
            c => {
                let mut b = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

pub(super) fn push_ext_value(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.extend_from_slice(b"\\\\"),
            '=' => out.extend_from_slice(b"\\="),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            c => {
                let mut b = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

/// The extension, in order; `(key, value)`.
#[derive(Default)]
struct Ext<'a> {
    pairs: Vec<(&'static str, Cow<'a, str>)>,
}

impl<'a> Ext<'a> {
    fn put(&mut self, key: &'static str, v: Option<Cow<'a, str>>) {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            self.pairs.push((key, v));
        }
    }

    fn put_s(&mut self, key: &'static str, v: impl Into<String>) {
        self.put(key, Some(Cow::Owned(v.into())));
    }

    /// A custom string and its label (`cs1` + `cs1Label`).
    fn cs(&mut self, n: u8, label: &'static str, v: Option<Cow<'a, str>>) {
        const KEYS: [(&str, &str); 6] = [
            ("cs1", "cs1Label"),
            ("cs2", "cs2Label"),
            ("cs3", "cs3Label"),
            ("cs4", "cs4Label"),
            ("cs5", "cs5Label"),
            ("cs6", "cs6Label"),
        ];
        let Some((k, l)) = KEYS.get(usize::from(n.saturating_sub(1))) else {
            return;
        };
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            self.pairs.push((k, v));
            self.pairs.push((l, Cow::Borrowed(label)));
        }
    }

    fn endpoint(&mut self, ad: Option<&mut Rec<'a>>) {
        let Some(ad) = ad else { return };
        let ip = match ad.peek_str("ip") {
            Some(s) => Some(s),
            None => ad.child("ip").and_then(|i| i.peek_str("address")),
        };
        if let Some(hp) = ip.as_deref().and_then(split_ip) {
            self.put_s("src", hp.ip);
            if let Some(p) = hp.port {
                self.put_s("spt", p.to_string());
            }
        }
        self.put("shost", ad.peek_str("hostname"));
        let browser = [ad.peek_str("browser"), ad.peek_str("browser_version")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        self.put_s("requestClientApplication", browser);
        if let Some(loc) = ad.child("location") {
            let place = [
                loc.peek_str("city"),
                loc.peek_str("state"),
                loc.peek_str("country"),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
            if !place.is_empty() {
                self.put_s("flexString2", place);
                self.put_s("flexString2Label", "sourceLocation");
            }
        }
    }
}

fn auth<'a>(e: &mut Ext<'a>, rec: &mut Rec<'a>) -> (String, u8) {
    let result = rec.peek_str("result");
    e.put("act", rec.peek_str("event_type"));
    e.put("outcome", result.clone());
    e.put("reason", rec.peek_str("reason"));
    let (mut app_name, mut app_key) = (None, None);
    if let Some(u) = rec.child("user") {
        e.put("suser", u.peek_str("name"));
        e.put("suid", u.peek_str("key"));
    }
    e.endpoint(rec.child("access_device"));
    if let Some(a) = rec.child("application") {
        app_name = a.peek_str("name");
        app_key = a.peek_str("key");
    }
    e.put("destinationServiceName", app_name);
    e.cs(1, "authFactor", rec.peek_str("factor"));
    e.cs(2, "applicationKey", app_key);
    let groups = rec
        .child("user")
        .and_then(|u| u.strings("groups"))
        .map(|g| g.join(", "));
    e.cs(3, "userGroups", groups.map(Cow::Owned));
    e.cs(
        4,
        "authDevice",
        rec.child("auth_device").and_then(|d| d.peek_str("name")),
    );
    e.put("duser", rec.peek_str("email"));
    let r = result.as_deref().unwrap_or("unknown").to_string();
    let sev = match r.as_str() {
        "denied" => 6,
        "fraud" => 9,
        _ => 3,
    };
    (r, sev)
}

pub(crate) fn render(ctx: &Ctx<'_>, event: &Event, exclude: &[String], out: &mut Vec<u8>) {
    let mut rec = Rec::parse(&event.raw).unwrap_or_default();
    let mut e = Ext::default();
    e.put_s("rt", event.ts_ms.to_string());
    e.put("externalId", Some(Cow::Borrowed(event.event_id.as_str())));
    e.put_s("cat", ctx.log.as_str());
    if let Some(t) = ctx.processed_ms {
        e.put_s("art", t.to_string());
    }
    let desc_holder;
    let (what, name, severity): (String, String, u8) = match ctx.log {
        LogKind::Authentication => {
            let (r, sev) = auth(&mut e, &mut rec);
            (r.clone(), format!("Duo authentication {r}"), sev)
        }
        LogKind::Administrator | LogKind::OfflineEnrollment => {
            let action = rec.peek_str("action");
            let a = action.as_deref().unwrap_or("unknown").to_string();
            e.put("act", action);
            e.put("suser", rec.peek_str("username"));
            desc_holder = rec.peek_str("description");
            let desc = desc_holder
                .as_deref()
                .and_then(embedded_object)
                .and_then(Rec::parse);
            e.put("msg", desc_holder.clone());
            let mut sev = 3;
            if ctx.log == LogKind::Administrator {
                e.put("duser", rec.peek_str("object"));
                if let Some(d) = &desc {
                    if let Some(hp) = d.peek_str("ip_address").as_deref().and_then(split_ip) {
                        e.put_s("src", hp.ip);
                        if let Some(p) = hp.port {
                            e.put_s("spt", p.to_string());
                        }
                    }
                    e.cs(1, "adminError", d.peek_str("error"));
                    e.cs(2, "adminFactor", d.peek_str("factor"));
                }
                if a.ends_with("_error") {
                    sev = 6;
                }
                (a.clone(), format!("Duo admin action {a}"), sev)
            } else {
                e.put("destinationServiceName", rec.peek_str("object"));
                if let Some(d) = &desc {
                    e.put("shost", d.peek_str("hostname"));
                    e.put("requestClientApplication", d.peek_str("user_agent"));
                    e.cs(1, "enrollmentFactor", d.peek_str("factor"));
                }
                (a.clone(), format!("Duo offline enrollment {a}"), sev)
            }
        }
        LogKind::Activity => {
            let action = match rec.peek_str("action") {
                Some(a) => Some(a),
                None => rec.child("action").and_then(|a| a.peek_str("name")),
            };
            let a = action.as_deref().unwrap_or("unknown").to_string();
            e.put("act", action);
            if let Some(x) = rec.child("actor") {
                e.put("suser", x.peek_str("name"));
                e.put("suid", x.peek_str("key"));
                e.cs(3, "actorType", x.peek_str("type"));
            }
            if let Some(t) = rec.child("target") {
                e.put("duser", t.peek_str("name"));
                e.put("duid", t.peek_str("key"));
                e.cs(1, "targetType", t.peek_str("type"));
            }
            let result = rec.child("outcome").and_then(|o| o.peek_str("result"));
            let failed = result
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case("failure"));
            e.put("outcome", result);
            e.endpoint(rec.child("access_device"));
            if let Some(app) = rec.child("application") {
                e.put("destinationServiceName", app.peek_str("name"));
                e.cs(2, "applicationKey", app.peek_str("key"));
            }
            e.cs(4, "duoAccountKey", rec.peek_str("akey"));
            (
                a.clone(),
                format!("Duo activity {a}"),
                if failed { 6 } else { 3 },
            )
        }
        LogKind::Telephony => {
            let kind = rec.peek_str("type");
            let k = kind.as_deref().unwrap_or("unknown").to_string();
            e.put("act", kind);
            e.cs(1, "telephonyContext", rec.peek_str("context"));
            if let Some(c) = rec.peek_int("credits") {
                e.put_s("cn1", c.to_string());
                e.put_s("cn1Label", "credits");
            }
            e.cs(2, "phoneNumber", rec.peek_str("phone"));
            e.cs(3, "authTxid", rec.peek_str("txid"));
            (k.clone(), format!("Duo telephony {k}"), 3)
        }
        LogKind::TrustMonitor => {
            let kind = rec.peek_str("type");
            let k = kind.as_deref().unwrap_or("unknown").to_string();
            e.put("act", kind);
            let mut summaries = Vec::new();
            let mut types = Vec::new();
            for x in rec.peek_array("explanations") {
                if let Some(x) = Rec::parse(x.get()) {
                    summaries.extend(x.peek_str("summary").map(Cow::into_owned));
                    types.extend(x.peek_str("type").map(Cow::into_owned));
                }
            }
            e.put_s("msg", summaries.join(" "));
            e.cs(1, "explanationTypes", Some(Cow::Owned(types.join(","))));
            e.cs(2, "triageState", rec.peek_str("state"));
            let priority = rec.peek("priority_event").map(|r| r.get() == "true");
            e.cs(
                3,
                "priorityEvent",
                priority.map(|p| Cow::Owned(p.to_string())),
            );
            e.put("request", rec.peek_str("triage_event_uri"));
            if let Some(a) = rec.child("surfaced_auth") {
                e.cs(4, "surfacedAuthTxid", a.peek_str("txid"));
                if let Some(u) = a.child("user") {
                    e.put("suser", u.peek_str("name"));
                    e.put("suid", u.peek_str("key"));
                }
                e.endpoint(a.child("access_device"));
            } else if let Some(u) = rec.child("enabled_for") {
                e.put("suser", u.peek_str("name"));
                e.put("suid", u.peek_str("key"));
            }
            let sev = if priority == Some(true) { 8 } else { 5 };
            (k.clone(), format!("Duo Trust Monitor {k}"), sev)
        }
    };
    e.cs(
        5,
        "duoCollectorIntegration",
        Some(Cow::Borrowed(ctx.integration)),
    );
    e.cs(6, "duoAccountId", ctx.account_id.map(Cow::Borrowed));
    if let Some(n) = ctx.account_name {
        e.put_s("flexString1", n);
        e.put_s("flexString1Label", "duoAccountName");
    }

    out.extend_from_slice(b"CEF:0|Cisco|Duo|");
    push_header(out, env!("CARGO_PKG_VERSION"));
    out.push(b'|');
    push_header(out, &format!("{}:{}", ctx.log.as_str(), what));
    out.push(b'|');
    push_header(out, &name);
    out.push(b'|');
    out.extend_from_slice(severity.to_string().as_bytes());
    out.push(b'|');
    let mut first = true;
    for (k, v) in &e.pairs {
        let base = k.strip_suffix("Label").unwrap_or(k);
        if exclude.iter().any(|x| x == k || x == base) {
            continue;
        }
        if !first {
            out.push(b' ');
        }
        first = false;
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        push_ext_value(out, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_header_and_extension() {
        let mut h = Vec::new();
        push_header(&mut h, "a|b\\c\nd=e");
        assert_eq!(String::from_utf8(h).unwrap(), "a\\|b\\\\c d=e");
        let mut x = Vec::new();
        push_ext_value(&mut x, "a=b\\c\nd\re|f");
        assert_eq!(String::from_utf8(x).unwrap(), "a\\=b\\\\c\\nd\\re|f");
    }
}
