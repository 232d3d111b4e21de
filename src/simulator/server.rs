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
use super::clock::imf_fixdate;
use super::data::{Dataset, Kind};
use super::errors::ApiError;
use super::faults::{self, Canned};
use super::inventory::{self, Listing};
use super::logs::{self, first};
use super::{lock, Fault, RecordedRequest, State};

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
    Listing(Listing),
    Preauth,
    Auth,
    AuthStatus,
}

fn route(method: &Method, path: &str) -> Option<Route> {
    let get = method == Method::GET;
    let r = match path {
        "/auth/v2/ping" if get => Route::Ping,
        "/auth/v2/check" if get => Route::AuthCheck,
        "/admin/v1/info/summary" if get => Route::Summary,
        "/auth/v2/preauth" if method == Method::POST => Route::Preauth,
        "/auth/v2/auth" if method == Method::POST => Route::Auth,
        "/auth/v2/auth_status" if get => Route::AuthStatus,
        p if get && Listing::from_path(p).is_some() => Route::Listing(Listing::from_path(p)?),
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

/// The parameters of a JSON body (signature v5 puts POST parameters there, as duo_client does by
/// default): a top-level object's scalar members, numbers and booleans as their text.
fn parse_json_params(data: &[u8]) -> Vec<(String, String)> {
    let Ok(Value::Object(members)) = serde_json::from_slice::<Value>(data) else {
        return Vec::new();
    };
    members
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
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
    let received_at_ms = state.clock.now_ms();
    let started = std::time::Instant::now();
    let path = uri.path().to_string();
    let query = parse_form(uri.query().unwrap_or("").as_bytes());
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
    let mut params = query.clone();
    if method == Method::POST {
        if is_json {
            params.extend(parse_json_params(&body));
        } else {
            params.extend(parse_form(&body));
        }
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
        listing: match route(&method, &path) {
            Some(Route::Listing(l)) => Some(l.name().to_string()),
            Some(Route::Summary) => Some("summary".to_string()),
            _ => None,
        },
        records: None,
        boundary_split: false,
        fault: None,
        handling_us: 0,
        signed_host: None,
    };
    // v1 logs page by `mintime` alone: nothing they send is a cursor.
    let windowed = matches!(route(&method, &path), Some(Route::Log(k)) if !k.is_v1());
    let fault = faults::take_fault(&state, &path, windowed && logs::has_cursor(&params));
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
    // Set explicitly, or hyper adds its own `Date` from the real clock: clients read Duo's
    // clock from this header.
    Response::builder()
        .status(StatusCode::from_u16(canned.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, canned.content_type)
        .header(header::DATE, imf_fixdate(state.clock.now_ms()))
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
        return Ok(ok(json!({"time": state.clock.now_ms().div_euclid(1000)})));
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
    if !auth::date_ok(&date, state.clock.now_ms(), cfg.max_clock_skew_s) {
        return Err(ApiError::bad_timestamp());
    }
    let account = account_id.unwrap_or("");
    if !state
        .limiter
        .try_acquire(&creds.ikey, account, req.path, state.clock.now_ms())
    {
        tracing::debug!(path = req.path, account, "simulator: rate limited");
        return Err(ApiError::rate_limited());
    }
    let wrong_type = || ApiError::forbidden("Wrong integration type for this API.");
    match route {
        Route::AuthCheck if auth_keys.is_some() => {
            return Ok(ok(json!({"time": state.clock.now_ms().div_euclid(1000)})))
        }
        Route::AuthCheck => return Err(wrong_type()),
        Route::Preauth | Route::Auth | Route::AuthStatus if auth_keys.is_some() => {
            return auth_api(state, route, req.params)
        }
        Route::Preauth | Route::Auth | Route::AuthStatus => return Err(wrong_type()),
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
        Route::Listing(listing) => {
            return serve_listing(state, rec, listing, account_id, req.params)
        }
        _ => {
            if cfg.forbidden_kinds.iter().any(|k| k == "summary") {
                return Err(ApiError::forbidden("Insufficient API permissions"));
            }
            return Ok(summary(state, account_id, &dataset));
        }
    };
    if cfg.forbidden_kinds.iter().any(|k| k == kind.name()) {
        return Err(ApiError::forbidden("Insufficient API permissions"));
    }
    if cfg.response_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(cfg.response_delay_ms)).await;
    }
    logs::serve_log(cfg, &dataset, kind, req.params, state.clock.now_ms(), rec)
}

fn summary(state: &State, account_id: Option<&str>, ds: &Dataset) -> String {
    match lock(&state.inventories).get(&account_id.map(str::to_string)) {
        Some(inv) => inventory::summary(inv),
        None => ok(json!({
            "admin_count": 3 + ds.seed % 5,
            "integration_count": 8,
            "telephony_credits_remaining": 473 + ds.seed % 500,
            "user_count": 20,
        })),
    }
}

fn serve_listing(
    state: &State,
    rec: &mut RecordedRequest,
    listing: Listing,
    account_id: Option<&str>,
    params: &[(String, String)],
) -> Result<String, ApiError> {
    if state
        .cfg
        .forbidden_kinds
        .iter()
        .any(|k| k == listing.name())
    {
        return Err(ApiError::forbidden("Insufficient API permissions"));
    }
    let inventories = lock(&state.inventories);
    let inv = inventories
        .get(&account_id.map(str::to_string))
        .ok_or_else(|| ApiError::invalid("Invalid account_id"))?;
    let (body, n) = inventory::serve_listing(&state.cfg, inv, listing, params)?;
    rec.records = Some(n);
    Ok(body)
}

/// The Auth API, on the parent's own inventory.
fn auth_api(state: &State, route: Route, params: &[(String, String)]) -> Result<String, ApiError> {
    let inventories = lock(&state.inventories);
    let inv = inventories
        .get(&None)
        .ok_or_else(|| ApiError::new(500, 50000, "no inventory"))?;
    let mut push = lock(&state.push);
    match route {
        Route::Preauth => inventory::preauth(inv, params),
        Route::Auth => inventory::auth(inv, &mut push, params, state.cfg.seed),
        _ => inventory::auth_status(&mut push, params),
    }
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
