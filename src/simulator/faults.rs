//! Injected faults.

use super::errors::ApiError;
use super::{lock, Fault, State};

/// Log endpoints: the ones unfiltered fault rules apply to.
pub fn is_log_path(path: &str) -> bool {
    path.starts_with("/admin/v1/logs/")
        || path.starts_with("/admin/v2/logs/")
        || path == "/admin/v1/trust_monitor/events"
}

/// Consume the first queued rule matching `path` (a [`Fault::RejectCursor`] rule matches only
/// a log request that carries a cursor).
pub fn take_fault(state: &State, path: &str, has_cursor: bool) -> Option<Fault> {
    let mut queue = lock(&state.faults);
    let pos = queue.iter().position(|r| {
        let path_matches = match &r.path_contains {
            Some(p) => path.contains(p.as_str()),
            None => is_log_path(path),
        };
        let cursor_matches = r.fault != Fault::RejectCursor || (has_cursor && is_log_path(path));
        path_matches && cursor_matches
    })?;
    queue.remove(pos).map(|r| r.fault)
}

/// A canned response: (status, content type, body).
pub struct Canned {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// The response that replaces normal processing, or `None` for faults that wrap it
/// (`Delay`, `TruncatedBody`).
pub fn fault_response(fault: &Fault) -> Option<Canned> {
    let json = |e: ApiError| Canned {
        status: e.status,
        content_type: "application/json",
        body: e.body(),
    };
    match fault {
        Fault::Status(s) => Some(json(ApiError::for_status(*s))),
        Fault::RateLimited => Some(json(ApiError::rate_limited())),
        Fault::RejectCursor => Some(json(ApiError::invalid("Invalid next_offset"))),
        Fault::MalformedJson => Some(Canned {
            status: 200,
            content_type: "application/json",
            body:
                r#"{"stat":"OK","response":{"authlogs":[{"txid":"x",}],"metadata":{next_offset:}}"#
                    .to_string(),
        }),
        Fault::HtmlErrorPage => Some(Canned {
            status: 502,
            content_type: "text/html",
            body: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
                   <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n\
                   </body>\r\n</html>\r\n"
                .to_string(),
        }),
        Fault::TruncatedBody | Fault::Delay(_) => None,
    }
}

/// Cut a body roughly in half on a char boundary (always drops at least one byte).
pub fn truncate(mut body: String) -> String {
    let mut cut = body.len() / 2;
    while cut > 0 && !body.is_char_boundary(cut) {
        cut -= 1;
    }
    body.truncate(cut);
    body
}
