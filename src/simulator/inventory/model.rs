//! The tenant's inventory: users with their phones, hardware tokens, WebAuthn credentials and
//! groups; administrators; trusted endpoints; applications; telephony credits.
//!
//! Shaped after Duo's Admin API objects (duo-api.md §2.9), generated deterministically from a
//! seed with the mix a posture report looks for: users not enrolled, in bypass, locked out,
//! disabled, never or long ago logged in, sharing a phone, or holding only SMS/phone-call
//! factors. Tests mutate it between snapshots through `SimHandle::mutate_inventory`.

use std::collections::HashMap;

use serde::Serialize;

use super::super::rng::duo_key;
use super::super::rng::{mix, Rng};

const DAY_S: u64 = 86_400;

/// How many entities of each kind an account holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InventoryCounts {
    pub users: usize,
    pub admins: usize,
    pub groups: usize,
    pub endpoints: usize,
    pub integrations: usize,
}

impl Default for InventoryCounts {
    fn default() -> Self {
        InventoryCounts {
            users: 60,
            admins: 6,
            groups: 5,
            endpoints: 25,
            integrations: 8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub group_id: String,
    pub name: String,
    pub desc: String,
    pub status: String,
    pub push_enabled: bool,
    pub sms_enabled: bool,
    pub voice_enabled: bool,
    pub mobile_otp_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phone {
    pub phone_id: String,
    pub number: String,
    pub extension: String,
    pub name: String,
    /// `Mobile` or `Landline`.
    #[serde(rename = "type")]
    pub phone_type: String,
    pub platform: String,
    pub model: String,
    /// Some of `auto`, `push`, `phone`, `sms`, `mobile_otp`.
    pub capabilities: Vec<String>,
    pub activated: bool,
    pub sms_passcodes_sent: bool,
    /// ISO 8601 without zone, as Duo sends it; empty when never seen.
    pub last_seen: String,
    pub encrypted: String,
    pub fingerprint: String,
    pub screenlock: String,
    pub tampered: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Token {
    pub token_id: String,
    pub serial: String,
    /// `h6`, `h8`, `t6`, `t8`, `yk`, `d1`.
    #[serde(rename = "type")]
    pub token_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebauthnCredential {
    pub webauthnkey: String,
    pub credential_name: String,
    pub label: String,
    pub date_added: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub user_id: String,
    pub username: String,
    /// `active`, `bypass`, `disabled`, `locked out`, `pending deletion`.
    pub status: String,
    pub lockout_reason: Option<String>,
    pub is_enrolled: bool,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds; `None`: never logged in.
    pub last_login: Option<i64>,
    pub realname: String,
    pub email: String,
    pub notes: String,
    /// Ids into [`Inventory::phones`]; a phone may belong to several users.
    pub phone_ids: Vec<String>,
    pub tokens: Vec<Token>,
    pub webauthn: Vec<WebauthnCredential>,
    /// Ids into [`Inventory::groups`].
    pub group_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Admin {
    pub admin_id: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    /// `Owner`, `Administrator`, `Application Manager`, `User Manager`, `Help Desk`,
    /// `Billing`, `Read-only`.
    pub role: String,
    /// `Active`, `Disabled`, `Expired`, `Pending Activation`.
    pub status: String,
    pub created: i64,
    pub last_login: Option<i64>,
    pub password_change_required: bool,
    pub restricted_by_admin_units: bool,
    pub admin_units: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Browser {
    pub browser_family: String,
    pub browser_version: String,
    pub flash_version: String,
    pub java_version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Endpoint {
    pub epkey: String,
    pub device_name: String,
    pub username: String,
    pub email: String,
    pub os_family: String,
    pub os_version: String,
    pub os_build: String,
    pub model: String,
    #[serde(rename = "type")]
    pub endpoint_type: String,
    pub browsers: Vec<Browser>,
    pub disk_encryption_status: String,
    pub firewall_status: String,
    pub password_status: String,
    pub trusted_endpoint: bool,
    pub last_updated: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Integration {
    pub integration_key: String,
    /// Duo returns it to admins with the right permission: a collector must never forward it.
    pub secret_key: String,
    pub name: String,
    #[serde(rename = "type")]
    pub integration_type: String,
    pub notes: String,
    pub user_access: String,
    pub groups_allowed: Vec<String>,
    pub greeting: String,
    pub self_service_allowed: bool,
    pub username_normalization_policy: String,
    pub policy_key: String,
    pub prompt_v4_enabled: bool,
}

/// One account's inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    pub users: Vec<User>,
    pub phones: Vec<Phone>,
    pub groups: Vec<Group>,
    pub admins: Vec<Admin>,
    pub endpoints: Vec<Endpoint>,
    pub integrations: Vec<Integration>,
    pub telephony_credits_remaining: i64,
}

const FIRST: &[&str] = &[
    "Ada", "Björn", "Chen", "Dana", "Émile", "Farah", "Gus", "Hana", "Ivan", "Joy", "Kofi", "Lena",
    "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Uma", "Viktor", "Wen",
    "Yara", "Zoë",
];
const LAST: &[&str] = &[
    "Okafor",
    "Lindqvist",
    "Nakamura",
    "García",
    "Müller",
    "Haddad",
    "Kowalski",
    "Novak",
    "O'Brien",
    "Rossi",
    "Singh",
    "Dubois",
    "Petrov",
    "Silva",
    "Tanaka",
];
const GROUP_NAMES: &[&str] = &[
    "Engineering",
    "Finance",
    "Help Desk",
    "Contractors",
    "Executives",
    "Sales EMEA",
    "Unenrolled-Exempt",
];
const ADMIN_ROLES: &[&str] = &[
    "Owner",
    "Administrator",
    "Application Manager",
    "User Manager",
    "Help Desk",
    "Billing",
    "Read-only",
];
const APP_TYPES: &[(&str, &str)] = &[
    ("Microsoft 365", "microsoft"),
    ("Cisco AnyConnect", "ciscoasa"),
    ("Okta", "okta"),
    ("SSH Servers", "unix"),
    ("Windows Logon", "rdp"),
    ("Admin API", "adminapi"),
    ("Web SDK", "websdk"),
    ("Salesforce", "sso-salesforce"),
];
const OS: &[(&str, &str)] = &[
    ("Windows", "10.0.19045"),
    ("Mac OS X", "14.5"),
    ("Linux", "6.1"),
    ("iOS", "17.5"),
    ("Android", "14"),
];

/// Duo's `last_seen` format: ISO 8601 without a zone.
fn iso_seconds(unix_s: i64) -> String {
    chrono::DateTime::from_timestamp(unix_s, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default()
}

fn pick<'a>(rng: &mut Rng, xs: &[&'a str]) -> &'a str {
    xs[rng.below(xs.len() as u64) as usize]
}

fn caps(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Inventory {
    /// A deterministic inventory for `seed`, with times relative to `now_s` (Unix seconds).
    pub fn generate(seed: u64, counts: &InventoryCounts, now_s: i64) -> Inventory {
        let mut rng = Rng::new(mix(seed, 0x1D_E7_17));
        let key =
            |prefix: &str, kind: u64, i: usize| duo_key(prefix, mix(mix(seed, kind), i as u64));
        let groups: Vec<Group> = (0..counts.groups)
            .map(|i| Group {
                group_id: key("DG", 1, i),
                name: match GROUP_NAMES.get(i) {
                    Some(n) => n.to_string(),
                    None => format!("Group {i}"),
                },
                desc: String::new(),
                status: "Active".to_string(),
                push_enabled: true,
                sms_enabled: true,
                voice_enabled: true,
                mobile_otp_enabled: true,
            })
            .collect();
        let mut users = Vec::with_capacity(counts.users);
        let mut phones: Vec<Phone> = Vec::new();
        for i in 0..counts.users {
            let first = pick(&mut rng, FIRST);
            let last = pick(&mut rng, LAST);
            let username = format!(
                "{}.{}{i}",
                first.to_lowercase(),
                last.to_lowercase().replace('\'', "")
            );
            let status = match rng.below(100) {
                0..=2 => "bypass",
                3..=6 => "disabled",
                7..=9 => "locked out",
                10 => "pending deletion",
                _ => "active",
            };
            let is_enrolled = rng.below(100) >= 8;
            let created = now_s - rng.range(DAY_S, 3 * 365 * DAY_S) as i64;
            let last_login = match rng.below(100) {
                0..=5 => None,
                6..=15 => Some(now_s - rng.range(91 * DAY_S, 400 * DAY_S) as i64),
                _ => Some(now_s - rng.below(60 * DAY_S) as i64),
            }
            .map(|t| t.max(created));
            let mut user = User {
                user_id: key("DU", 2, i),
                email: format!("{username}@example.com"),
                realname: format!("{first} {last}"),
                username,
                status: status.to_string(),
                is_enrolled,
                created,
                last_login,
                lockout_reason: (status == "locked out").then(|| "Failed Attempts".to_string()),
                notes: String::new(),
                phone_ids: Vec::new(),
                tokens: Vec::new(),
                webauthn: Vec::new(),
                group_ids: Vec::new(),
            };
            if !groups.is_empty() {
                for _ in 0..rng.below(3) {
                    let g = &groups[rng.below(groups.len() as u64) as usize];
                    if !user.group_ids.contains(&g.group_id) {
                        user.group_ids.push(g.group_id.clone());
                    }
                }
            }
            if is_enrolled {
                let roll = rng.below(100);
                if roll < 12 {
                    // SMS or phone call only: a weak factor set.
                    let id = key("DP", 3, phones.len());
                    phones.push(Phone::landline_or_sms(id, &mut rng));
                    user.phone_ids
                        .push(phones[phones.len() - 1].phone_id.clone());
                } else if roll < 15 && !phones.is_empty() {
                    // Shares a phone someone else already has.
                    let p = rng.below(phones.len() as u64) as usize;
                    user.phone_ids.push(phones[p].phone_id.clone());
                } else if roll < 85 {
                    let id = key("DP", 3, phones.len());
                    phones.push(Phone::smartphone(id, &mut rng, now_s));
                    user.phone_ids
                        .push(phones[phones.len() - 1].phone_id.clone());
                }
                if (80..92).contains(&roll) {
                    user.tokens.push(Token {
                        token_id: key("DH", 4, i),
                        serial: format!("{:08}", rng.below(100_000_000)),
                        token_type: ["h6", "yk", "d1"][rng.below(3) as usize].to_string(),
                    });
                }
                if roll >= 85 || rng.below(100) < 15 {
                    user.webauthn.push(WebauthnCredential {
                        webauthnkey: key("WA", 5, i),
                        credential_name: "Security Key".to_string(),
                        label: ["Touch ID", "YubiKey 5", "Windows Hello"][rng.below(3) as usize]
                            .to_string(),
                        date_added: created + rng.below(30 * DAY_S) as i64,
                    });
                }
            }
            users.push(user);
        }
        let admins = (0..counts.admins)
            .map(|i| {
                let first = pick(&mut rng, FIRST);
                let last = pick(&mut rng, LAST);
                Admin {
                    admin_id: key("DE", 6, i),
                    name: format!("{first} {last}"),
                    email: format!("admin{i}@example.com"),
                    phone: format!("+1555010{:04}", rng.below(10_000)),
                    role: if i == 0 {
                        "Owner".to_string()
                    } else {
                        pick(&mut rng, ADMIN_ROLES).to_string()
                    },
                    status: if rng.below(10) == 0 {
                        "Disabled"
                    } else {
                        "Active"
                    }
                    .to_string(),
                    created: now_s - rng.range(30 * DAY_S, 1000 * DAY_S) as i64,
                    last_login: (rng.below(10) != 0).then(|| now_s - rng.below(30 * DAY_S) as i64),
                    password_change_required: false,
                    restricted_by_admin_units: false,
                    admin_units: Vec::new(),
                }
            })
            .collect();
        let endpoints = (0..counts.endpoints)
            .map(|i| {
                let (os, version) = OS[rng.below(OS.len() as u64) as usize];
                let owner = users.get(rng.below(counts.users.max(1) as u64) as usize);
                Endpoint {
                    epkey: key("EP", 7, i),
                    device_name: format!("host-{i:04}"),
                    username: owner.map(|u| u.username.clone()).unwrap_or_default(),
                    email: owner.map(|u| u.email.clone()).unwrap_or_default(),
                    os_family: os.to_string(),
                    os_version: version.to_string(),
                    os_build: String::new(),
                    model: String::new(),
                    endpoint_type: String::new(),
                    browsers: vec![Browser {
                        browser_family: "Chrome".to_string(),
                        browser_version: format!("12{}.0", rng.below(10)),
                        flash_version: "uninstalled".to_string(),
                        java_version: "uninstalled".to_string(),
                    }],
                    disk_encryption_status: if rng.below(5) == 0 { "Off" } else { "On" }
                        .to_string(),
                    firewall_status: if rng.below(6) == 0 { "Off" } else { "On" }.to_string(),
                    password_status: "Set".to_string(),
                    trusted_endpoint: rng.below(4) != 0,
                    last_updated: now_s - rng.below(10 * DAY_S) as i64,
                }
            })
            .collect();
        let integrations = (0..counts.integrations)
            .map(|i| {
                let (name, kind) = APP_TYPES[i % APP_TYPES.len()];
                Integration {
                    integration_key: key("DI", 8, i),
                    secret_key: format!("{:040x}", u128::from(mix(seed, i as u64)) << 32),
                    name: if i < APP_TYPES.len() {
                        name.to_string()
                    } else {
                        format!("{name} {i}")
                    },
                    integration_type: kind.to_string(),
                    notes: String::new(),
                    user_access: "ALL_USERS".to_string(),
                    groups_allowed: Vec::new(),
                    greeting: String::new(),
                    self_service_allowed: false,
                    username_normalization_policy: "Simple".to_string(),
                    policy_key: String::new(),
                    prompt_v4_enabled: true,
                }
            })
            .collect();
        Inventory {
            users,
            phones,
            groups,
            admins,
            endpoints,
            integrations,
            telephony_credits_remaining: 100 + rng.below(900) as i64,
        }
    }

    /// Phone id → index into `phones`.
    pub fn phone_index(&self) -> HashMap<&str, usize> {
        self.phones
            .iter()
            .enumerate()
            .map(|(i, p)| (p.phone_id.as_str(), i))
            .collect()
    }

    /// Phone id → the users holding it, in user order.
    pub fn phone_users(&self) -> HashMap<&str, Vec<usize>> {
        let mut out: HashMap<&str, Vec<usize>> = HashMap::new();
        for (u, user) in self.users.iter().enumerate() {
            for p in &user.phone_ids {
                out.entry(p.as_str()).or_default().push(u);
            }
        }
        out
    }

    pub fn user_by_name(&self, username: &str) -> Option<&User> {
        self.users.iter().find(|u| u.username == username)
    }
}

impl Phone {
    fn smartphone(phone_id: String, rng: &mut Rng, now_s: i64) -> Phone {
        let ios = rng.below(2) == 0;
        Phone {
            number: format!("+1555{:07}", rng.below(10_000_000)),
            phone_id,
            extension: String::new(),
            name: String::new(),
            phone_type: "Mobile".to_string(),
            platform: if ios { "Apple iOS" } else { "Google Android" }.to_string(),
            model: if ios { "iPhone 15" } else { "Pixel 8" }.to_string(),
            capabilities: caps(&["auto", "push", "sms", "phone", "mobile_otp"]),
            activated: true,
            sms_passcodes_sent: false,
            last_seen: iso_seconds(now_s - rng.below(20 * DAY_S) as i64),
            encrypted: "Encrypted".to_string(),
            fingerprint: "Configured".to_string(),
            screenlock: "Locked".to_string(),
            tampered: "Not tampered".to_string(),
        }
    }

    fn landline_or_sms(phone_id: String, rng: &mut Rng) -> Phone {
        let landline = rng.below(2) == 0;
        Phone {
            number: format!("+1555{:07}", rng.below(10_000_000)),
            phone_id,
            extension: String::new(),
            name: String::new(),
            phone_type: if landline { "Landline" } else { "Mobile" }.to_string(),
            platform: if landline {
                "Unknown"
            } else {
                "Generic Smartphone"
            }
            .to_string(),
            model: "Unknown".to_string(),
            capabilities: if landline {
                caps(&["phone"])
            } else {
                caps(&["sms", "phone"])
            },
            activated: false,
            sms_passcodes_sent: !landline,
            last_seen: String::new(),
            encrypted: String::new(),
            fingerprint: String::new(),
            screenlock: String::new(),
            tampered: String::new(),
        }
    }

    pub fn can_push(&self) -> bool {
        self.capabilities.iter().any(|c| c == "push")
    }
}
