//! Field values shared by the simulated records (people, applications, places, devices,
//! timestamps), drawn from the record's own [`Rng`].

use serde_json::{json, Value};

use super::data::Dataset;
use super::rng::{duo_key, mix, uuid_str, uuid_v4, Rng};

pub(super) fn sekey(id: u128) -> String {
    duo_key("SE", (id >> 64) as u64 ^ (id as u64).rotate_left(17))
}

pub(super) fn random_uuid(rng: &mut Rng) -> String {
    uuid_str(uuid_v4(rng.next_u64(), rng.next_u64()))
}

/// `2020-08-17T13:43:58.335969+00:00`
pub(super) fn iso_us(ts_us: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(ts_us) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(),
        None => "1970-01-01T00:00:00.000000+00:00".to_string(),
    }
}

/// `2021-07-20T11:44:37+00:00`
pub(super) fn iso_s(ts_s: i64) -> String {
    match chrono::DateTime::from_timestamp(ts_s, 0) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string(),
        None => "1970-01-01T00:00:00+00:00".to_string(),
    }
}

const USER_NAMES: &[&str] = &[
    "alice",
    "bob.smith",
    "jürgen.müller",
    "zoë.dupont",
    "李雷",
    "ольга.иванова",
    "o'brien",
    "josé.garcía",
    "ana maria",
    "søren.kierkegaard",
    "田中太郎",
    "nguyễn.văn.an",
    "μαρία",
    "svc-backup",
    "admin",
    "amanda_tucker",
    "narroway",
    "émilie",
    "kowalski",
    "user🙂",
];

const GROUPS: &[&str] = &[
    "Duo Users",
    "VPN Users",
    "Admins",
    "Contractors",
    "Ünïcödé Grüppe",
];

pub(super) struct User {
    pub name: &'static str,
    pub key: String,
    pub email: String,
    pub groups: Vec<&'static str>,
}

pub(super) fn user(ds: &Dataset, rng: &mut Rng) -> User {
    let j = rng.below(USER_NAMES.len() as u64);
    let name = USER_NAMES[j as usize];
    let mut ur = Rng::new(mix(ds.seed, 0x05E4 + j));
    let email = if ur.pct(15) {
        String::new()
    } else {
        format!("{}@example.com", name.replace(' ', "."))
    };
    let n_groups = ur.below(3) as usize;
    let groups = (0..n_groups).map(|_| *ur.pick(GROUPS)).collect();
    User {
        name,
        key: duo_key("DU", mix(ds.seed, 0x0DE5 + j)),
        email,
        groups,
    }
}

const APPS: &[&str] = &[
    "Microsoft Azure Active Directory",
    "Cisco ASA VPN",
    "Duo Admin Panel",
    "RDP – Windows Logon",
    "Okta",
    "Citrix Gateway",
    "SSH Bastion",
    "Salesforce",
];

pub(super) fn app(ds: &Dataset, rng: &mut Rng) -> (String, &'static str) {
    let j = rng.below(APPS.len() as u64);
    (duo_key("DI", mix(ds.seed, 0xA990 + j)), APPS[j as usize])
}

pub(super) fn location(rng: &mut Rng) -> Value {
    const LOCS: &[(&str, &str, &str)] = &[
        ("Ann Arbor", "Michigan", "United States"),
        ("München", "Bayern", "Germany"),
        ("São Paulo", "São Paulo", "Brazil"),
        ("Tokyo", "Tokyo", "Japan"),
        ("Kraków", "Lesser Poland", "Poland"),
        ("Austin", "Texas", "United States"),
    ];
    if rng.pct(8) {
        return json!({"city": null, "state": null, "country": null});
    }
    let (c, s, n) = *rng.pick(LOCS);
    json!({"city": c, "state": s, "country": n})
}

pub(super) fn ip(rng: &mut Rng) -> String {
    match rng.below(20) {
        0 | 1 => format!(
            "2001:db8:{:x}::{:x}",
            rng.below(0xffff),
            rng.range(1, 0xffff)
        ),
        2 | 3 => format!(
            "198.51.100.{}:{}",
            rng.range(1, 254),
            rng.range(1024, 65535)
        ),
        4 | 5 => format!(
            "[2001:db8::{:x}]:{}",
            rng.range(1, 0xffff),
            rng.range(1024, 65535)
        ),
        6 | 7 => format!(
            "10.{}.{}.{}",
            rng.below(256),
            rng.below(256),
            rng.range(1, 254)
        ),
        // The looser IPv6-with-port spellings Elastic's pipeline accepts (RFC 5952 §6).
        8 => format!(
            "2001:db8::{:x}{}{}",
            rng.range(1, 0xffff),
            rng.pick(&["#", "p", ".", " port "]),
            rng.range(1024, 65535)
        ),
        9 => format!(
            "2001:db8:0:0:0:0:{:x}:{:x}:{}",
            rng.below(0xffff),
            rng.range(1, 0xffff),
            rng.range(1024, 65535)
        ),
        _ => format!("203.0.113.{}", rng.range(1, 254)),
    }
}

pub(super) fn phone(rng: &mut Rng) -> String {
    format!("+1734555{:04}", rng.below(10000))
}

fn flag(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0 | 1 => json!("unknown"),
        2 => Value::Null,
        3..=5 => json!(false),
        _ => json!(true),
    }
}

fn security_agents(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => json!([{"security_agent": "Cisco AnyConnect", "version": "4.10.07061"}]),
        1 => json!([
            {"security_agent": "CrowdStrike Falcon", "version": "7.05.17706.0"},
            {"security_agent": "Cisco Secure Endpoint", "version": "8.2.1"}
        ]),
        2 => json!([]),
        3 => Value::Null,
        _ => json!("unknown"),
    }
}

pub(super) fn access_device(rng: &mut Rng) -> Value {
    const OS: &[(&str, &str)] = &[
        ("Windows", "10"),
        ("Windows", "11"),
        ("Mac OS X", "14.2.1"),
        ("iOS", "17.1"),
        ("Android", "14"),
        ("Linux", ""),
    ];
    const BROWSERS: &[(&str, &str)] = &[
        ("Chrome", "120.0.6099.130"),
        ("Firefox", "121.0"),
        ("Safari", "17.1"),
        ("Edge", "120.0.2210.91"),
    ];
    let (os, osv) = *rng.pick(OS);
    let (browser, browser_version) = if rng.pct(10) {
        (Value::Null, Value::Null)
    } else {
        let (b, v) = *rng.pick(BROWSERS);
        (json!(b), json!(v))
    };
    let hostname = if rng.pct(60) {
        Value::Null
    } else {
        json!(format!("ws-{:04}.corp.example.com", rng.below(10000)))
    };
    let epkey = if rng.pct(50) {
        Value::Null
    } else {
        json!(duo_key("EP", rng.next_u64()))
    };
    json!({
        "browser": browser,
        "browser_version": browser_version,
        "epkey": epkey,
        "flash_version": if rng.pct(90) { json!("uninstalled") } else { json!("32.0.0.465") },
        "hostname": hostname,
        "ip": ip(rng),
        "is_encryption_enabled": flag(rng),
        "is_firewall_enabled": flag(rng),
        "is_password_set": flag(rng),
        "java_version": if rng.pct(85) { json!("uninstalled") } else { json!("1.8.0_391") },
        "location": location(rng),
        "os": os,
        "os_version": if osv.is_empty() { Value::Null } else { json!(osv) },
        "security_agents": security_agents(rng),
    })
}
