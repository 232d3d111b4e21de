use std::os::unix::fs::PermissionsExt;

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::config::{
    ConfigError, Env, LogFormat, DEFAULT_REQUESTS_PER_MINUTE, DEFAULT_STATE_DIR, MAX_LOOKBACK,
};
use crate::log_kind::LogKind;
use crate::sig_version::SigVersion;

const SECRET: &str = "s3cr3t-Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk";

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_config_str(text, "test.toml", &Env::from_pairs(&[("DUO_SKEY", SECRET)]))
}

/// A valid integration "corp" (secret key from `DUO_SKEY`) sending to the sinks `sinks`
/// names, with `extra` keys.
pub(crate) fn corp_integration(sinks: &str, extra: &str) -> String {
    format!(
        r#"
[[integration]]
name = "corp"
api_hostname = "api-abcd1234.duosecurity.com"
ikey = "DIWJ8X6AEYOR5OMC6TQ1"
skey_env = "DUO_SKEY"
sinks = {sinks}
{extra}
"#
    )
}

fn valid_integration(extra: &str) -> String {
    format!(
        r#"{}
[[sink]]
name = "local"
type = "file"
path = "/tmp/x.jsonl"
"#,
        corp_integration("[\"local\"]", extra)
    )
}

fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.problems,
    }
}

fn assert_problem(text: &str, needles: &[&str]) {
    let p = problems(text);
    assert!(
        p.iter()
            .any(|line| needles.iter().all(|n| line.contains(n))),
        "no problem mentions {needles:?}; got {p:#?}"
    );
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(&valid_integration("")).unwrap();
    let i = &c.integrations[0];
    assert_eq!(i.logs, LogKind::ALL.to_vec());
    assert!(!i.logs_explicit && !i.accounts_api);
    assert_eq!(i.max_in_flight, 4);
    assert_eq!(i.requests_per_minute, DEFAULT_REQUESTS_PER_MINUTE);
    assert_eq!(i.account_refresh, Duration::from_secs(3600));
    assert_eq!(i.schedule.as_str(), "0 */5 * * * *");
    assert_eq!(i.initial_lookback, Duration::from_secs(86_400));
    assert_eq!(i.delay, Duration::from_secs(120));
    assert_eq!(i.signature, SigVersion::V5);
    assert_eq!(i.skey.expose(), SECRET);
    assert_eq!(c.collector.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn requests_per_minute_is_a_ceiling_in_range() {
    for (value, ok) in [
        ("6", true),
        ("0.5", true),
        ("0", true),
        ("0.1", false),
        ("601", false),
        ("-3", false),
    ] {
        let text = valid_integration(&format!("requests_per_minute = {value}"));
        if ok {
            assert!(parse(&text).is_ok(), "{value}: {:?}", parse(&text).err());
        } else {
            assert_problem(&text, &["`requests_per_minute`", "out of range"]);
        }
    }
    let c = parse(&valid_integration("requests_per_minute = 6")).unwrap();
    assert_eq!(c.integrations[0].requests_per_minute, 6.0);
}

#[test]
fn state_directory_env_is_the_default_state_dir() {
    let c = parse_config_str(
        &valid_integration(""),
        "t",
        &Env::from_pairs(&[("DUO_SKEY", SECRET), ("STATE_DIRECTORY", "/run/x")]),
    )
    .unwrap();
    assert_eq!(c.collector.state_dir, PathBuf::from("/run/x"));
}

#[test]
fn unknown_keys_everywhere() {
    assert_problem(
        &valid_integration("lgos = [\"authentication\"]"),
        &["integration \"corp\"", "unknown key `lgos`"],
    );
    assert_problem(
        &format!("[collector]\nstate_dri = \"/x\"\n{}", valid_integration("")),
        &["[collector]", "`state_dri`"],
    );
    assert_problem(
        &format!("{}\ncolour = 1\n", valid_integration(""))
            .replace("path = \"/tmp/x.jsonl\"\ncolour", "colour"),
        &["unknown key `colour`"],
    );
    assert_problem(
        &format!("bogus = 1\n{}", valid_integration("")),
        &["top level", "`bogus`"],
    );
}

#[test]
fn duplicate_names_and_missing_sink_and_bad_kind() {
    let twice = format!("{}{}", valid_integration(""), valid_integration(""));
    assert_problem(&twice, &["integration \"corp\"", "`name`", "duplicate"]);
    assert_problem(&twice, &["sink \"local\"", "duplicate"]);
    assert_problem(
        &valid_integration("").replace("sinks = [\"local\"]", "sinks = [\"nowhere\"]"),
        &["integration \"corp\"", "`sinks`", "\"nowhere\""],
    );
    assert_problem(
        &valid_integration("logs = [\"authentication\", \"auth\"]"),
        &["`logs`", "\"auth\"", "authentication"],
    );
    assert_problem(
        &valid_integration("").replace("name = \"corp\"", "name = \"corp ltd\""),
        &["`name`", "letters, digits"],
    );
}

#[test]
fn api_hostname_must_be_only_the_host() {
    for (bad, what) in [
        ("https://api-abcd1234.duosecurity.com", "scheme"),
        ("api-abcd1234.duosecurity.com/admin", "path"),
        ("api-abcd1234.duosecurity.com:443", "port"),
    ] {
        let text = valid_integration("").replace("api-abcd1234.duosecurity.com", bad);
        assert_problem(
            &text,
            &[
                "integration \"corp\"",
                "`api_hostname`",
                what,
                "api-XXXXXXXX.duosecurity.com",
            ],
        );
    }
    let c =
        parse(&valid_integration("").replace("api-abcd1234.duosecurity.com", "duo.example.org"))
            .unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("`api_hostname`") && w.contains("duosecurity.com")),
        "{:?}",
        c.warnings
    );
    let c = parse(&valid_integration("").replace(
        "api-abcd1234.duosecurity.com",
        "API-ABCD1234.duofederal.com",
    ))
    .unwrap();
    assert_eq!(
        c.integrations[0].api_hostname,
        "api-abcd1234.duofederal.com"
    );
    assert!(c.warnings.is_empty());
}

#[test]
fn durations_and_schedule() {
    assert_problem(
        &valid_integration("initial_lookback = \"181d\""),
        &["`initial_lookback`", "180"],
    );
    assert_problem(
        &valid_integration("initial_lookback = \"one day\""),
        &["`initial_lookback`", "\"one day\""],
    );
    assert_problem(
        &valid_integration("delay = \"2 fortnights\""),
        &["`delay`", "not a duration"],
    );
    assert_problem(
        &valid_integration("schedule = \"*/5 * * * *\""),
        &["`schedule`", "\"*/5 * * * *\"", "seconds"],
    );
    let c = parse(&valid_integration(
        "initial_lookback = \"180d\"\ndelay = \"30s\"",
    ))
    .unwrap();
    assert_eq!(c.integrations[0].initial_lookback, MAX_LOOKBACK);
    assert!(c.warnings.iter().any(|w| w.contains("`delay`")));
}

#[test]
fn secrets_exactly_one_source_readable_and_non_empty() {
    let dir = tempfile::tempdir().unwrap();
    let both = valid_integration(&format!("skey = \"{SECRET}\""));
    assert_problem(&both, &["`skey`", "exactly one"]);
    let none = valid_integration("").replace("skey_env = \"DUO_SKEY\"\n", "");
    assert_problem(&none, &["`skey`", "missing"]);

    let missing = dir.path().join("nope.skey");
    let text = valid_integration("").replace(
        "skey_env = \"DUO_SKEY\"",
        &format!("skey_file = {:?}", missing.display().to_string()),
    );
    assert_problem(&text, &["`skey_file`", "nope.skey"]);
    // A directory cannot be read as a file, even by root.
    let text = valid_integration("").replace(
        "skey_env = \"DUO_SKEY\"",
        &format!("skey_file = {:?}", dir.path().display().to_string()),
    );
    assert_problem(&text, &["`skey_file`", "cannot read"]);

    let empty = dir.path().join("empty.skey");
    std::fs::write(&empty, "\n").unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = valid_integration("").replace(
        "skey_env = \"DUO_SKEY\"",
        &format!("skey_file = {:?}", empty.display().to_string()),
    );
    assert_problem(&text, &["`skey_file`", "empty"]);
    assert_problem(
        &valid_integration("").replace("DUO_SKEY\"", "NOT_SET_ANYWHERE\""),
        &["`skey_env`", "NOT_SET_ANYWHERE"],
    );

    let good = dir.path().join("good.skey");
    std::fs::write(&good, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = valid_integration("").replace(
        "skey_env = \"DUO_SKEY\"",
        &format!("skey_file = {:?}", good.display().to_string()),
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.integrations[0].skey.expose(), SECRET);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("`skey_file`") && w.contains("chmod 600")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn literal_secret_in_a_readable_config_warns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        valid_integration("").replace("skey_env = \"DUO_SKEY\"", &format!("skey = \"{SECRET}\"")),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = Config::load(&path).unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains("literal `skey`")),
        "{:?}",
        c.warnings
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let c = Config::load(&path).unwrap();
    assert!(!c.warnings.iter().any(|w| w.contains("literal `skey`")));
}

#[test]
fn connect_to_plain_http_only_to_loopback() {
    assert!(parse(&valid_integration("connect_to = \"http://127.0.0.1:8443\"")).is_ok());
    assert!(parse(&valid_integration("connect_to = \"http://[::1]:8443\"")).is_ok());
    assert!(parse(&valid_integration(
        "connect_to = \"https://proxy.example.com:8443\""
    ))
    .is_ok());
    assert_problem(
        &valid_integration("connect_to = \"http://10.0.0.5:8443\""),
        &["`connect_to`", "loopback"],
    );
    assert_problem(
        &valid_integration("connect_to = \"ftp://127.0.0.1\""),
        &["`connect_to`", "ftp"],
    );
    assert_problem(
        &valid_integration("connect_to = \"https://proxy/x\""),
        &["`connect_to`", "path"],
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = valid_integration(
        "initial_lookback = \"999d\"\nschedule = \"nope\"\nlogs = [\"x\"]\nsignature = \"v9\"",
    )
    .replace("api-abcd1234.duosecurity.com", "https://h")
    .replace("type = \"file\"", "type = \"kafka\"");
    let p = problems(&text);
    for field in [
        "`initial_lookback`",
        "`schedule`",
        "`logs`",
        "`signature`",
        "`api_hostname`",
        "`type`",
    ] {
        assert!(
            p.iter().any(|l| l.contains(field)),
            "{field} missing from {p:#?}"
        );
    }
}

#[test]
fn secrets_never_appear_in_debug_or_errors() {
    let c = parse(&valid_integration("")).unwrap();
    assert!(!format!("{c:?}").contains(SECRET));
    assert!(!format!("{:#?}", c.integrations).contains(SECRET));
    let text = valid_integration(&format!("skey = \"{SECRET}\"\nbogus = 1"));
    let e = parse(&text).unwrap_err();
    assert!(!e.to_string().contains(SECRET), "{e}");
    // A type error in a table that holds the secret must not echo it either.
    let text = valid_integration(&format!("page_size = \"{SECRET}\""));
    let e = parse(&text).unwrap_err();
    assert!(!e.to_string().contains(SECRET), "{e}");
}

#[test]
fn toml_syntax_errors_do_not_echo_the_line() {
    let text = valid_integration(&format!("skey = \"{SECRET}\nlogs = []"));
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("not valid TOML") && e.contains("line 8"), "{e}");
    assert!(!e.contains(SECRET), "{e}");
}

#[test]
fn skey_credential_reads_from_the_credentials_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cred = dir.path().join("corp-skey");
    std::fs::write(&cred, SECRET).unwrap();
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o400)).unwrap();
    let text =
        valid_integration("").replace("skey_env = \"DUO_SKEY\"", "skey_credential = \"corp-skey\"");
    let dir_s = dir.path().display().to_string();
    let c = parse_config_str(
        &text,
        "t",
        &Env::from_pairs(&[("CREDENTIALS_DIRECTORY", &dir_s)]),
    )
    .unwrap();
    assert_eq!(c.integrations[0].skey.expose(), SECRET);
    let e = parse_config_str(&text, "t", &Env::from_pairs(&[])).unwrap_err();
    assert!(
        e.to_string().contains("`skey_credential`") && e.to_string().contains("LoadCredential"),
        "{e}"
    );
}

#[test]
fn proxy_key_is_validated_and_its_credentials_stay_hidden() {
    let c = parse(&valid_integration("")).unwrap();
    assert_eq!(
        c.integrations[0].proxy,
        crate::proxy_setting::ProxySetting::FromEnvironment
    );
    let c = parse(&valid_integration("proxy = \"none\"")).unwrap();
    assert_eq!(
        c.integrations[0].proxy,
        crate::proxy_setting::ProxySetting::Disabled
    );

    let c = parse(&valid_integration(&format!(
        "proxy = \"http://svc-duo:{SECRET}@proxy.corp:3128\""
    )))
    .unwrap();
    assert!(matches!(
        &c.integrations[0].proxy,
        crate::proxy_setting::ProxySetting::Explicit(url) if url.has_credentials()
    ));
    assert!(!format!("{c:?}").contains(SECRET));
    assert!(format!("{c:?}").contains("http://***@proxy.corp:3128"));

    let no_port = parse(&valid_integration("proxy = \"http://proxy.corp\"")).unwrap();
    assert!(
        no_port
            .warnings
            .iter()
            .any(|w| w.contains("`proxy`") && w.contains("3128")),
        "{:?}",
        no_port.warnings
    );

    for bad in [
        format!("proxy = \"socks5://u:{SECRET}@proxy.corp:1080\""),
        format!("proxy = \"http://u:{SECRET}@proxy.corp:3128/pac\""),
        format!("proxy = \"http://u:{SECRET}@:3128\""),
    ] {
        let text = valid_integration(&bad);
        assert_problem(&text, &["integration \"corp\"", "field `proxy`"]);
        let e = parse(&text).unwrap_err().to_string();
        assert!(!e.contains(SECRET), "{e}");
    }
}

#[test]
fn a_readable_config_with_proxy_credentials_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = valid_integration("proxy = \"http://svc:pw@proxy.corp:3128\"")
        .replace("skey_env = \"DUO_SKEY\"", "skey_file = \"/dev/null/none\"");
    let skey = dir.path().join("skey");
    std::fs::write(&skey, SECRET).unwrap();
    std::fs::set_permissions(&skey, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = text.replace("/dev/null/none", &skey.display().to_string());
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = Config::load(&path).unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("proxy credentials") && w.contains("chmod 600")),
        "{:?}",
        c.warnings
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let c = Config::load(&path).unwrap();
    assert!(
        !c.warnings.iter().any(|w| w.contains("proxy")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn the_example_config_shows_every_accepted_key() {
    let example = include_str!("../../config.toml.example");
    let mut missing = Vec::new();
    for key in crate::config::COLLECTOR_KEYS
        .iter()
        .chain(crate::config::INTEGRATION_KEYS)
        .chain(&crate::sink::config::accepted_keys())
        .chain(&crate::settings::state_keys())
    {
        let shown = example
            .lines()
            .map(|l| l.trim_start_matches(['#', ' ']))
            .any(|l| l.starts_with(&format!("{key} =")) || l.contains(&format!(" {key} =")));
        if !shown {
            missing.push(*key);
        }
    }
    assert!(missing.is_empty(), "config.toml.example lacks {missing:?}");
}

#[test]
fn auth_api_secret_keys_are_read_like_skey() {
    let from_env = parse(&valid_integration(
        "auth_ikey = \"DIAUTHAUTHAUTHAUTH01\"\nauth_skey_env = \"DUO_SKEY\"",
    ))
    .unwrap();
    let keys = from_env.integrations[0].auth_api.as_ref().unwrap();
    assert_eq!(
        (keys.ikey.as_str(), keys.skey.expose()),
        ("DIAUTHAUTHAUTHAUTH01", SECRET)
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("corp-auth.skey"), SECRET).unwrap();
    let env = Env::from_pairs(&[("DUO_SKEY", SECRET)])
        .with_credentials_directory(Some(dir.path().to_path_buf()));
    let text = valid_integration(
        "auth_ikey = \"DIAUTHAUTHAUTHAUTH01\"\nauth_skey_credential = \"corp-auth.skey\"",
    );
    let from_credential = parse_config_str(&text, "test.toml", &env).unwrap();
    let keys = from_credential.integrations[0].auth_api.as_ref().unwrap();
    assert_eq!(keys.skey.expose(), SECRET);

    assert_problem(
        &valid_integration(
            "auth_ikey = \"DIAUTHAUTHAUTHAUTH01\"\nauth_skey_file = \"/nonexistent/auth.skey\"",
        ),
        &[
            "field `auth_skey_file`",
            "cannot read /nonexistent/auth.skey",
        ],
    );
    assert_problem(
        &valid_integration("auth_ikey = \"DIAUTHAUTHAUTHAUTH01\"\nauth_skey_env = \"DUO_SKEY\"\nauth_skey_file = \"/x\""),
        &["field `auth_skey`", "set exactly one of `auth_skey_file`"],
    );
    assert_problem(
        &valid_integration("auth_skey_env = \"DUO_SKEY\""),
        &["field `auth_ikey`", "need both"],
    );
}

#[test]
fn log_format_and_schedule_are_typed() {
    let c = parse(&format!(
        "[collector]\nlog_format = \"json\"\n{}",
        valid_integration("schedule = \"*/10 * * * * *\"")
    ))
    .unwrap();
    assert_eq!(c.collector.log_format, Some(LogFormat::Json));
    assert_eq!(c.integrations[0].schedule.as_str(), "*/10 * * * * *");
    assert_problem(
        &format!(
            "[collector]\nlog_format = \"xml\"\n{}",
            valid_integration("")
        ),
        &[
            "[collector]: field `log_format`",
            "use \"text\" or \"json\"",
        ],
    );
}

#[test]
fn inventory_keys_default_off_and_name_the_field_when_wrong() {
    let i = &parse(&valid_integration("")).unwrap().integrations[0];
    assert!(i.inventory.is_empty());
    assert_eq!(i.inventory_schedule.as_str(), "0 0 */6 * * *");
    assert_eq!(i.inactive_after, Duration::from_secs(90 * 86_400));

    let c = parse(&valid_integration(
        "inventory = [\"users\", \"summary\", \"users\"]\ninventory_schedule = \"0 30 2 * * *\"\ninactive_after = \"30d\"",
    ))
    .unwrap();
    let i = &c.integrations[0];
    use crate::inventory::InventoryKind;
    assert_eq!(
        i.inventory,
        vec![InventoryKind::Users, InventoryKind::Summary]
    );
    assert_eq!(i.inventory_schedule.as_str(), "0 30 2 * * *");
    assert_eq!(i.inactive_after, Duration::from_secs(30 * 86_400));

    assert_problem(
        &valid_integration("inventory = [\"users\", \"groupz\"]"),
        &["inventory", "groupz", "\"users\"", "\"summary\""],
    );
    assert_problem(
        &valid_integration("inventory_schedule = \"every six hours\""),
        &["inventory_schedule"],
    );
    assert_problem(
        &valid_integration("inactive_after = \"ninety\""),
        &["inactive_after", "duration"],
    );
}
