//! OCSF 1.7.0: one class per Duo log kind and action (see README "Formats").
//!
//! Every event carries the base attributes (`class_uid`, `category_uid`, `activity_id`,
//! `type_uid = class_uid*100 + activity_id`, `severity_id`, `time` in ms, `metadata`) and an
//! `unmapped` object with every Duo field no OCSF attribute took (nulls included), plus the
//! collector's own `_duo_collector` metadata.

mod admin;
mod auth;
pub(crate) mod inventory;

pub(crate) use admin::{classify, is_user_target, Class};

use super::ip::split_ip;
use super::json::W;
use super::record::Rec;
use super::Ctx;
use crate::event::Event;
use crate::logs::LogKind;

pub(crate) const VERSION: &str = "1.7.0";

/// The class-level decisions, taken before the body is written.
pub(super) struct Head<'s> {
    pub class_uid: u32,
    pub activity_id: u32,
    /// Required with activity 99 (Other): the source's own label.
    pub activity_name: Option<&'s str>,
    pub severity_id: u8,
    /// The source's own name for the event (Duo's `action`), in `metadata.event_code`.
    pub event_code: Option<&'s str>,
}

pub(crate) fn render(ctx: &Ctx<'_>, event: &Event, w: &mut W<'_>) {
    let mut rec = Rec::parse(&event.raw).unwrap_or_default();
    w.top(|w| match ctx.log {
        LogKind::Authentication => auth::authentication(ctx, event, &mut rec, w),
        LogKind::TrustMonitor => auth::trust_monitor(ctx, event, &mut rec, w),
        LogKind::Administrator => admin::administrator(ctx, event, &mut rec, w),
        LogKind::Activity => admin::activity(ctx, event, &mut rec, w),
        LogKind::Telephony => admin::telephony(ctx, event, &mut rec, w),
        LogKind::OfflineEnrollment => admin::offline_enrollment(ctx, event, &mut rec, w),
    });
}

/// The base attributes and `metadata`.
pub(super) fn head(
    w: &mut W<'_>,
    ctx: &Ctx<'_>,
    event: &Event,
    h: &Head<'_>,
    original_time: Option<&str>,
    correlation_uid: Option<&str>,
) {
    w.num("class_uid", i64::from(h.class_uid));
    w.num("category_uid", i64::from(h.class_uid / 1000));
    w.num("activity_id", i64::from(h.activity_id));
    if h.activity_id == 99 {
        w.opt_str("activity_name", h.activity_name);
    }
    w.num(
        "type_uid",
        i64::from(h.class_uid) * 100 + i64::from(h.activity_id),
    );
    w.num("severity_id", i64::from(h.severity_id));
    w.num("time", event.ts_ms);
    w.obj("metadata", |w| {
        w.str("version", VERSION);
        w.str("uid", &event.event_id);
        w.opt_str("correlation_uid", correlation_uid);
        w.opt_str("event_code", h.event_code);
        w.obj("product", |w| {
            w.str("name", "Duo");
            w.str("vendor_name", "Cisco");
        });
        w.str("log_name", ctx.log.as_str());
        w.str("log_provider", "Duo Admin API");
        w.opt_str("tenant_uid", ctx.account_id);
        w.opt_str("original_time", original_time);
        if let Some(t) = ctx.processed_ms {
            w.num("processed_time", t);
        }
    });
}

/// `unmapped`: the Duo fields no attribute took, then `_duo_collector`.
pub(super) fn unmapped(
    w: &mut W<'_>,
    ctx: &Ctx<'_>,
    event: &Event,
    rec: &Rec<'_>,
    extra: impl FnOnce(&mut W<'_>),
) {
    w.obj("unmapped", |w| {
        w.leftovers(rec);
        extra(w);
        ctx.write_collector(w, event);
    });
}

/// `status_id` from an outcome word; `status_code` keeps the word itself.
pub(super) fn status(w: &mut W<'_>, code: Option<&str>, detail: Option<&str>) {
    let id = match code.map(str::to_ascii_lowercase).as_deref() {
        Some("success") => 1,
        Some("denied" | "fraud" | "failure" | "error") => 2,
        Some(_) => 99,
        None => 0,
    };
    w.num("status_id", id);
    if id == 99 {
        w.opt_str("status", code);
    }
    w.opt_str("status_code", code);
    w.opt_str("status_detail", detail);
}

/// OCSF `os.type_id` for a Duo OS name.
fn os_type(name: &str) -> u32 {
    let n = name.to_ascii_lowercase();
    if n.contains("windows phone") {
        101
    } else if n.contains("windows") {
        100
    } else if n.contains("android") {
        201
    } else if n.contains("linux") || n.contains("chrome os") {
        200
    } else if n.contains("ipados") {
        302
    } else if n.contains("ios") {
        301
    } else if n.contains("mac") {
        300
    } else {
        99
    }
}

/// A Duo `location` object as OCSF `location`; the country goes to `country` only when it is
/// an ISO 3166 code (Duo sends names, which stay in `unmapped`).
pub(super) fn location(w: &mut W<'_>, key: &str, loc: Option<&mut Rec<'_>>) {
    let Some(loc) = loc else { return };
    let city = loc.text("city");
    let region = loc.text("state");
    let country = loc
        .peek_str("country")
        .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()));
    if country.is_some() {
        loc.mark("country");
    }
    w.obj(key, |w| {
        w.opt_str("city", city.as_deref());
        w.opt_str("region", region.as_deref());
        w.opt_str("country", country.as_deref());
    });
}

/// Where the port of an address goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Port {
    /// Next to `ip` (`network_endpoint.port`).
    Attribute,
    /// The object has no port attribute (`device`): into `unmapped`, next to the Duo field.
    Unmapped,
}

/// The IP of an endpoint (Duo's `ip`, or Activity's `ip: {address}`) as `ip`, and its port
/// (see [`Port`]). A plain address is consumed; any other text (with a port, or no address
/// at all) also stays as it came in `unmapped`, and never reaches `ip`.
pub(super) fn ip_fields(w: &mut W<'_>, rec: &mut Rec<'_>, key: &str, port_to: Port) {
    let Some(text) = rec.peek_str(key) else {
        if let Some(addr) = rec.child(key) {
            ip_fields(w, addr, "address", port_to);
        }
        return;
    };
    let Some(hp) = split_ip(&text) else { return };
    if hp.is_plain(&text) {
        rec.mark(key);
    }
    w.str("ip", hp.ip);
    match (hp.port, port_to) {
        (Some(p), Port::Attribute) => w.num("port", i64::from(p)),
        (Some(p), Port::Unmapped) => rec.add("port", p.to_string()),
        (None, _) => {}
    }
}

/// A Duo `access_device` as an OCSF `network_endpoint`.
pub(super) fn endpoint(w: &mut W<'_>, key: &str, ad: Option<&mut Rec<'_>>) {
    let Some(ad) = ad else { return };
    w.obj(key, |w| {
        ip_fields(w, ad, "ip", Port::Attribute);
        if let Some(h) = ad.text("hostname") {
            w.str("hostname", &h);
        }
        if let Some(uid) = ad.text("epkey") {
            w.str("uid", &uid);
        }
        location(w, "location", ad.child("location"));
        if let Some(os) = ad.text("os") {
            let version = ad.text("os_version");
            w.obj("os", |w| {
                w.str("name", &os);
                w.num("type_id", i64::from(os_type(&os)));
                w.opt_str("version", version.as_deref());
            });
        }
    });
}

/// OCSF `user` from a Duo `{name, key, groups}` object (plus an e-mail address).
pub(super) fn user(
    w: &mut W<'_>,
    key: &str,
    u: Option<&mut Rec<'_>>,
    email: Option<&str>,
    type_id: u8,
) {
    let (name, uid, groups) = match u {
        Some(u) => (u.text("name"), u.text("key"), u.strings("groups")),
        None => (None, None, None),
    };
    user_fields(
        w,
        key,
        name.as_deref(),
        uid.as_deref(),
        email,
        groups,
        type_id,
    );
}

pub(super) fn user_fields(
    w: &mut W<'_>,
    key: &str,
    name: Option<&str>,
    uid: Option<&str>,
    email: Option<&str>,
    groups: Option<Vec<std::borrow::Cow<'_, str>>>,
    type_id: u8,
) {
    w.obj(key, |w| {
        // OCSF requires a name or uid; a record without either gets an explicit placeholder.
        if name.is_none() && uid.is_none() {
            w.str("name", "unknown");
        }
        w.opt_str("name", name);
        w.opt_str("uid", uid);
        w.opt_str("email_addr", email);
        if let Some(groups) = &groups {
            w.arr("groups", |w| {
                for g in groups {
                    w.item_obj(|w| w.str("name", g));
                }
            });
        }
        w.num("type_id", i64::from(type_id));
    });
}

/// OCSF `user.type_id` for a Duo admin-log `username`.
pub(super) fn admin_type(username: &str) -> u8 {
    match username {
        "API" => 4,
        "System" => 3,
        u if u.starts_with("AD Sync") => 3,
        _ => 2,
    }
}
