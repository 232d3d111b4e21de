//! Elastic Common Schema, as Elastic's own Cisco Duo integration maps the logs: `event.*`,
//! `user.*`, `source.*`, `user_agent.*`, `related.*`; every Duo field without an ECS home
//! under `cisco_duo.<kind>` (Elastic's names: `auth`, `admin`, `telephony`, `activity`,
//! `trust_monitor`, `offline_enrollment`), the collector's metadata under
//! `cisco_duo.collector`.

use std::borrow::Cow;

use super::ip::split_ip;
use super::json::W;
use super::ocsf::{classify, is_user_target, Class};
use super::record::{embedded_object, Rec};
use super::Ctx;
use crate::event::Event;
use crate::logs::LogKind;

pub(crate) const ECS_VERSION: &str = "8.11.0";

fn dataset(log: LogKind) -> &'static str {
    match log {
        LogKind::Authentication => "auth",
        LogKind::Administrator => "admin",
        LogKind::Telephony => "telephony",
        LogKind::Activity => "activity",
        LogKind::TrustMonitor => "trust_monitor",
        LogKind::OfflineEnrollment => "offline_enrollment",
    }
}

/// What the kind-specific part found, written in a fixed order afterwards.
#[derive(Default)]
struct Out<'a> {
    kind: &'static str,
    category: &'static str,
    types: Vec<&'static str>,
    action: Option<Cow<'a, str>>,
    outcome: Option<&'static str>,
    reason: Option<Cow<'a, str>>,
    message: Option<Cow<'a, str>>,
    user_name: Option<Cow<'a, str>>,
    user_id: Option<Cow<'a, str>>,
    user_email: Option<Cow<'a, str>>,
    groups: Option<Vec<Cow<'a, str>>>,
    target_name: Option<Cow<'a, str>>,
    target_id: Option<Cow<'a, str>>,
    source: Source<'a>,
    ua_name: Option<Cow<'a, str>>,
    ua_version: Option<Cow<'a, str>>,
    ua_original: Option<String>,
    os_name: Option<Cow<'a, str>>,
    os_version: Option<Cow<'a, str>>,
    host_name: Option<String>,
    url: Option<Cow<'a, str>>,
    related_ips: Vec<String>,
}

#[derive(Default)]
struct Source<'a> {
    ip: Option<String>,
    port: Option<u16>,
    address: Option<String>,
    domain: Option<Cow<'a, str>>,
    city: Option<Cow<'a, str>>,
    region: Option<Cow<'a, str>>,
    country: Option<Cow<'a, str>>,
}

/// A JSON string.
fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Takes a device's `ip` value out of the pass-through part unless it is a plain address:
/// an Elasticsearch index types `cisco_duo.*.ip` as `ip` and would reject anything else.
/// Whatever was not a plain address is kept as it came under `address`. Returns the text.
fn take_unless_plain(dev: &mut Rec<'_>, key: &str) -> Option<String> {
    let raw = dev.peek(key)?;
    let Some(text) = dev.peek_str(key) else {
        // A number, boolean or array where an address belongs.
        if !raw.get().starts_with('{') {
            dev.mark(key);
            dev.add("address", raw.get().to_owned());
        }
        return None;
    };
    let plain = split_ip(&text).is_some_and(|hp| hp.is_plain(&text));
    if !plain {
        dev.mark(key);
        dev.add("address", json_str(&text));
    }
    Some(text.into_owned())
}

/// `source.*` and `user_agent.*` from a Duo `access_device`: the address and port of `ip`
/// (or Activity's `ip.address`) go to `source.ip`/`source.port`; the text as it came to
/// `source.address` (unless there is a hostname) and, when it is not a plain address, to
/// `cisco_duo.<kind>.access_device.address`.
fn access_device<'a>(o: &mut Out<'a>, ad: Option<&mut Rec<'a>>) {
    let Some(ad) = ad else { return };
    let text = match ad.peek_str("ip") {
        Some(_) => take_unless_plain(ad, "ip"),
        None => {
            let nested = ad.child("ip").and_then(|i| {
                let text = i.peek_str("address")?.into_owned();
                i.mark("address");
                Some(text)
            });
            match nested {
                Some(text) => {
                    if !split_ip(&text).is_some_and(|hp| hp.is_plain(&text)) {
                        ad.add("address", json_str(&text));
                    }
                    Some(text)
                }
                None => take_unless_plain(ad, "ip"),
            }
        }
    };
    if let Some(text) = text {
        if let Some(hp) = split_ip(&text) {
            o.source.ip = Some(hp.ip.to_string());
            o.source.port = hp.port;
            o.related_ips.push(hp.ip.to_string());
        }
        ad.mark("ip");
        o.source.address = Some(text);
    }
    o.source.domain = ad.text("hostname");
    if let Some(loc) = ad.child("location") {
        o.source.city = loc.text("city");
        o.source.region = loc.text("state");
        o.source.country = loc.text("country");
    }
    o.ua_name = ad.text("browser");
    o.ua_version = ad.text("browser_version");
    o.os_name = ad.text("os");
    o.os_version = ad.text("os_version");
}

/// A Duo `auth_device`: its address goes to `related.ip`; in `cisco_duo.<kind>.auth_device`,
/// `ip` keeps only an address and `port` its port (as Elastic's pipeline splits them), and
/// any other text stays under `address`.
fn auth_device(o: &mut Out<'_>, dev: Option<&mut Rec<'_>>) {
    let Some(dev) = dev else { return };
    let Some(text) = take_unless_plain(dev, "ip") else {
        return;
    };
    let Some(hp) = split_ip(&text) else { return };
    o.related_ips.push(hp.ip.to_string());
    if !hp.is_plain(&text) {
        dev.add("ip", json_str(hp.ip));
        if let Some(p) = hp.port {
            dev.add("port", p.to_string());
        }
    }
}

fn auth_record<'a>(o: &mut Out<'a>, rec: &mut Rec<'a>) {
    let result = rec.peek_str("result");
    o.outcome = result
        .as_deref()
        .map(|r| if r == "success" { "success" } else { "failure" });
    if o.reason.is_none() {
        o.reason = rec.text("reason");
    }
    if o.action.is_none() {
        o.action = rec.text("event_type");
    }
    if let Some(u) = rec.child("user") {
        o.user_name = u.text("name");
        o.user_id = u.text("key");
        o.groups = u.strings("groups");
    }
    o.user_email = rec.text("email");
    access_device(o, rec.child("access_device"));
    auth_device(o, rec.child("auth_device"));
    // `result` itself stays under cisco_duo.auth, as Elastic keeps it.
    if let Some(r) = result {
        o.message
            .get_or_insert(Cow::Owned(format!("Duo authentication {r}")));
    }
}

fn iam_types(action: &str) -> Vec<&'static str> {
    let a = action.to_ascii_lowercase();
    let mut t = Vec::new();
    if a.starts_with("admin") {
        t.push("admin");
    } else if a.starts_with("group") {
        t.push("group");
    } else if a.starts_with("user") || a.starts_with("o2fa_user") {
        t.push("user");
    }
    if a.contains("create") || a.contains("provisioned") && !a.contains("deprovisioned") {
        t.push("creation");
    } else if a.contains("delete") || a.contains("deprovisioned") {
        t.push("deletion");
    } else if a.contains("update") || a.contains("reenrolled") {
        t.push("change");
    } else {
        t.push("info");
    }
    t
}

fn admin_like<'a>(o: &mut Out<'a>, action: &str) {
    match classify(action) {
        Class::Login { failed } => {
            o.category = "authentication";
            o.types = vec!["start"];
            o.outcome = Some(if failed { "failure" } else { "success" });
        }
        _ => {
            o.category = "iam";
            o.types = iam_types(action);
        }
    }
}

/// `event.outcome` of an administrator action: Duo logs what was done, so success, except
/// for the failed logins and failed directory syncs (as Elastic's pipeline decides).
fn admin_outcome(action: &str) -> &'static str {
    let a = action.to_ascii_lowercase();
    let failed = matches!(classify(&a), Class::Login { failed: true })
        || a.contains("sync_fail")
        || a.ends_with("_failed");
    if failed {
        "failure"
    } else {
        "success"
    }
}

/// The values in order, each once.
fn once<'x>(values: impl IntoIterator<Item = &'x str>) -> Vec<&'x str> {
    let mut out: Vec<&str> = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

pub(crate) fn render(ctx: &Ctx<'_>, event: &Event, w: &mut W<'_>) {
    let mut rec = Rec::parse(&event.raw).unwrap_or_default();
    let mut o = Out {
        kind: "event",
        category: "authentication",
        types: vec!["info"],
        ..Out::default()
    };
    let mut desc_holder: Option<Cow<'_, str>> = None;
    match ctx.log {
        LogKind::Authentication => {
            if rec.peek_str("txid").as_deref() == Some(event.event_id.as_str()) {
                rec.mark("txid");
            }
            auth_record(&mut o, &mut rec);
        }
        LogKind::Administrator | LogKind::OfflineEnrollment => {
            o.action = rec.text("action");
            let action = o.action.as_deref().unwrap_or("").to_string();
            if ctx.log == LogKind::OfflineEnrollment {
                o.category = "iam";
                o.types = iam_types(&action);
            } else {
                admin_like(&mut o, &action);
                if o.action.is_some() {
                    o.outcome = Some(admin_outcome(&action));
                }
                // The object is a user only for account actions (else a phone, an integration…).
                if classify(&action) == Class::Account {
                    o.target_name = rec.text("object");
                }
            }
            o.user_name = rec.text("username");
            desc_holder = rec.str("description");
        }
        LogKind::Activity => {
            o.action = match rec.peek_str("action") {
                Some(_) => rec.text("action"),
                None => rec.child("action").and_then(|a| a.text("name")),
            };
            let action = o.action.as_deref().unwrap_or("").to_string();
            admin_like(&mut o, &action);
            if let Some(a) = rec.child("actor") {
                o.user_name = a.text("name");
                o.user_id = a.text("key");
            }
            if let Some(t) = rec.child("target") {
                if is_user_target(t.peek_str("type").as_deref()) {
                    o.target_name = t.text("name");
                    o.target_id = t.text("key");
                }
            }
            // JSON documents sent as strings (Elastic maps them as `flattened` objects).
            for key in ["actor", "target", "old_target"] {
                if let Some(x) = rec.child(key) {
                    x.parse_embedded("details");
                }
            }
            if let Some(r) = rec.child("outcome").and_then(|x| x.peek_str("result")) {
                o.outcome = Some(if r.eq_ignore_ascii_case("success") {
                    "success"
                } else {
                    "failure"
                });
            }
            if rec.peek_str("activity_id").as_deref() == Some(event.event_id.as_str()) {
                rec.mark("activity_id");
            }
            access_device(&mut o, rec.child("access_device"));
        }
        LogKind::Telephony => {
            o.category = "network";
            o.types = vec!["info"];
            o.action = rec.text("context");
            if rec.peek_str("telephony_id").as_deref() == Some(event.event_id.as_str()) {
                rec.mark("telephony_id");
            }
        }
        LogKind::TrustMonitor => {
            o.kind = "alert";
            o.category = "intrusion_detection";
            o.types = vec!["indicator"];
            o.action = rec.text("type");
            o.url = rec.text("triage_event_uri");
            if let Some(first) = rec.peek_array("explanations").first() {
                if let Some(s) = Rec::parse(first.get()).and_then(|e| e.peek_str("summary")) {
                    o.message = Some(Cow::Owned(s.into_owned()));
                }
            }
            if let Some(auth) = rec.child("surfaced_auth") {
                auth_record(&mut o, auth);
                o.outcome = None;
            } else if let Some(u) = rec.child("enabled_for") {
                o.user_name = u.text("name");
                o.user_id = u.text("key");
            }
        }
    }
    if let Some(d) = &desc_holder {
        o.message = Some(d.clone());
    }
    let desc_obj = desc_holder.as_deref().and_then(embedded_object);
    let desc = desc_obj.and_then(Rec::parse);
    if let Some(d) = &desc {
        if let Some(text) = d.peek_str("ip_address") {
            if let Some(hp) = split_ip(&text) {
                o.source.ip = Some(hp.ip.to_string());
                o.source.port = hp.port;
                o.related_ips.push(hp.ip.to_string());
            }
        }
        o.host_name = d.peek_str("hostname").map(|s| s.into_owned());
        o.ua_original = d.peek_str("user_agent").map(|s| s.into_owned());
    }
    write(ctx, event, &rec, &o, desc_obj, w);
}

fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
}

fn write(
    ctx: &Ctx<'_>,
    event: &Event,
    rec: &Rec<'_>,
    o: &Out<'_>,
    desc: Option<&str>,
    w: &mut W<'_>,
) {
    let ds = dataset(ctx.log);
    w.top(|w| {
        w.str("@timestamp", &iso_ms(event.ts_ms));
        w.obj("ecs", |w| w.str("version", ECS_VERSION));
        w.obj("event", |w| {
            w.str("id", &event.event_id);
            w.str("kind", o.kind);
            w.arr("category", |w| w.item_str(o.category));
            w.arr("type", |w| {
                for t in &o.types {
                    w.item_str(t);
                }
            });
            w.opt_str("action", o.action.as_deref());
            w.opt_str("outcome", o.outcome);
            w.opt_str("reason", o.reason.as_deref());
            w.str("module", "cisco_duo");
            w.str("dataset", &format!("cisco_duo.{ds}"));
            w.str("provider", ds);
            w.str("created", ctx.collected_at);
        });
        w.opt_str("message", o.message.as_deref());
        w.obj("user", |w| {
            w.opt_str("name", o.user_name.as_deref());
            w.opt_str("id", o.user_id.as_deref());
            w.opt_str("email", o.user_email.as_deref());
            w.obj("target", |w| {
                w.opt_str("name", o.target_name.as_deref());
                w.opt_str("id", o.target_id.as_deref());
            });
        });
        w.obj("source", |w| {
            let s = &o.source;
            w.opt_str("ip", s.ip.as_deref());
            if let Some(p) = s.port {
                w.num("port", i64::from(p));
            }
            w.opt_str("address", s.domain.as_deref().or(s.address.as_deref()));
            w.opt_str("domain", s.domain.as_deref());
            w.obj("geo", |w| {
                w.opt_str("city_name", s.city.as_deref());
                w.opt_str("region_name", s.region.as_deref());
                w.opt_str("country_name", s.country.as_deref());
            });
            if let Some(groups) = &o.groups {
                w.obj("user", |w| {
                    w.obj("group", |w| {
                        w.arr("name", |w| {
                            for g in groups {
                                w.item_str(g);
                            }
                        })
                    })
                });
            }
        });
        w.obj("host", |w| w.opt_str("hostname", o.host_name.as_deref()));
        w.obj("user_agent", |w| {
            w.opt_str("original", o.ua_original.as_deref());
            w.opt_str("name", o.ua_name.as_deref());
            w.opt_str("version", o.ua_version.as_deref());
            w.obj("os", |w| {
                w.opt_str("name", o.os_name.as_deref());
                w.opt_str("version", o.os_version.as_deref());
            });
        });
        w.obj("url", |w| w.opt_str("original", o.url.as_deref()));
        w.obj("related", |w| {
            w.arr("ip", |w| {
                for ip in once(o.related_ips.iter().map(String::as_str)) {
                    w.item_str(ip);
                }
            });
            w.arr("user", |w| {
                for u in once(
                    [o.user_name.as_deref(), o.target_name.as_deref()]
                        .into_iter()
                        .flatten(),
                ) {
                    w.item_str(u);
                }
            });
            w.arr("hosts", |w| {
                for h in once(
                    [o.source.domain.as_deref(), o.host_name.as_deref()]
                        .into_iter()
                        .flatten(),
                ) {
                    w.item_str(h);
                }
            });
        });
        w.obj("cisco_duo", |w| {
            w.obj(ds, |w| {
                w.leftovers(rec);
                if let Some(d) = desc {
                    w.raw_text("description", d);
                }
            });
            w.obj("collector", |w| ctx.collector_fields(w, event));
        });
    });
}
