//! Stream leases in a real `nats-server -js` (2.9, no per-key TTL: the lease bucket's
//! `max_age` is the ttl): two instances contend and one wins; an unrenewed lease expires
//! within the ttl and another instance takes it; a renewed one outlives it; the former holder's
//! renewal and release after an expiry touch nothing of the new holder's.

use std::time::{Duration, Instant};

use crate::sink_support::{free_port, NatsServer};
use crate::state_contract::nats_settings;
use duo_collector::event::StreamId;
use duo_collector::log_kind::LogKind;
use duo_collector::state::NatsStore;

const TTL: Duration = Duration::from_secs(3);

struct Cluster {
    _dir: tempfile::TempDir,
    server: NatsServer,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = NatsServer::start(dir.path(), free_port()).await;
        Cluster { _dir: dir, server }
    }

    /// A collector instance: its own connection and instance id.
    async fn instance(&self) -> NatsStore {
        let mut settings = nats_settings(&self.server.url());
        settings.lease_ttl = TTL;
        settings.connection.timeout = Duration::from_millis(500);
        NatsStore::open(&settings).await.unwrap()
    }
}

fn stream() -> StreamId {
    StreamId::new("msp", Some("DA1".into()), LogKind::Authentication)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_contend_for_a_stream_and_one_wins() {
    let cluster = Cluster::start().await;
    let (a, b) = (cluster.instance().await, cluster.instance().await);
    assert_ne!(a.instance(), b.instance());
    let s = stream();
    let (took_a, took_b) = tokio::join!(a.take_lease(&s, 1), b.take_lease(&s, 1));
    let (took_a, took_b) = (took_a.unwrap(), took_b.unwrap());
    assert!(
        took_a.is_some() != took_b.is_some(),
        "exactly one wins: {took_a:?} {took_b:?}"
    );
    let (winner, held, loser) = match (took_a, took_b) {
        (Some(h), None) => (&a, h, &b),
        (None, Some(h)) => (&b, h, &a),
        _ => unreachable!(),
    };
    let holders = loser.lease_holders().await.unwrap();
    assert_eq!(holders.len(), 1);
    assert_eq!(
        (&holders[0].stream, holders[0].instance.as_str()),
        (&s, winner.instance())
    );
    assert!(
        loser.take_lease(&s, 2).await.unwrap().is_none(),
        "taken stays taken"
    );
    // The holder renews; the loser cannot renew what it never held.
    let renewed = winner.renew_lease(&held).await.unwrap().expect("renewed");
    assert_ne!(renewed.revision, held.revision);
    assert!(
        loser.renew_lease(&held).await.unwrap().is_none(),
        "a stale revision is refused"
    );

    a.announce(5).await.unwrap();
    b.announce(5).await.unwrap();
    let live = a.live_instances().await.unwrap();
    assert!(
        live.contains(a.instance()) && live.contains(b.instance()),
        "{live:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrenewed_lease_expires_within_the_ttl_and_another_instance_takes_it() {
    let cluster = Cluster::start().await;
    let (a, b) = (cluster.instance().await, cluster.instance().await);
    let s = stream();
    let taken_at = Instant::now();
    let held = a.take_lease(&s, 1).await.unwrap().expect("free");
    // Polled, not slept: the take that succeeds is the moment the lease expired.
    let taken_by_b = loop {
        if let Some(h) = b.take_lease(&s, 2).await.unwrap() {
            break h;
        }
        assert!(
            taken_at.elapsed() < TTL + Duration::from_secs(2),
            "the lease outlived its ttl"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let after = taken_at.elapsed();
    eprintln!("lease of ttl {TTL:?} taken over after {after:?}");
    assert!(
        after >= TTL - Duration::from_millis(100),
        "taken while it ran: {after:?}"
    );
    assert!(
        after <= TTL + Duration::from_secs(1),
        "expired late: {after:?}"
    );

    // The former holder wakes up: its renewal is refused, and its release removes nothing.
    assert!(a.renew_lease(&held).await.unwrap().is_none());
    a.release_lease(&held).await.unwrap();
    let holders = a.lease_holders().await.unwrap();
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].instance, b.instance(), "still b's");
    assert!(b.renew_lease(&taken_by_b).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_renewed_every_third_of_its_ttl_outlives_it_and_a_release_frees_it_at_once() {
    let cluster = Cluster::start().await;
    let (a, b) = (cluster.instance().await, cluster.instance().await);
    let s = stream();
    let mut held = a.take_lease(&s, 1).await.unwrap().expect("free");
    let start = Instant::now();
    let mut renewals = 0;
    while start.elapsed() < TTL * 2 {
        tokio::time::sleep(TTL / 3).await;
        held = a.renew_lease(&held).await.unwrap().expect("renewed");
        renewals += 1;
        assert!(
            b.take_lease(&s, 2).await.unwrap().is_none(),
            "held while renewed"
        );
    }
    assert!(renewals >= 5);
    assert_eq!(
        a.lease_holders().await.unwrap()[0].since_ms,
        1,
        "renewals keep since"
    );
    a.release_lease(&held).await.unwrap();
    assert!(
        b.take_lease(&s, 3).await.unwrap().is_some(),
        "released: free at once"
    );
}
