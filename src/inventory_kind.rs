//! The inventory kinds (a leaf: `config` reads them from `inventory = [...]`): Duo's endpoint,
//! page size, id field and permission for each (duo-api.md §2.9, §4.2).

use std::fmt;
use std::str::FromStr;

/// One inventory listing the collector can snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InventoryKind {
    Users,
    Admins,
    Phones,
    Endpoints,
    Integrations,
    Summary,
}

impl InventoryKind {
    pub const ALL: [InventoryKind; 6] = [
        InventoryKind::Users,
        InventoryKind::Admins,
        InventoryKind::Phones,
        InventoryKind::Endpoints,
        InventoryKind::Integrations,
        InventoryKind::Summary,
    ];

    /// The name in `inventory = [...]` and in the state store.
    pub fn as_str(self) -> &'static str {
        match self {
            InventoryKind::Users => "users",
            InventoryKind::Admins => "admins",
            InventoryKind::Phones => "phones",
            InventoryKind::Endpoints => "endpoints",
            InventoryKind::Integrations => "integrations",
            InventoryKind::Summary => "summary",
        }
    }

    /// The name of its stream, as sinks label it (syslog MSGID, NATS subject `{log}`).
    pub fn log_name(self) -> &'static str {
        match self {
            InventoryKind::Users => "inventory_users",
            InventoryKind::Admins => "inventory_admins",
            InventoryKind::Phones => "inventory_phones",
            InventoryKind::Endpoints => "inventory_endpoints",
            InventoryKind::Integrations => "inventory_integrations",
            InventoryKind::Summary => "inventory_summary",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            InventoryKind::Users => "/admin/v1/users",
            InventoryKind::Admins => "/admin/v1/admins",
            InventoryKind::Phones => "/admin/v1/phones",
            InventoryKind::Endpoints => "/admin/v1/endpoints",
            // duo_client moved from v1 to v3 (commit 412b390); v1 is deprecated.
            InventoryKind::Integrations => "/admin/v3/integrations",
            InventoryKind::Summary => "/admin/v1/info/summary",
        }
    }

    /// The `limit` to ask for; `None` for the summary, which is not paged. Users go to Duo's
    /// documented 300; for the others no maximum is documented beyond Duo's default of 100, so
    /// 100 is what is safe to ask for.
    pub fn page_limit(self) -> Option<u32> {
        match self {
            InventoryKind::Users => Some(300),
            InventoryKind::Summary => None,
            _ => Some(100),
        }
    }

    /// The member that identifies an entity; the summary is one entity per account.
    pub fn id_field(self) -> Option<&'static str> {
        match self {
            InventoryKind::Users => Some("user_id"),
            InventoryKind::Admins => Some("admin_id"),
            InventoryKind::Phones => Some("phone_id"),
            InventoryKind::Endpoints => Some("epkey"),
            InventoryKind::Integrations => Some("integration_key"),
            InventoryKind::Summary => None,
        }
    }

    /// The Admin API permission the listing needs, as the admin panel names it.
    pub fn permission(self) -> &'static str {
        match self {
            InventoryKind::Users | InventoryKind::Phones | InventoryKind::Endpoints => {
                "Grant read resource"
            }
            InventoryKind::Admins => "Grant Administrators - Read",
            InventoryKind::Integrations => "Grant applications",
            InventoryKind::Summary => "Grant read information",
        }
    }

    /// What to do about a 403 (40301) on this listing, for `test-connectivity`.
    pub fn forbidden_fix(self) -> String {
        format!(
            "in the Duo Admin Panel, open Applications → this Admin API application → \
             Permissions, tick \"{}\" and save (the {} inventory needs it); or remove \"{}\" \
             from `inventory`",
            self.permission(),
            self.as_str(),
            self.as_str()
        )
    }
}

impl fmt::Display for InventoryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InventoryKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InventoryKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = InventoryKind::ALL
                    .iter()
                    .map(|k| format!("{:?}", k.as_str()))
                    .collect();
                format!(
                    "unknown inventory kind {s:?}; valid kinds: {}",
                    names.join(", ")
                )
            })
    }
}
