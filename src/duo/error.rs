//! Typed Duo API errors with text an operator can act on.

use std::time::Duration;

/// Why a Duo API call failed.
#[derive(Debug, thiserror::Error)]
pub enum DuoError {
    /// Duo answered with `{"stat":"FAIL",…}` or an error status.
    #[error("{}", api_message(*.status, *.code, .message, .detail.as_deref()))]
    Api {
        status: u16,
        code: Option<u32>,
        message: String,
        detail: Option<String>,
    },
    /// Still rate limited after the full backoff schedule.
    #[error("rate limited by Duo (HTTP 429 / 42901) after {attempts} attempts over {waited:?}; the next run resumes from the checkpoint")]
    RateLimited { attempts: u32, waited: Duration },
    #[error("request to Duo timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot reach Duo: {0}")]
    Transport(String),
    #[error("malformed response from Duo: {0}")]
    Malformed(String),
    #[error("cancelled by shutdown")]
    Cancelled,
}

impl DuoError {
    /// Whether trying the same request again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DuoError::Api { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            DuoError::Timeout(_) | DuoError::Transport(_) | DuoError::Malformed(_) => true,
            DuoError::RateLimited { .. } | DuoError::Cancelled => false,
        }
    }

    /// Duo's "too many requests" (HTTP 429 or code 42901).
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, DuoError::Api { status: 429, .. }) || self.code() == Some(42901)
    }

    /// Duo refused the request's parameters (HTTP 400), e.g. a cursor it no longer accepts.
    pub fn is_refused(&self) -> bool {
        matches!(self, DuoError::Api { status: 400, .. })
    }

    /// What to do about it, from the one table of Duo's codes; `None` when there is nothing
    /// to add to the message.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            DuoError::Api { status, code, .. } => {
                Some(hint(*status, *code)).filter(|h| !h.is_empty())
            }
            _ => None,
        }
    }

    /// The message without the hint, for a report that shows the hint on a line of its own.
    pub fn without_hint(&self) -> String {
        match self {
            DuoError::Api {
                status,
                code,
                message,
                detail,
            } => api_summary(*status, *code, message, detail.as_deref()),
            other => other.to_string(),
        }
    }

    /// Duo's 5-digit code, when it sent one.
    pub fn code(&self) -> Option<u32> {
        match self {
            DuoError::Api { code, .. } => *code,
            _ => None,
        }
    }
}

fn hint(status: u16, code: Option<u32>) -> &'static str {
    match (code, status) {
        (Some(40101), _) => "the request carried no credentials",
        (Some(40102), _) => "invalid integration key: check `ikey` against the Admin API application in the Duo Admin Panel",
        (Some(40103), _) => "invalid signature: the secret key is wrong (check skey / skey_file / skey_credential), or `api_hostname` is not the application's own host",
        (Some(40105), _) => "request timestamp rejected: check this host's clock (NTP); Duo refuses requests whose Date is too far off",
        (Some(40301), _) | (None, 403) => "access forbidden: the Admin API application needs the \"Grant read log\" permission (or this log kind is not licensed for the account)",
        (Some(42901), _) | (None, 429) => "rate limited: Duo allows few log requests per minute; collection backs off and resumes",
        (Some(40002), _) | (Some(40001), _) => "Duo refused the request parameters",
        (_, 404) => "endpoint not found: check `api_hostname` (and `connect_to` if set)",
        (_, s) if s >= 500 => "Duo had a server error; the collector retries and resumes from the checkpoint",
        _ => "",
    }
}

fn api_message(status: u16, code: Option<u32>, message: &str, detail: Option<&str>) -> String {
    let mut s = api_summary(status, code, message, detail);
    let h = hint(status, code);
    if !h.is_empty() {
        s.push_str(" — ");
        s.push_str(h);
    }
    s
}

fn api_summary(status: u16, code: Option<u32>, message: &str, detail: Option<&str>) -> String {
    let mut s = format!("Duo API error HTTP {status}");
    if let Some(c) = code {
        s.push_str(&format!(" code {c}"));
    }
    if !message.is_empty() {
        s.push_str(&format!(": {message}"));
    }
    if let Some(d) = detail.filter(|d| !d.is_empty()) {
        s.push_str(&format!(" ({d})"));
    }
    s
}

#[derive(serde::Deserialize)]
struct FailBody {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    message_detail: Option<String>,
}

/// Builds an [`DuoError::Api`] from an error response, whatever its body looks like.
pub fn from_response(status: u16, body: &[u8]) -> DuoError {
    let parsed: Option<FailBody> = serde_json::from_slice(body).ok();
    let (code, message, detail) = match parsed {
        Some(b) => (
            b.code.and_then(|c| match c {
                serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                serde_json::Value::String(s) => s.parse().ok(),
                _ => None,
            }),
            b.message.unwrap_or_default(),
            b.message_detail,
        ),
        None => (None, excerpt(body), None),
    };
    DuoError::Api {
        status,
        code,
        message,
        detail,
    }
}

/// The first bytes of a body, printable, for error messages.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actionable_messages_per_code() {
        let cases = [
            (401, 40102, "integration key"),
            (401, 40103, "secret key"),
            (401, 40105, "clock"),
            (403, 40301, "Grant read log"),
            (429, 42901, "rate limited"),
            (500, 50001, "server error"),
        ];
        for (status, code, needle) in cases {
            let body = format!(r#"{{"stat":"FAIL","code":{code},"message":"m"}}"#);
            let e = from_response(status, body.as_bytes());
            assert_eq!(e.code(), Some(code));
            assert!(e.to_string().contains(needle), "{e}");
        }
    }

    #[test]
    fn odd_bodies_do_not_panic() {
        let e = from_response(502, b"<html>\n<b>Bad gateway</b></html>");
        assert!(e.to_string().contains("Bad gateway"));
        assert!(e.is_transient());
        let e = from_response(400, br#"{"stat":"FAIL","code":"40002","message":"Invalid request parameters","message_detail":"mintime must be within the past 180 days"}"#);
        assert_eq!(e.code(), Some(40002));
        assert!(e.to_string().contains("180 days"));
        assert!(!e.is_transient());
    }
}
