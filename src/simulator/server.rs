//! HTTP front end: routing, authentication order, and the log endpoint semantics.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State as AxState;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};

use super::auth::{self, SigCheck};
use super::data::{Dataset, Ev, Kind, PageReq};
use super::errors::ApiError;
use super::faults::{self, Canned};
use super::records::{self, uuid_str};
use super::{lock, now_ms, Fault, RecordedRequest, State};

const DAY_MS: i64 = 86_400_000;
const RETENTION_MS: i64 = 180 * DAY_MS;

pub fn router(state: Arc<State>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Ping,
    AuthCheck,
    Summary,
    AccountList,
    Log(Kind),
}

fn route(method: &Method, path: &str) -> Option<Route> {
    let get = method == Method::GET;
    let r = match path {
        "/auth/v2/ping" if get => Route::Ping,
        "/auth/v2/check" if get => Route::AuthCheck,
        "/admin/v1/info/summary" if get => Route::Summary,
        "/accounts/v1/account/list" if get || method == Method::POST => Route::AccountList,
        "/admin/v2/logs/authentication" if get => Route::Log(Kind::Authentication),
        "/admin/v1/logs/administrator" if get => Route::Log(Kind::Administrator),
        "/admin/v2/logs/telephony" if get => Route::Log(Kind::Telephony),
        "/admin/v2/logs/activity" if get => Route::Log(Kind::Activity),
        "/admin/v1/trust_monitor/events" if get => Route::Log(Kind::TrustMonitor),
        "/admin/v1/logs/offline_enrollment" if get => Route::Log(Kind::OfflineEnrollment),
        _ => return None,
    };
    Some(r)
}

fn parse_form(data: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(data).into_owned().collect()
}

fn first<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
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

/// A JSON object from owned values (`json!` would deep-clone interpolated `Value`s).
fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn ok(response: Value) -> String {
    obj([("stat", json!("OK")), ("response", response)]).to_string()
}

async fn handle(
    AxState(state): AxState<Arc<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received_at_ms = now_ms();
    let started = std::time::Instant::now();
    let path = uri.path().to_string();
    let query = parse_form(uri.query().unwrap_or("").as_bytes());
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
    let mut params = query.clone();
    if method == Method::POST && !is_json {
        params.extend(parse_form(&body));
    }
    let mut rec = RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        params: params.clone(),
        received_at_ms,
        status: 0,
        ikey: None,
        account_id: first(&params, "account_id").map(str::to_string),
        kind: match route(&method, &path) {
            Some(Route::Log(k)) => Some(k.name().to_string()),
            _ => None,
        },
        records: None,
        boundary_split: false,
        fault: None,
        handling_us: 0,
        signed_host: None,
    };
    let fault = faults::take_fault(&state, &path);
    rec.fault = fault.clone();
    if let Some(Fault::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let canned = match fault.as_ref().and_then(faults::fault_response) {
        Some(c) => c,
        None => {
            let req = Req {
                method: &method,
                path: &path,
                query: &query,
                params: &params,
                headers: &headers,
                body: &body,
            };
            let (status, mut body) = match process(&state, &mut rec, &req).await {
                Ok(b) => (200, b),
                Err(e) => (e.status, e.body()),
            };
            if fault == Some(Fault::TruncatedBody) {
                body = faults::truncate(body);
            }
            Canned {
                status,
                content_type: "application/json",
                body,
            }
        }
    };
    rec.status = canned.status;
    rec.handling_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if canned.status != 200 {
        rec.records = None;
        rec.boundary_split = false;
    }
    state.record(rec);
    Response::builder()
        .status(StatusCode::from_u16(canned.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, canned.content_type)
        .body(Body::from(canned.body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

struct Req<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a [(String, String)],
    params: &'a [(String, String)],
    headers: &'a HeaderMap,
    body: &'a [u8],
}

fn child_host(state: &State, account_id: &str) -> Option<String> {
    lock(&state.children)
        .iter()
        .find(|c| c.child.account_id == account_id)
        .map(|c| c.child.api_hostname.to_ascii_lowercase())
}

async fn process(
    state: &State,
    rec: &mut RecordedRequest,
    req: &Req<'_>,
) -> Result<String, ApiError> {
    let cfg = &state.cfg;
    let route = route(req.method, req.path).ok_or_else(ApiError::not_found)?;
    if route == Route::Ping {
        return Ok(ok(
            json!({"time": (now_ms() + state.cfg.clock_offset_ms).div_euclid(1000)}),
        ));
    }
    let creds = auth::parse_authorization(req.headers)?;
    rec.ikey = Some(creds.ikey.clone());
    let accounts = cfg.accounts.as_ref();
    let auth_keys = cfg
        .auth_api_keys
        .as_ref()
        .filter(|(ikey, _)| *ikey == creds.ikey);
    let (skey, is_accounts_key) = if creds.ikey == cfg.ikey {
        (cfg.skey.as_str(), false)
    } else if let Some(a) = accounts.filter(|a| a.ikey == creds.ikey) {
        (a.skey.as_str(), true)
    } else if let Some((_, skey)) = auth_keys {
        (skey.as_str(), false)
    } else {
        return Err(ApiError::unknown_ikey());
    };
    let date = auth::request_date(req.headers)
        .ok_or_else(|| ApiError::new(401, 40105, "Missing request timestamp"))?;
    let account_id = first(req.params, "account_id");
    let mut hosts = vec![cfg.api_hostname.to_ascii_lowercase()];
    if let (true, Some(id)) = (is_accounts_key, account_id) {
        hosts.extend(child_host(state, id));
    }
    let x_duo = auth::x_duo_headers(req.headers);
    let check = SigCheck {
        method: req.method.as_str(),
        path: req.path,
        date: &date,
        params_v2: req.params,
        params_v5: req.query,
        body: req.body,
        x_duo: &x_duo,
    };
    match auth::verify(&check, skey, &hosts, &creds.sig) {
        Some(host) => rec.signed_host = Some(host.to_string()),
        None => return Err(ApiError::bad_signature()),
    }
    if !auth::date_ok(&date, now_ms() + cfg.clock_offset_ms, cfg.max_clock_skew_s) {
        return Err(ApiError::bad_timestamp());
    }
    let wrong_type = || ApiError::forbidden("Wrong integration type for this API.");
    match route {
        Route::AuthCheck if auth_keys.is_some() => {
            return Ok(ok(
                json!({"time": (now_ms() + cfg.clock_offset_ms).div_euclid(1000)}),
            ))
        }
        Route::AuthCheck => return Err(wrong_type()),
        _ if auth_keys.is_some() => return Err(wrong_type()),
        Route::AccountList if !is_accounts_key => return Err(wrong_type()),
        Route::AccountList => return Ok(account_list(state)),
        _ => {}
    }
    let dataset = match (is_accounts_key, account_id) {
        (false, None) => state.parent.clone(),
        (false, Some(_)) => {
            return Err(ApiError::forbidden(
                "account_id requires Accounts API credentials",
            ))
        }
        (true, None) => return Err(wrong_type()),
        (true, Some(id)) => state
            .dataset(Some(id))
            .ok_or_else(|| ApiError::invalid("Invalid account_id"))?,
    };
    let kind = match route {
        Route::Log(kind) => kind,
        _ => return Ok(summary(&dataset)),
    };
    if !faults::take_token(state, &creds.ikey, account_id.unwrap_or(""), now_ms()) {
        return Err(ApiError::rate_limited());
    }
    if cfg.forbidden_kinds.iter().any(|k| k == kind.name()) {
        return Err(ApiError::forbidden("Insufficient API permissions"));
    }
    if cfg.response_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(cfg.response_delay_ms)).await;
    }
    serve_log(&dataset, kind, req.params, now_ms(), rec)
}

fn summary(ds: &Dataset) -> String {
    ok(json!({
        "admin_count": 3 + ds.seed % 5,
        "integration_count": 8,
        "telephony_credits_remaining": 473 + ds.seed % 500,
        "user_count": 20,
    }))
}

fn account_list(state: &State) -> String {
    let list: Vec<Value> = lock(&state.children)
        .iter()
        .filter(|c| c.data.is_some())
        .map(|c| {
            json!({"account_id": c.child.account_id, "api_hostname": c.child.api_hostname,
                   "name": c.child.name})
        })
        .collect();
    ok(Value::Array(list))
}

fn all_digits(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
}

/// `mintime`/`maxtime` in ms (v2 and Trust Monitor).
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
fn parse_v2_cursor(params: &[(String, String)]) -> Result<Option<(i64, u128)>, ApiError> {
    let mut vals = all(params, "next_offset");
    if vals.is_empty() {
        vals = all(params, "offset");
    }
    let joined = vals.join(",");
    if joined.trim().is_empty() {
        return Ok(None);
    }
    let bad = || ApiError::invalid("Invalid next_offset");
    let (ms, id) = joined.split_once(',').ok_or_else(bad)?;
    let ms = ms.trim();
    if !all_digits(ms) {
        return Err(bad());
    }
    let ms = ms.parse::<i64>().map_err(|_| bad())?;
    let id = uuid::Uuid::parse_str(id.trim()).map_err(|_| bad())?;
    Ok(Some((ms, id.as_u128())))
}

fn tm_cursor(ev: &Ev) -> String {
    format!("{}-{:032x}", ev.ms(), ev.id)
}

fn parse_tm_cursor(params: &[(String, String)]) -> Result<Option<(i64, u128)>, ApiError> {
    let Some(v) = first(params, "offset").filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let bad = || ApiError::invalid("Invalid offset");
    let (ms, id) = v.trim().split_once('-').ok_or_else(bad)?;
    if !all_digits(ms) || id.len() != 32 {
        return Err(bad());
    }
    let ms = ms.parse::<i64>().map_err(|_| bad())?;
    let id = u128::from_str_radix(id, 16).map_err(|_| bad())?;
    Ok(Some((ms, id)))
}

type EvFilter<'a> = Box<dyn Fn(&Ev) -> bool + 'a>;

fn serve_log(
    ds: &Dataset,
    kind: Kind,
    params: &[(String, String)],
    now: i64,
    rec: &mut RecordedRequest,
) -> Result<String, ApiError> {
    let kd = ds.kind(kind);
    let (req, filter): (PageReq, EvFilter<'_>) = match kind {
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
                cursor: None,
            };
            (req, Box::new(|_| true))
        }
        Kind::TrustMonitor => {
            let (mintime, maxtime) = parse_window(params, now)?;
            let limit = parse_limit(params, 50, 200)?;
            let cursor = parse_tm_cursor(params)?;
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
                cursor,
            };
            let filter =
                move |e: &Ev| want_bypass.is_none_or(|b| records::tm_is_bypass(ds, e) == b);
            (req, Box::new(filter))
        }
        Kind::Authentication | Kind::Telephony | Kind::Activity => {
            let (mintime, maxtime) = parse_window(params, now)?;
            let limit = parse_limit(params, 100, 1000)?;
            let desc = match first(params, "sort") {
                None | Some("ts:desc") => true,
                Some("ts:asc") => false,
                Some(_) => return Err(ApiError::invalid("'sort' must be ts:asc or ts:desc")),
            };
            let cursor = parse_v2_cursor(params)?;
            let req = PageReq {
                mintime,
                maxtime,
                limit,
                desc,
                cursor,
            };
            (req, Box::new(|_| true))
        }
    };
    let page = kd.page(&req, now, &*filter);
    rec.records = Some(page.idx.len());
    rec.boundary_split = page.boundary_split;
    let items: Vec<_> = page.idx.iter().map(|&i| ds.record_text(kind, i)).collect();
    let last = if page.more {
        page.idx.last().map(|&i| kd.events[i])
    } else {
        None
    };
    // Built as text (records pre-rendered or rendered one by one), byte for byte what
    // serializing the `Value` tree gave: keys in sorted order, no whitespace.
    let (list_key, metadata) = match kind {
        Kind::Administrator | Kind::OfflineEnrollment => (None, None),
        Kind::TrustMonitor => {
            let metadata = match last {
                Some(e) => json!({"next_offset": tm_cursor(&e)}),
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
    Ok(body)
}
