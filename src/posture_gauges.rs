//! The posture counts as Prometheus gauges, per integration and account:
//! `duo_collector_posture_users{count="not_enrolled"|…}`, `duo_collector_posture_admins{role}`
//! and `duo_collector_posture_telephony_credits_remaining`, set after each complete snapshot.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::inventory::PostureCounts;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CountLabels {
    integration: String,
    account: String,
    count: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    integration: String,
    account: String,
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabels {
    integration: String,
    account: String,
}

#[derive(Debug, Default)]
pub struct PostureGauges {
    users: Family<CountLabels, Gauge>,
    admins: Family<RoleLabels, Gauge>,
    credits: Family<AccountLabels, Gauge>,
}

impl PostureGauges {
    pub fn register(registry: &mut Registry) -> PostureGauges {
        let gauges = PostureGauges::default();
        registry.register(
            "posture_users",
            "Users of the latest complete inventory snapshot, by posture count (users, not_enrolled, bypass, locked_out, disabled, inactive, shared_phones, weak_mfa_only)",
            gauges.users.clone(),
        );
        registry.register(
            "posture_admins",
            "Administrators of the latest complete snapshot, by role",
            gauges.admins.clone(),
        );
        registry.register(
            "posture_telephony_credits_remaining",
            "Telephony credits left, from the latest account summary",
            gauges.credits.clone(),
        );
        gauges
    }

    pub fn set(&self, integration: &str, account: &str, c: &PostureCounts) {
        let counts = [
            ("users", c.users),
            ("not_enrolled", c.not_enrolled),
            ("bypass", c.bypass),
            ("locked_out", c.locked_out),
            ("disabled", c.disabled),
            ("inactive", c.inactive),
            ("shared_phones", c.shared_phones),
            ("weak_mfa_only", c.weak_mfa_only),
        ];
        for (name, n) in counts {
            self.users
                .get_or_create(&CountLabels {
                    integration: integration.to_string(),
                    account: account.to_string(),
                    count: name.to_string(),
                })
                .set(n as i64);
        }
        for (role, n) in &c.admins {
            self.admins
                .get_or_create(&RoleLabels {
                    integration: integration.to_string(),
                    account: account.to_string(),
                    role: role.clone(),
                })
                .set(*n as i64);
        }
        if let Some(n) = c.telephony_credits_remaining {
            self.credits
                .get_or_create(&AccountLabels {
                    integration: integration.to_string(),
                    account: account.to_string(),
                })
                .set(n);
        }
    }
}
