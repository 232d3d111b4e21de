//! NATS JetStream sinks: their keys, settings and validation.

use std::time::Duration;

use super::fragment::{flag, text, Fragment, Key, SinkType, BATCH, CLIENT_TLS, PASSWORD, TOKEN};
use super::{delivery_limits, duration, tls_files, token_and_password, Batching, SinkKind};
use crate::config::{optional_secret, Env, Report};
pub use crate::nats_connection::{NatsAuth, NatsConnection};

/// The keys only this type has.
const OWN: &[Key] = &[
    text("stream"),
    text("subject"),
    flag("create_stream"),
    text("ack_timeout"),
];

/// The login keys ([`connection`] reads them), shared with `[state]`.
pub const CONNECTION_KEYS: &[&[Key]] = &[
    &[text("url"), text("creds_file"), flag("tls_required")],
    TOKEN,
    PASSWORD,
    CLIENT_TLS,
];

/// The default `timeout` and batch limits.
const LIMITS: (Duration, Batching) = (Duration::from_secs(10), Batching::new(500, 8 << 20));

pub(super) const TYPE: SinkType = SinkType {
    name: "nats",
    validate: |report, env, scope, raw| nats(report, env, scope, raw).map(SinkKind::Nats),
    keys: &[
        CONNECTION_KEYS[0],
        OWN,
        CONNECTION_KEYS[1],
        CONNECTION_KEYS[2],
        CONNECTION_KEYS[3],
        BATCH,
    ],
};

#[derive(Debug, Clone, PartialEq)]
pub struct NatsSettings {
    /// The servers and the login (`timeout` is its connect timeout).
    pub connection: NatsConnection,
    pub stream: String,
    /// The subject template: `{integration}`, `{log}` and `{account}` are replaced.
    pub subject: String,
    pub create_stream: bool,
    pub ack_timeout: Duration,
    pub batch: Batching,
}

pub const DEFAULT_SUBJECT: &str = "duo.{integration}.{log}";

/// Checks a subject template: dot-separated tokens, no wildcards or spaces, known placeholders.
pub(super) fn subject_problem(template: &str) -> Option<String> {
    let mut rest = template.to_string();
    for p in ["{integration}", "{log}", "{account}"] {
        rest = rest.replace(p, "x");
    }
    if rest.contains('{') || rest.contains('}') {
        return Some("only the placeholders {integration}, {log} and {account} are known".into());
    }
    if rest
        .split('.')
        .any(|t| t.is_empty() || t.contains(['*', '>', ' ', '\t']))
    {
        return Some("must be dot-separated tokens without wildcards or spaces, e.g. \"duo.{integration}.{log}\"".into());
    }
    None
}

/// The login keys a NATS sink and the NATS state store share: `url`, `creds_file`,
/// `tls_required`, the token, username and password, the client TLS files; `timeout` is the
/// connect timeout the caller validated.
pub fn connection(
    report: &mut Report,
    env: &Env,
    scope: &str,
    raw: &Fragment<'_>,
    timeout: Option<Duration>,
) -> Option<NatsConnection> {
    let url = match raw.str("url") {
        Some(u)
            if u.split(',').all(|one| {
                url::Url::parse(one.trim()).is_ok_and(|p| {
                    matches!(p.scheme(), "nats" | "tls")
                        && p.host().is_some()
                        && p.username().is_empty()
                })
            }) =>
        {
            Some(u.to_string())
        }
        Some(_) => {
            report.error(scope, "url", "must be nats://host:port or tls://host:port (several comma-separated), without credentials");
            None
        }
        None => {
            report.error(scope, "url", "missing, e.g. \"nats://127.0.0.1:4222\"");
            None
        }
    };
    let (token, password) = token_and_password(report, env, scope, raw);
    let creds = optional_secret(
        report,
        env,
        scope,
        "creds",
        raw.str("creds_file"),
        None,
        None,
    );
    let username = raw.string("username");
    let auth = match (token, password, creds) {
        (Some(token), Some(password), Some(creds)) => match (token, username, password, creds) {
            (None, None, None, None) => Some(NatsAuth::None),
            (Some(t), None, None, None) => Some(NatsAuth::Token(t)),
            (None, None, None, Some(c)) => Some(NatsAuth::Credentials(c)),
            (None, Some(username), Some(password), None) => {
                Some(NatsAuth::UserPassword { username, password })
            }
            (None, Some(_), None, None) => {
                report.error(scope, "password_file", "`username` is set, so a password is needed: set `password_file` or `password_env`");
                None
            }
            _ => {
                report.error(scope, "token_file", "use one way to authenticate: a token (token_file/token_env), username and password, or creds_file");
                None
            }
        },
        _ => None,
    };
    let tls = tls_files(report, scope, raw);
    let tls_required = raw
        .bool("tls_required")
        .unwrap_or_else(|| !tls.is_empty() || url.as_deref().is_some_and(|u| u.contains("tls://")));
    Some(NatsConnection {
        url: url?,
        auth: auth?,
        tls,
        tls_required,
        timeout: timeout?,
    })
}

fn nats(report: &mut Report, env: &Env, scope: &str, raw: &Fragment<'_>) -> Option<NatsSettings> {
    let stream = match raw.str("stream") {
        Some(s) if !s.is_empty() && !s.contains(['.', '*', '>', ' ', '/', '\\']) => {
            Some(s.to_string())
        }
        Some(s) => {
            report.error(
                scope,
                "stream",
                format!(
                    "{s:?} is not a valid JetStream stream name (no spaces, dots, *, >, / or \\)"
                ),
            );
            None
        }
        None => {
            report.error(
                scope,
                "stream",
                "missing; the JetStream stream that stores the events, e.g. \"DUO\"",
            );
            None
        }
    };
    let subject = raw
        .string("subject")
        .unwrap_or_else(|| DEFAULT_SUBJECT.to_string());
    let subject = match subject_problem(&subject) {
        Some(problem) => {
            report.error(scope, "subject", format!("{subject:?}: {problem}"));
            None
        }
        None => Some(subject),
    };
    let create_stream = raw.bool("create_stream").unwrap_or(false);
    let ack_timeout = duration(report, scope, raw, "ack_timeout", Duration::from_secs(10));
    let (timeout, batch) = delivery_limits(report, scope, raw, LIMITS);
    let connection = connection(report, env, scope, raw, timeout);
    Some(NatsSettings {
        connection: connection?,
        stream: stream?,
        subject: subject?,
        create_stream,
        ack_timeout: ack_timeout?,
        batch: batch?,
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn subjects() {
        assert!(subject_problem(DEFAULT_SUBJECT).is_none());
        assert!(subject_problem("duo.{account}.{log}").is_none());
        assert!(subject_problem("duo.*").is_some());
        assert!(subject_problem("duo..x").is_some());
        assert!(subject_problem("duo.{nope}").is_some());
    }
}
