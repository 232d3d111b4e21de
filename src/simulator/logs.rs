//! The log endpoints: parameters, cursors, paging modes and the response body.

use serde_json::{json, Value};

use super::data::{Dataset, Ev, Kind, PageReq, Start};
use super::errors::ApiError;
use super::records;
use super::rng::{mix, unit_interval, uuid_str};
use super::{RecordedRequest, SimConfig};

const DAY_MS: i64 = 86_400_000;
const RETENTION_MS: i64 = 180 * DAY_MS;

pub fn first<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn all<'a>(params: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    params
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Does the request carry a cursor (`next_offset`, or `offset` for Trust Monitor and as v2's
/// alternative name)?
pub fn has_cursor(params: &[(String, String)]) -> bool {
    params
        .iter()
        .any(|(k, v)| (k == "next_offset" || k == "offset") && !v.trim().is_empty())
}

fn all_digits(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
}

/// `mintime`/`maxtime` in ms (v2 and Trust Monitor); the 180 days count from Duo's `now`.
fn parse_window(params: &[(String, String)], now: i64) -> Result<(i64, i64), ApiError> {
    let (Some(min), Some(max)) = (first(params, "mintime"), first(params, "maxtime")) else {
        let missing = if first(params, "mintime").is_none() {
            "mintime"
        } else {
            "maxtime"
        };
        return Err(ApiError::missing_params(missing));
    };
    let ms = |key: &str, v: &str| {
        if v.len() == 13 && all_digits(v) {
            v.parse::<i64>().ok()
        } else {
            None
        }
        .ok_or_else(|| ApiError::invalid(format!("'{key}' must be a timestamp in milliseconds")))
    };
    let (min, max) = (ms("mintime", min)?, ms("maxtime", max)?);
    if min < now - RETENTION_MS {
        return Err(ApiError::invalid(
            "mintime must be within the past 180 days",
        ));
    }
    if min >= max {
        return Err(ApiError::invalid("mintime must be less than maxtime"));
    }
    Ok((min, max))
}

fn parse_limit(params: &[(String, String)], default: usize, max: usize) -> Result<usize, ApiError> {
    match first(params, "limit") {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::invalid(format!("'limit' must be between 1 and {max}"))),
    }
}

/// `next_offset` as `"ms,id"` or the key repeated (`ms`, `id`); `offset` is accepted too.
fn parse_v2_cursor(params: &[(String, String)]) -> Result<Start, ApiError> {
    let mut vals = all(params, "next_offset");
    if vals.is_empty() {
        vals = all(params, "offset");
    }
    let joined = vals.join(",");
    if joined.trim().is_empty() {
        return Ok(Start::First);
    }
    let bad = || ApiError::invalid("Invalid next_offset");
    let (ms, id) = joined.split_once(',').ok_or_else(bad)?;
    let ms = ms.trim();
    if !all_digits(ms) {
        return Err(bad());
    }
    let ms = ms.parse::<i64>().map_err(|_| bad())?;
    let id = uuid::Uuid::parse_str(id.trim()).map_err(|_| bad())?;
    Ok(Start::After((ms, id.as_u128())))
}

/// Trust Monitor `offset`: "the offset from 0 at which to start record retrieval" (§2.8).
fn parse_tm_offset(params: &[(String, String)]) -> Result<Start, ApiError> {
    let Some(v) = first(params, "offset")
        .map(str::trim)
        .filter(|v| !v.is_empty())
    else {
        return Ok(Start::First);
    };
    if !all_digits(v) {
        return Err(ApiError::invalid("Invalid offset"));
    }
    v.parse::<usize>()
        .map(Start::Position)
        .map_err(|_| ApiError::invalid("Invalid offset"))
}

/// Should this page be short, and how short? A hash of the seeds and the parsed request, so a
/// retried request gets the same page.
fn shorten(cfg: &SimConfig, ds: &Dataset, kind: Kind, req: &PageReq, type_tag: u64) -> Option<u64> {
    if cfg.short_page_rate <= 0.0 {
        return None;
    }
    let (start_tag, a, b) = match req.start {
        Start::First => (0, 0, 0),
        Start::After((ms, id)) => (1, ms as u64, (id >> 64) as u64 ^ id as u64),
        Start::Position(n) => (2, n as u64, 0),
    };
    let h = [
        kind as u64,
        req.mintime as u64,
        req.maxtime as u64,
        req.limit as u64,
        u64::from(req.desc),
        start_tag,
        a,
        b,
        type_tag,
    ]
    .into_iter()
    .fold(mix(cfg.seed, ds.seed ^ 0x5_40A7), mix);
    (unit_interval(h) < cfg.short_page_rate).then(|| mix(h, 0xC07))
}

type EvFilter<'a> = Box<dyn Fn(&Ev) -> bool + 'a>;

/// A successful log response body, or the error for bad parameters. `now` is Duo's clock.
pub fn serve_log(
    cfg: &SimConfig,
    ds: &Dataset,
    kind: Kind,
    params: &[(String, String)],
    now: i64,
    rec: &mut RecordedRequest,
) -> Result<String, ApiError> {
    let kd = ds.kind(kind);
    let (mut req, filter, type_tag): (PageReq, EvFilter<'_>, u64) = match kind {
        Kind::Administrator | Kind::OfflineEnrollment => {
            let mintime = match first(params, "mintime").map(str::trim) {
                None | Some("") => 0,
                Some(v) if v.len() <= 10 && all_digits(v) => v.parse::<i64>().unwrap_or(0),
                Some(_) => {
                    return Err(ApiError::invalid(
                        "'mintime' must be a timestamp in seconds",
                    ))
                }
            };
            let req = PageReq {
                mintime: mintime * 1000,
                maxtime: now,
                limit: 1000,
                desc: false,
                start: Start::First,
                shorten: None,
            };
            (req, Box::new(|_| true), 0)
        }
        Kind::TrustMonitor => {
            let (mintime, maxtime) = parse_window(params, now)?;
            let limit = parse_limit(params, 50, 200)?;
            let start = parse_tm_offset(params)?;
            let want_bypass = match first(params, "type") {
                None | Some("") => None,
                Some("auth") => Some(false),
                Some("bypass_status_enabled") | Some("bypass_status") => Some(true),
                Some(_) => return Err(ApiError::invalid("Invalid type")),
            };
            let req = PageReq {
                mintime,
                maxtime,
                limit,
                desc: false,
                start,
                shorten: None,
            };
            let filter =
                move |e: &Ev| want_bypass.is_none_or(|b| records::tm_is_bypass(ds, e) == b);
            let type_tag = match want_bypass {
                None => 0,
                Some(false) => 1,
                Some(true) => 2,
            };
            (req, Box::new(filter), type_tag)
        }
        Kind::Authentication | Kind::Telephony | Kind::Activity => {
            let (mintime, maxtime) = parse_window(params, now)?;
            let limit = parse_limit(params, 100, 1000)?;
            let desc = match first(params, "sort") {
                None | Some("ts:desc") => true,
                Some("ts:asc") => false,
                Some(_) => return Err(ApiError::invalid("'sort' must be ts:asc or ts:desc")),
            };
            let req = PageReq {
                mintime,
                maxtime,
                limit,
                desc,
                start: parse_v2_cursor(params)?,
                shorten: None,
            };
            (req, Box::new(|_| true), 0)
        }
    };
    if !kind.is_v1() {
        req.shorten = shorten(cfg, ds, kind, &req, type_tag);
    }
    let page = kd.page(&req, now, &*filter);
    rec.records = Some(page.idx.len());
    rec.boundary_split = page.boundary_split;
    let items: Vec<_> = page.idx.iter().map(|&i| ds.record_text(kind, i)).collect();
    // With `cursor_on_last_page`, the last non-empty page points past itself; the page that
    // cursor gives is empty and carries none.
    let last = if page.more || cfg.cursor_on_last_page {
        page.idx.last().map(|&i| kd.events[i])
    } else {
        None
    };
    // Built as text (records pre-rendered or rendered one by one), byte for byte what
    // serializing the `Value` tree gave: keys in sorted order, no whitespace.
    let (list_key, metadata) = match kind {
        Kind::Administrator | Kind::OfflineEnrollment => (None, None),
        Kind::TrustMonitor => {
            let position = match req.start {
                Start::Position(n) => n,
                _ => 0,
            };
            let metadata = match last {
                Some(_) => json!({"next_offset": (position + page.idx.len()).to_string()}),
                None => json!({}),
            };
            (Some("events"), Some(metadata))
        }
        Kind::Authentication => {
            let total = kd.count_visible(req.mintime, req.maxtime, now);
            let next = last.map(|e| json!([e.ms().to_string(), uuid_str(e.id)]));
            (
                Some("authlogs"),
                Some(json!({"next_offset": next, "total_objects": total})),
            )
        }
        Kind::Telephony | Kind::Activity => {
            let total = kd.count_visible(req.mintime, req.maxtime, now);
            let next = last.map(|e| json!(format!("{},{}", e.ms(), uuid_str(e.id))));
            let metadata = json!({"next_offset": next,
                                  "total_objects": {"relation": "eq", "value": total}});
            (Some("items"), Some(metadata))
        }
    };
    Ok(body(list_key, &items, metadata.as_ref()))
}

fn body(
    list_key: Option<&str>,
    items: &[std::borrow::Cow<'_, str>],
    metadata: Option<&Value>,
) -> String {
    let len: usize = items.iter().map(|t| t.len() + 1).sum();
    let mut body = String::with_capacity(len + 256);
    body.push_str("{\"response\":");
    if let Some(key) = list_key {
        body.push_str("{\"");
        body.push_str(key);
        body.push_str("\":");
    }
    body.push('[');
    for (n, text) in items.iter().enumerate() {
        if n > 0 {
            body.push(',');
        }
        body.push_str(text);
    }
    body.push(']');
    if let Some(metadata) = metadata {
        body.push_str(",\"metadata\":");
        body.push_str(&metadata.to_string());
        body.push('}');
    }
    body.push_str(",\"stat\":\"OK\"}");
    body
}
