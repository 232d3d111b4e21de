//! Each sink type's settings, validated through the whole config (the assembly point).

use crate::config::{ConfigError, Env};
use crate::settings::{parse_config_str, Config};
use crate::sink::config::*;

const TOKEN: &str = "hec-token-0f9e8d7c6b5a";

/// Parses the corp integration with these sinks; `TOKEN_FILE` names a file holding [`TOKEN`].
fn parse(sinks: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}{sinks}",
        crate::settings::tests::corp_integration("[\"out\"]", "")
    );
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    parse_config_str(
        &text.replace("TOKEN_FILE", &token_file.display().to_string()),
        "test.toml",
        &Env::from_pairs(&[("DUO_SKEY", "s3cr3t-skey-value"), ("NATS_TOKEN", TOKEN)]),
    )
}

/// A `[[sink]]` named "out" (the name the corp integration delivers to) of `sink_type`.
fn out_sink(sink_type: &str, body: &str) -> String {
    format!("[[sink]]\nname = \"out\"\ntype = \"{sink_type}\"\n{body}")
}

fn syslog(c: &Config, index: usize) -> &SyslogSettings {
    match &c.sinks[index].kind {
        SinkKind::Syslog(s) => s,
        other => panic!("sink {index} is not syslog: {other:?}"),
    }
}

fn http(c: &Config, index: usize) -> &HttpSettings {
    match &c.sinks[index].kind {
        SinkKind::Http(h) => h,
        other => panic!("sink {index} is not http: {other:?}"),
    }
}

fn nats(c: &Config, index: usize) -> &NatsSettings {
    match &c.sinks[index].kind {
        SinkKind::Nats(n) => n,
        other => panic!("sink {index} is not nats: {other:?}"),
    }
}

#[test]
fn network_sinks_parse_with_defaults() {
    let c = parse(&out_sink(
        "syslog",
        r#"transport = "tcp"
address = "siem.example.com:6514"

[[sink]]
name = "splunk"
type = "http"
url = "https://splunk.example.com:8088/services/collector/event"
flavor = "splunk_hec"
token_file = "TOKEN_FILE"
gzip = true
batch_max_events = 100

[[sink]]
name = "bus"
type = "nats"
url = "nats://127.0.0.1:4222"
stream = "DUO"
token_env = "NATS_TOKEN"
"#,
    ))
    .unwrap();
    let s = syslog(&c, 0);
    assert_eq!(s.transport, SyslogTransport::Tcp);
    assert_eq!(
        (s.facility.code(), s.app_name.as_str(), s.host.as_str()),
        (16, "duo-collector", "siem.example.com")
    );
    assert_eq!(
        s.batch,
        Batching {
            max_events: 1000,
            max_bytes: 1 << 20
        }
    );
    let h = http(&c, 1);
    assert!(matches!(&h.auth, HttpAuth::Splunk(t) if t.expose() == TOKEN));
    assert!(h.gzip && h.flavor == HttpFlavor::SplunkHec && h.batch.max_events == 100);
    assert!(
        !format!("{:?}", c.sinks).contains(TOKEN),
        "Debug never shows a token"
    );
    let n = nats(&c, 2);
    assert!(matches!(&n.connection.auth, NatsAuth::Token(t) if t.expose() == TOKEN));
    assert_eq!(n.subject, "duo.{integration}.{log}");
    assert!(!n.create_stream && !n.connection.tls_required);
}

#[test]
fn every_problem_is_reported_at_once_with_sink_and_field() {
    let err = parse(&out_sink(
        "syslog",
        r#"transport = "carrier-pigeon"
address = "no-port"
facility = "kitchen"
url = "https://x"
max_message_size = 10

[[sink]]
name = "web"
type = "http"
url = "ftp://x"
flavor = "splunk_hec"
headers = { Authorization = "Bearer abc" }

[[sink]]
name = "bus"
type = "nats"
url = "http://x"
subject = "duo.*"
token_env = "MISSING_VAR"
cert_file = "/nonexistent/cert.pem"
batch_max_events = 0
"#,
    ))
    .unwrap_err();
    let expect = [
        ("sink \"out\": field `transport`", "carrier-pigeon"),
        ("sink \"out\": field `address`", "host:port"),
        ("sink \"out\": field `facility`", "local0"),
        ("sink \"out\": field `url`", "not used by a syslog sink"),
        ("sink \"out\": field `max_message_size`", "480"),
        ("sink \"web\": field `url`", "http(s)"),
        (
            "sink \"web\": field `token_file`",
            "Splunk HEC needs its token",
        ),
        ("sink \"web\": field `headers`", "token_file"),
        ("sink \"bus\": field `url`", "nats://"),
        ("sink \"bus\": field `stream`", "missing"),
        ("sink \"bus\": field `subject`", "wildcards"),
        ("sink \"bus\": field `token_env`", "MISSING_VAR"),
        ("sink \"bus\": field `cert_file`", "cannot read"),
        ("sink \"bus\": field `key_file`", "private key"),
        ("sink \"bus\": field `batch_max_events`", "between 1"),
    ];
    for (prefix, needle) in expect {
        assert!(
            err.problems
                .iter()
                .any(|p| p.starts_with(prefix) && p.contains(needle)),
            "no problem {prefix} … {needle}; got {:#?}",
            err.problems
        );
    }
    assert!(!err.to_string().contains("Bearer abc"));
}

#[test]
fn tls_files_are_checked_and_go_together() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let err = parse(&out_sink(
        "syslog",
        &format!(
            r#"transport = "tcp"
address = "siem:514"
ca_file = {p:?}
cert_file = {p:?}
"#,
            p = not_pem.display().to_string()
        ),
    ))
    .unwrap_err();
    let all = err.problems.join("\n");
    assert!(
        all.contains("field `ca_file`: ") && all.contains("does not hold PEM certificates"),
        "{all}"
    );
    assert!(
        all.contains("field `key_file`: `cert_file` is set"),
        "{all}"
    );
    assert!(all.contains("need transport = \"tls\""), "{all}");
}

#[test]
fn http_basic_auth_needs_both_halves() {
    let err = parse(&out_sink(
        "http",
        r#"url = "https://example.com/in"
username = "collector"
"#,
    ))
    .unwrap_err();
    assert!(
        err.problems
            .iter()
            .any(|p| p.contains("field `password_file`")),
        "{:?}",
        err.problems
    );
    let ok = parse(&out_sink(
        "http",
        r#"url = "https://example.com/in"
username = "collector"
password_file = "TOKEN_FILE"
"#,
    ))
    .unwrap();
    let h = http(&ok, 0);
    assert!(
        matches!(&h.auth, HttpAuth::Basic { username, password } if username == "collector" && password.expose() == TOKEN)
    );
}

/// Every key a type's table holds is read by that type's validator: none is accepted and
/// then ignored; and a key of another type is refused with the fix.
#[test]
fn every_key_in_a_type_s_table_is_read_by_its_validator() {
    let env = Env::from_pairs(&[("X", "secret")]);
    for sink_type in TYPES {
        let mut table = toml::Table::new();
        for name in sink_type.key_names() {
            let value = match sink_type.key(name).map(|k| k.kind) {
                Some(Kind::Flag) => toml::Value::Boolean(true),
                Some(Kind::Count) => toml::Value::Integer(1),
                Some(Kind::TextList) => toml::Value::Array(vec!["x".into()]),
                Some(Kind::TextTable) => {
                    toml::Value::Table([("X-A".to_string(), "x".into())].into_iter().collect())
                }
                _ => toml::Value::String("x".into()),
            };
            table.insert(name.to_string(), value);
        }
        let raw = Fragment::new(&table, Some(sink_type));
        let mut report = crate::config::Report::default();
        assert!(raw.check(&mut report, "sink"), "{:?}", report.problems);
        let _ = (sink_type.validate)(&mut report, &env, "sink", &raw);
        assert!(
            raw.unread().is_empty(),
            "{} sink: keys in the table but never read: {:?}",
            sink_type.name,
            raw.unread()
        );
    }
    let err = parse(
        "[[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"/tmp/x\"\nstream = \"DUO\"\ncolour = 1\n",
    )
    .unwrap_err();
    assert!(
        err.problems
            .iter()
            .any(|p| p.contains("field `stream`: not used by a file sink")),
        "{:?}",
        err.problems
    );
    assert!(
        err.problems
            .iter()
            .any(|p| p.contains("unknown key `colour`") && p.contains("batch_max_bytes")),
        "{:?}",
        err.problems
    );
}

#[test]
fn http_idempotency_header_defaults_renames_and_turns_off() {
    let sink = |extra: &str| {
        format!(
            "[[sink]]\nname = \"out\"\ntype = \"http\"\nurl = \"https://siem.example.com/in\"\n{extra}\n"
        )
    };
    let header = |extra: &str| {
        let c = parse(&sink(extra)).unwrap();
        let h = http(&c, 0);
        h.idempotency_header.clone()
    };
    assert_eq!(header(""), Some("Idempotency-Key".to_string()));
    assert_eq!(
        header("idempotency_header = \"X-Batch-Id\""),
        Some("X-Batch-Id".to_string())
    );
    assert_eq!(header("idempotency_header = \"\""), None);
    for bad in [
        "idempotency_header = \"Bad Header\"",
        "idempotency_header = \"Content-Type\"",
        "idempotency_header = \"X-Id\"\nheaders = { \"x-id\" = \"1\" }",
    ] {
        let err = parse(&sink(bad)).unwrap_err().to_string();
        assert!(err.contains("idempotency_header"), "{bad}: {err}");
    }
    let err = parse(
        "[[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"/tmp/x\"\nidempotency_header = \"X\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("idempotency_header"), "{err}");
}

#[test]
fn two_file_sinks_cannot_share_a_path() {
    let file = |name: &str, path: &str| {
        format!("[[sink]]\nname = \"{name}\"\ntype = \"file\"\npath = \"{path}\"\n")
    };
    let both = format!(
        "{}{}",
        file("out", "/var/log/duo/a.jsonl"),
        file("copy", "/var/log/duo/a.jsonl")
    );
    let err = parse(&both).unwrap_err().to_string();
    assert!(
        err.contains("sink \"copy\"") && err.contains("path") && err.contains("sink \"out\""),
        "{err}"
    );
    let apart = format!(
        "{}{}",
        file("out", "/var/log/duo/a.jsonl"),
        file("copy", "/var/log/duo/b.jsonl")
    );
    parse(&apart).unwrap();
}

/// The README's section on each sink type shows every key of that type's table.
#[test]
fn the_readme_shows_every_key_of_each_sink_type() {
    let readme = include_str!("../../README.md");
    let section = |heading: &str| {
        let start = readme
            .find(heading)
            .unwrap_or_else(|| panic!("README has no {heading:?}"));
        let rest = &readme[start + heading.len()..];
        &rest[..rest.find("\n### ").unwrap_or(rest.len())]
    };
    let mut missing = Vec::new();
    for (sink_type, heading) in [
        ("syslog", "### syslog"),
        ("http", "### HTTP"),
        ("nats", "### NATS"),
    ] {
        let text = section(heading);
        let keys = TYPES.iter().find(|t| t.name == sink_type).unwrap();
        for key in keys.key_names() {
            let shown = text.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                l.starts_with(&format!("{key} =")) || l.contains(&format!("`{key}`"))
            });
            if !shown {
                missing.push(format!("{sink_type}.{key}"));
            }
        }
    }
    assert!(missing.is_empty(), "README lacks {missing:?}");
}
