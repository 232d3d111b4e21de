//! Golden snapshots of the inventory in OCSF: one entity of every kind as Duo lists it (secrets
//! included, so the snapshot shows they are gone), and the change events of a mutated user and
//! admin. `tests/ocsf/validate.py` checks `it__inventory_golden__*_ocsf.snap` against the
//! OCSF 1.7.0 schema.

use duo_collector::inventory::{diff, parse_page, EntityState, InventoryKind};
use duo_collector::normalize::{
    change_event_id, inventory_cef, inventory_change_cef, inventory_change_ecs,
    inventory_change_ocsf, inventory_change_raw, inventory_ecs, inventory_event_id, inventory_ocsf,
    inventory_raw, InventoryCtx,
};
use serde_json::{json, Value};

const CTX: InventoryCtx<'static> = InventoryCtx {
    integration: "corp",
    account_id: Some("DA0000000000000000AA"),
    snapshot_ms: 1_760_000_000_000,
    collected_at: "2025-10-09T08:53:20Z",
};

fn user(status: &str, groups: Value, phones: Value) -> Value {
    json!({
        "user_id": "DU0000000000000000U1", "username": "zoë.okafor", "realname": "Zoë Okafor",
        "firstname": "Zoë", "lastname": "Okafor", "email": "zoe@example.com",
        "status": status, "is_enrolled": true, "created": 1_700_000_000,
        "last_login": 1_759_990_000, "last_directory_sync": null, "lockout_reason": null,
        "notes": "", "external_id": null, "aliases": {}, "enable_auto_prompt": true,
        "phones": phones,
        "tokens": [{"token_id": "DH0000000000000000T1", "serial": "00012345", "type": "yk"}],
        "u2ftokens": [], "desktoptokens": [],
        "webauthncredentials": [{"webauthnkey": "WA0000000000000000W1",
            "credential_name": "Security Key", "label": "YubiKey 5", "date_added": 1_700_100_000}],
        "groups": groups,
    })
}

fn phone() -> Value {
    json!({"phone_id": "DP0000000000000000P1", "number": "+15555550100", "extension": "",
        "name": "", "type": "Mobile", "platform": "Apple iOS", "model": "iPhone 15",
        "capabilities": ["auto", "push", "sms", "phone", "mobile_otp"], "activated": true,
        "sms_passcodes_sent": false, "last_seen": "2025-10-01T12:00:00",
        "encrypted": "Encrypted", "fingerprint": "Configured", "screenlock": "Locked",
        "tampered": "Not tampered"})
}

fn engineering() -> Value {
    json!([{"group_id": "DG0000000000000000G1", "name": "Engineering", "desc": "",
        "status": "Active", "push_enabled": true, "sms_enabled": true,
        "voice_enabled": true, "mobile_otp_enabled": true}])
}

fn admin(status: &str) -> Value {
    json!({"admin_id": "DE0000000000000000A1", "name": "Ada Lindqvist",
        "email": "admin0@example.com", "phone": "+15550100042", "role": "Owner",
        "status": status, "created": 1_690_000_000, "last_login": 1_759_000_000,
        "password_change_required": false, "restricted_by_admin_units": false,
        "admin_units": []})
}

fn sample(kind: InventoryKind) -> Value {
    match kind {
        InventoryKind::Users => user("active", engineering(), json!([phone()])),
        InventoryKind::Admins => admin("Active"),
        InventoryKind::Phones => {
            let mut p = phone();
            p["users"] = json!([{"user_id": "DU0000000000000000U1", "username": "zoë.okafor"},
                                {"user_id": "DU0000000000000000U2", "username": "gus.rossi"}]);
            p
        }
        InventoryKind::Endpoints => json!({"epkey": "EP0000000000000000E1",
            "device_name": "host-0001", "username": "zoë.okafor", "email": "zoe@example.com",
            "os_family": "Mac OS X", "os_version": "14.5", "os_build": "", "model": "",
            "type": "", "browsers": [{"browser_family": "Chrome", "browser_version": "124.0",
            "flash_version": "uninstalled", "java_version": "uninstalled"}],
            "disk_encryption_status": "On", "firewall_status": "Off", "password_status": "Set",
            "trusted_endpoint": true, "last_updated": 1_759_900_000}),
        InventoryKind::Integrations => json!({"integration_key": "DI0000000000000000I1",
            "secret_key": "0123456789abcdef0123456789abcdef01234567", "name": "Microsoft 365",
            "type": "microsoft", "notes": "", "user_access": "ALL_USERS",
            "groups_allowed": [], "greeting": "", "self_service_allowed": false,
            "username_normalization_policy": "Simple", "policy_key": "",
            "prompt_v4_enabled": true, "sso": {"saml_config": {"shared_secret": "hush"}}}),
        InventoryKind::Summary => json!({"admin_count": 6, "integration_count": 8,
            "telephony_credits_remaining": 473, "user_count": 60}),
    }
}

fn page_of(kind: InventoryKind, record: Value) -> duo_collector::inventory::InventoryPage {
    let response = if kind == InventoryKind::Summary {
        record
    } else {
        json!([record])
    };
    let body = json!({"stat": "OK", "response": response, "metadata": {"total_objects": 1}});
    parse_page(kind, body.to_string().as_bytes()).expect("a valid page")
}

#[test]
fn inventory_ocsf_golden() {
    for kind in InventoryKind::ALL {
        let page = page_of(kind, sample(kind));
        let events: Vec<Value> = page
            .entities
            .iter()
            .map(|e| inventory_ocsf(&CTX, kind, e))
            .collect();
        let text = serde_json::to_string(&events).unwrap();
        assert!(!text.contains("0123456789abcdef") && !text.contains("hush"));
        insta::assert_json_snapshot!(format!("{kind}_ocsf"), events);
    }
}

fn state(kind: InventoryKind, record: Value) -> EntityState {
    EntityState::from_entity(kind, &page_of(kind, record).entities[0])
}

#[test]
fn changes_ocsf_golden() {
    let before = state(InventoryKind::Users, sample(InventoryKind::Users));
    let mut mutated = user("locked out", json!([]), json!([]));
    mutated["email"] = json!("zoe.okafor@example.com");
    mutated["lockout_reason"] = json!("Failed Attempts");
    let after = state(InventoryKind::Users, mutated);
    let mut events: Vec<Value> = diff(Some(&before), Some(&after))
        .iter()
        .chain(&diff(
            Some(&state(InventoryKind::Admins, admin("Active"))),
            Some(&state(InventoryKind::Admins, admin("Disabled"))),
        ))
        .filter_map(|c| inventory_change_ocsf(&CTX, c))
        .collect();
    events.extend(
        diff(None, Some(&after))
            .iter()
            .chain(&diff(Some(&after), None))
            .filter_map(|c| inventory_change_ocsf(&CTX, c)),
    );
    let activities: Vec<(i64, i64)> = events
        .iter()
        .map(|e| {
            (
                e["class_uid"].as_i64().unwrap(),
                e["activity_id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        activities,
        vec![
            (3001, 9),
            (3001, 99),
            (3001, 11),
            (3006, 4),
            (3001, 5),
            (3001, 1),
            (3001, 6)
        ]
    );
    insta::assert_json_snapshot!("changes_ocsf", events);
}

#[test]
fn inventory_ecs_golden() {
    for kind in InventoryKind::ALL {
        let page = page_of(kind, sample(kind));
        let docs: Vec<Value> = page
            .entities
            .iter()
            .map(|e| inventory_ecs(&CTX, kind, e))
            .collect();
        for d in &docs {
            assert_eq!(d["event"]["kind"], "state", "{d}");
        }
        let text = serde_json::to_string(&docs).unwrap();
        assert!(!text.contains("0123456789abcdef") && !text.contains("hush"));
        insta::assert_json_snapshot!(format!("{kind}_ecs"), docs);
    }
    let before = state(InventoryKind::Users, sample(InventoryKind::Users));
    let after = state(InventoryKind::Users, user("disabled", json!([]), json!([])));
    let changes: Vec<Value> = diff(Some(&before), Some(&after))
        .iter()
        .map(|c| inventory_change_ecs(&CTX, c))
        .collect();
    assert!(!changes.is_empty());
    for c in &changes {
        assert_eq!(c["event"]["kind"], "event");
        assert_eq!(c["event"]["category"], json!(["iam"]));
    }
    insta::assert_json_snapshot!("changes_ecs", changes);
}

#[test]
fn inventory_raw_and_cef_golden() {
    for kind in InventoryKind::ALL {
        let page = page_of(kind, sample(kind));
        let raw: Vec<Value> = page
            .entities
            .iter()
            .map(|e| inventory_raw(&CTX, kind, e))
            .collect();
        let cef: Vec<Value> = page
            .entities
            .iter()
            .map(|e| {
                json!({"line": inventory_cef(&CTX, kind, e),
                       "event_id": inventory_event_id(&CTX, kind, e), "special": false})
            })
            .collect();
        let text = format!("{raw:?}{cef:?}");
        assert!(!text.contains("0123456789abcdef") && !text.contains("hush"));
        insta::assert_json_snapshot!(format!("{kind}_raw"), raw);
        insta::assert_json_snapshot!(format!("{kind}_cef"), cef);
    }
    let before = state(InventoryKind::Users, sample(InventoryKind::Users));
    let after = state(
        InventoryKind::Users,
        user("locked out", json!([]), json!([])),
    );
    let changes = diff(Some(&before), Some(&after));
    let raw: Vec<Value> = changes
        .iter()
        .map(|c| inventory_change_raw(&CTX, c))
        .collect();
    let cef: Vec<Value> = changes
        .iter()
        .map(|c| {
            json!({"line": inventory_change_cef(&CTX, c),
                   "event_id": change_event_id(&CTX, c), "special": false})
        })
        .collect();
    insta::assert_json_snapshot!("changes_raw", raw);
    insta::assert_json_snapshot!("changes_cef", cef);
}
