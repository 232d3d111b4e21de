//! Per-instance lease metrics, labelled by the instance id (`[state] backend = "nats"` only):
//! `duo_collector_streams_held`, `duo_collector_lease_renewals_total`,
//! `duo_collector_leases_lost_total` and `duo_collector_cas_conflicts_total{on="lease"|"checkpoint"}`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConflictLabels {
    instance: String,
    on: String,
}

/// What a compare-and-set was refused on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasOn {
    /// Taking or renewing a lease another instance holds (or took since).
    Lease,
    /// A checkpoint another instance moved (the commit was fenced).
    Checkpoint,
}

#[derive(Debug, Default)]
pub struct LeaseMetrics {
    held: Family<InstanceLabels, Gauge>,
    renewals: Family<InstanceLabels, Counter>,
    lost: Family<InstanceLabels, Counter>,
    conflicts: Family<ConflictLabels, Counter>,
}

impl LeaseMetrics {
    pub fn register(registry: &mut Registry) -> LeaseMetrics {
        let metrics = LeaseMetrics::default();
        registry.register(
            "streams_held",
            "Streams whose lease this instance holds (NATS state store)",
            metrics.held.clone(),
        );
        registry.register(
            "lease_renewals",
            "Stream leases this instance renewed",
            metrics.renewals.clone(),
        );
        registry.register(
            "leases_lost",
            "Stream leases this instance lost (taken over, or not renewed in time) and stopped the stream for",
            metrics.lost.clone(),
        );
        registry.register(
            "cas_conflicts",
            "Compare-and-set writes refused because another instance wrote first",
            metrics.conflicts.clone(),
        );
        metrics
    }

    fn labels(instance: &str) -> InstanceLabels {
        InstanceLabels {
            instance: instance.to_string(),
        }
    }

    pub fn set_held(&self, instance: &str, streams: usize) {
        self.held
            .get_or_create(&Self::labels(instance))
            .set(streams as i64);
    }

    pub fn renewed(&self, instance: &str, leases: u64) {
        self.renewals
            .get_or_create(&Self::labels(instance))
            .inc_by(leases);
    }

    pub fn lost(&self, instance: &str) {
        self.lost.get_or_create(&Self::labels(instance)).inc();
    }

    pub fn conflict(&self, instance: &str, on: CasOn) {
        let on = match on {
            CasOn::Lease => "lease",
            CasOn::Checkpoint => "checkpoint",
        };
        self.conflicts
            .get_or_create(&ConflictLabels {
                instance: instance.to_string(),
                on: on.to_string(),
            })
            .inc();
    }
}
