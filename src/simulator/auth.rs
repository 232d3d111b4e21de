//! Request signature verification (duo-api.md §1.7): decode, re-canonicalize, try the
//! candidate schemes (v2-SHA1 for 40 hex; v2-SHA512 and v5 for 128 hex) against the configured
//! host names.

use axum::http::HeaderMap;
use base64::Engine as _;

use super::errors::ApiError;
use crate::duo::sign::{signature_hex, signatures_equal, SigVersion, SignInput};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub ikey: String,
    pub sig: String,
}

/// `Authorization: Basic base64(ikey:hexsig)`; anything else is "missing credentials".
pub fn parse_authorization(headers: &HeaderMap) -> Result<Credentials, ApiError> {
    let raw = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::missing_credentials)?
        .trim();
    let (scheme, token) = raw
        .split_once(' ')
        .ok_or_else(ApiError::missing_credentials)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::missing_credentials());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| ApiError::missing_credentials())?;
    let text = String::from_utf8(decoded).map_err(|_| ApiError::missing_credentials())?;
    let (ikey, sig) = text
        .split_once(':')
        .ok_or_else(ApiError::missing_credentials)?;
    if ikey.is_empty() {
        return Err(ApiError::missing_credentials());
    }
    Ok(Credentials {
        ikey: ikey.to_string(),
        sig: sig.to_string(),
    })
}

/// The signed date: `X-Duo-Date` if present, else `Date`.
pub fn request_date(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-duo-date")
        .or_else(|| headers.get(axum::http::header::DATE))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Every `X-Duo-*` header (names are already lowercase in `http`).
pub fn x_duo_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-duo-"))
        .filter_map(|(name, value)| {
            value
                .to_str()
                .ok()
                .map(|v| (name.as_str().to_string(), v.to_string()))
        })
        .collect()
}

type Params = [(String, String)];

/// What a signature may cover.
pub struct SigCheck<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub date: &'a str,
    /// Params for v2: query (GET) or query + form body (POST).
    pub params_v2: &'a [(String, String)],
    /// Params for v5: the query (a v5 POST carries its params in the JSON body).
    pub params_v5: &'a [(String, String)],
    pub body: &'a [u8],
    pub x_duo: &'a [(String, String)],
}

/// The host of `hosts` for which `sig` matches some candidate scheme, if any.
pub fn verify<'h>(
    check: &SigCheck<'_>,
    skey: &str,
    hosts: &'h [String],
    sig: &str,
) -> Option<&'h str> {
    let sig = sig.to_ascii_lowercase();
    let versions: &[SigVersion] = match sig.len() {
        40 => &[SigVersion::V2Sha1],
        128 => &[SigVersion::V2Sha512, SigVersion::V5],
        _ => return None,
    };
    let mut v5_param_sets = vec![check.params_v5];
    if check.params_v2 != check.params_v5 {
        v5_param_sets.push(check.params_v2);
    }
    for host in hosts {
        for &version in versions {
            let (param_sets, body): (&[&Params], &[u8]) = match version {
                SigVersion::V5 => (&v5_param_sets, check.body),
                _ => (std::slice::from_ref(&check.params_v2), b""),
            };
            for params in param_sets {
                let input = SignInput {
                    date: check.date,
                    method: check.method,
                    host,
                    path: check.path,
                    params,
                    body,
                    x_duo_headers: check.x_duo,
                };
                let expected = signature_hex(version, skey.as_bytes(), &input);
                if signatures_equal(&expected, &sig) {
                    return Some(host);
                }
            }
        }
    }
    None
}

/// Is the RFC 2822 `date` within `max_skew_s` of `now_ms`?
pub fn date_ok(date: &str, now_ms: i64, max_skew_s: i64) -> bool {
    match chrono::DateTime::parse_from_rfc2822(date.trim()) {
        Ok(t) => (t.timestamp_millis() - now_ms).abs() <= max_skew_s.saturating_mul(1000),
        Err(_) => false,
    }
}
