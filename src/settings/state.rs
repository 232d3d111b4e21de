//! `[state]`: where the collector keeps its state. `backend = "sqlite"` (the default: `state.db`
//! in `state_dir`) or `backend = "nats"` (JetStream key-value buckets shared by several
//! collectors), whose login keys are the NATS sink's, validated by the same code
//! (`sink::config::nats_connection`).

use std::time::Duration;

use crate::config::{parse_duration_field, Env, Report};
use crate::sink::config::{nats_connection, Fragment, Key, Kind, SinkType, NATS_CONNECTION_KEYS};
use crate::state::{NatsStoreSettings, StoreSettings, DEFAULT_BUCKET_PREFIX, DEFAULT_LEASE_TTL};

const SCOPE: &str = "[state]";

/// The keys only `[state]` has; the login keys follow them.
const OWN: &[Key] = &[
    Key {
        name: "backend",
        kind: Kind::Text,
    },
    Key {
        name: "bucket_prefix",
        kind: Kind::Text,
    },
    Key {
        name: "replicas",
        kind: Kind::Count,
    },
    Key {
        name: "lease_ttl",
        kind: Kind::Text,
    },
    Key {
        name: "timeout",
        kind: Kind::Text,
    },
];

/// `[state]`'s key table, read through the sinks' [`Fragment`] so the login keys are typed and
/// read exactly as a NATS sink's are.
const TABLE: SinkType = SinkType {
    name: "state",
    keys: &[
        OWN,
        NATS_CONNECTION_KEYS[0],
        NATS_CONNECTION_KEYS[1],
        NATS_CONNECTION_KEYS[2],
        NATS_CONNECTION_KEYS[3],
    ],
    validate: |_, _, _, _| None,
};

/// Every key `[state]` takes.
pub fn state_keys() -> Vec<&'static str> {
    TABLE.key_names().collect()
}

/// The connect and request timeout of the state store.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Validates `[state]` (absent: SQLite); `None` once a problem was reported.
pub fn validate_state(
    report: &mut Report,
    env: &Env,
    table: Option<&toml::Table>,
) -> Option<StoreSettings> {
    let Some(table) = table else {
        return Some(StoreSettings::Sqlite);
    };
    let known = state_keys();
    let mut own = toml::Table::new();
    for (name, value) in table {
        if known.contains(&name.as_str()) {
            own.insert(name.clone(), value.clone());
        } else {
            report.problems.push(format!(
                "{SCOPE}: unknown key `{name}` (valid keys: {})",
                known.join(", ")
            ));
        }
    }
    let raw = Fragment::new(&own, Some(TABLE));
    if !raw.check(report, SCOPE) {
        return None;
    }
    match raw.str("backend").unwrap_or("sqlite") {
        "sqlite" => {
            let nats_only: Vec<&str> = own
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "backend")
                .collect();
            if let Some(first) = nats_only.first() {
                report.error(
                    SCOPE,
                    first,
                    format!(
                        "only used with backend = \"nats\"; remove {} (or set backend = \"nats\")",
                        nats_only.join(", ")
                    ),
                );
                return None;
            }
            Some(StoreSettings::Sqlite)
        }
        "nats" => nats(report, env, &raw).map(|n| StoreSettings::Nats(Box::new(n))),
        other => {
            report.error(
                SCOPE,
                "backend",
                format!("unknown backend {other:?}; use \"sqlite\" (one host, the default) or \"nats\" (several collectors sharing JetStream key-value buckets)"),
            );
            None
        }
    }
}

fn nats(report: &mut Report, env: &Env, raw: &Fragment<'_>) -> Option<NatsStoreSettings> {
    let bucket_prefix = raw
        .string("bucket_prefix")
        .unwrap_or_else(|| DEFAULT_BUCKET_PREFIX.to_string());
    let prefix_ok = !bucket_prefix.is_empty()
        && bucket_prefix.len() <= 64
        && bucket_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !prefix_ok {
        report.error(
            SCOPE,
            "bucket_prefix",
            "must be 1 to 64 letters, digits, `-` or `_` (bucket names are `<prefix>-checkpoints`, ...), e.g. \"duo-collector\"",
        );
    }
    let replicas = match raw.usize("replicas").unwrap_or(1) {
        n @ (1 | 3) => Some(n),
        _ => {
            report.error(
                SCOPE,
                "replicas",
                "must be 1 (one server) or 3 (a JetStream cluster of at least three servers)",
            );
            None
        }
    };
    let lease_ttl = parse_duration_field(
        report,
        SCOPE,
        "lease_ttl",
        raw.str("lease_ttl"),
        DEFAULT_LEASE_TTL,
    )
    .and_then(|ttl| {
        if ttl < Duration::from_secs(3) {
            report.error(
                SCOPE,
                "lease_ttl",
                "must be at least 3s (a lease is renewed every lease_ttl / 3), e.g. \"30s\"",
            );
            return None;
        }
        Some(ttl)
    });
    let timeout = parse_duration_field(report, SCOPE, "timeout", raw.str("timeout"), DEFAULT_TIMEOUT)
        .and_then(|timeout| {
            let ttl = lease_ttl.unwrap_or(DEFAULT_LEASE_TTL);
            if timeout.is_zero() || timeout >= ttl / 3 {
                report.error(
                    SCOPE,
                    "timeout",
                    format!("must be longer than zero and shorter than lease_ttl / 3 ({}), so that a renewal that fails is known before the lease can expire", humantime::format_duration(ttl / 3)),
                );
                return None;
            }
            Some(timeout)
        });
    let connection = nats_connection(report, env, SCOPE, raw, timeout);
    Some(NatsStoreSettings {
        connection: connection?,
        bucket_prefix: prefix_ok.then_some(bucket_prefix)?,
        replicas: replicas?,
        lease_ttl: lease_ttl?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use crate::nats_connection::NatsAuth;
    use crate::settings::{parse_config_str, Config};

    const TOKEN: &str = "nats-token-5e4d3c2b1a";

    fn parse(state: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "{state}\n{}\n[[sink]]\nname = \"out\"\ntype = \"stdout\"\n",
            crate::settings::tests::corp_integration("[\"out\"]", "")
        );
        parse_config_str(
            &text,
            "test.toml",
            &Env::from_pairs(&[("DUO_SKEY", "s3cr3t-skey-value"), ("NATS_TOKEN", TOKEN)]),
        )
    }

    fn nats_store(state: &str) -> NatsStoreSettings {
        match parse(state).unwrap().state {
            StoreSettings::Nats(n) => *n,
            other => panic!("{other:?}"),
        }
    }

    /// Prefix, replicas, lease ttl and timeout (s).
    fn store_shape(n: &NatsStoreSettings) -> (&str, usize, u64, u64) {
        (
            n.bucket_prefix.as_str(),
            n.replicas,
            n.lease_ttl.as_secs(),
            n.connection.timeout.as_secs(),
        )
    }

    fn problems(state: &str) -> String {
        let problems = parse(state).unwrap_err().problems.join("\n");
        assert!(
            !problems.contains(TOKEN),
            "a secret is never echoed: {problems}"
        );
        problems
    }

    #[test]
    fn sqlite_is_the_default_and_nats_takes_the_sink_s_login_keys() {
        assert_eq!(parse("").unwrap().state, StoreSettings::Sqlite);
        assert_eq!(
            parse("[state]\nbackend = \"sqlite\"").unwrap().state,
            StoreSettings::Sqlite
        );
        let n = nats_store("[state]\nbackend = \"nats\"\nurl = \"nats://10.0.0.1:4222,nats://10.0.0.2:4222\"\ntoken_env = \"NATS_TOKEN\"");
        assert_eq!(
            n.connection.url,
            "nats://10.0.0.1:4222,nats://10.0.0.2:4222"
        );
        assert!(matches!(&n.connection.auth, NatsAuth::Token(t) if t.expose() == TOKEN));
        assert_eq!(store_shape(&n), ("duo-collector", 1, 30, 5));
        let n = nats_store("[state]\nbackend = \"nats\"\nurl = \"tls://nats.example:4222\"\nbucket_prefix = \"duo_east-1\"\nreplicas = 3\nlease_ttl = \"45s\"\ntimeout = \"2s\"");
        assert_eq!(store_shape(&n), ("duo_east-1", 3, 45, 2));
        assert!(n.connection.tls_required, "tls:// asks for TLS");
        let warnings = parse("[state]\nbackend = \"nats\"\nurl = \"nats://127.0.0.1:4222\"")
            .unwrap()
            .warnings;
        assert!(
            !warnings.iter().any(|w| w.contains("[state]")),
            "the NATS store is used: {warnings:?}"
        );
    }

    #[test]
    fn an_inventory_with_the_nats_store_is_accepted() {
        let text = format!(
            "[state]\nbackend = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\n{}\n[[sink]]\nname = \"out\"\ntype = \"stdout\"\n",
            crate::settings::tests::corp_integration("[\"out\"]", "inventory = [\"users\"]")
        );
        let env = Env::from_pairs(&[("DUO_SKEY", "s3cr3t-skey-value")]);
        let config = parse_config_str(&text, "test.toml", &env).unwrap();
        assert!(matches!(config.state, StoreSettings::Nats(_)));
        assert!(!config.integrations[0].inventory.is_empty());
    }

    #[test]
    fn every_problem_names_the_field_and_the_fix() {
        let nats = "[state]\nbackend = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\n";
        for (extra, field, fix) in [
            ("replicas = 2", "replicas", "must be 1 (one server) or 3"),
            (
                "bucket_prefix = \"a.b\"",
                "bucket_prefix",
                "letters, digits",
            ),
            ("lease_ttl = \"1s\"", "lease_ttl", "at least 3s"),
            ("timeout = \"10s\"", "timeout", "shorter than lease_ttl / 3"),
            ("username = \"u\"", "password_file", "a password is needed"),
            (
                "token_env = \"NATS_TOKEN\"\nusername = \"u\"",
                "token_file",
                "use one way to authenticate",
            ),
            ("replicas = \"3\"", "replicas", "expected a whole number"),
        ] {
            let problems = problems(&format!("{nats}{extra}"));
            assert!(
                problems.contains(&format!("[state]: field `{field}`: ")) && problems.contains(fix),
                "{extra}: {problems}"
            );
        }
        let missing = problems("[state]\nbackend = \"nats\"");
        assert!(missing.contains("field `url`: missing"), "{missing}");
        let unknown = problems("[state]\nbackend = \"redis\"");
        assert!(
            unknown.contains("field `backend`: unknown backend \"redis\""),
            "{unknown}"
        );
        let stray = problems("[state]\nurl = \"nats://127.0.0.1:4222\"");
        assert!(
            stray.contains("field `url`: only used with backend = \"nats\""),
            "{stray}"
        );
        let typo = problems("[state]\nbackend = \"nats\"\nurls = \"nats://x:1\"");
        assert!(
            typo.contains("[state]: unknown key `urls` (valid keys: backend,"),
            "{typo}"
        );
        let sink_key = problems(&format!("{nats}stream = \"DUO\""));
        assert!(sink_key.contains("unknown key `stream`"), "{sink_key}");
        let not_a_table = problems("state = \"nats\"");
        assert!(
            not_a_table.contains("field `state`: must be a table"),
            "{not_a_table}"
        );
    }
}
