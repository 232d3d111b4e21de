//! Stream leases in a real `nats-server -js` (2.9, no per-key TTL: the lease bucket's
//! `max_age` is the ttl): two instances contend and one wins; an unrenewed lease expires
//! within the ttl and another instance takes it; a renewed one outlives it; the former holder's
//! renewal and release after an expiry touch nothing of the new holder's. And the store whose
//! server is gone: a clear, fast error, and the same revision commits once it is back; and
//! `test-connectivity` checking the store.

use std::time::{Duration, Instant};

use crate::sink_support::{free_port, NatsServer};
use crate::state_contract::nats_settings;
use duo_collector::event::StreamId;
use duo_collector::log_kind::LogKind;
use duo_collector::state::{
    NatsStore, PageCommit, Revision, StateError, StateStore, StoreSettings,
};

const TTL: Duration = Duration::from_secs(3);

struct Cluster {
    dir: tempfile::TempDir,
    server: NatsServer,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = NatsServer::start(dir.path(), free_port()).await;
        Cluster { dir, server }
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

/// The lease view is the bucket as one read saw it: renewals landing while it is read do not
/// make a stream appear twice (the scan's consumer goes on delivering new writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_view_read_while_leases_are_renewed_lists_each_stream_once() {
    let cluster = Cluster::start().await;
    let (holder, reader) = (cluster.instance().await, cluster.instance().await);
    let mut held = Vec::new();
    for n in 0..200 {
        let s = StreamId::new("corp", Some(format!("DA{n:018}")), LogKind::Authentication);
        held.push(holder.take_lease(&s, 1).await.unwrap().expect("free"));
    }
    let renewing = tokio::spawn(async move {
        for _ in 0..5 {
            for lease in held.iter_mut() {
                *lease = holder.renew_lease(lease).await.unwrap().expect("held");
            }
        }
    });
    let mut views = 0;
    while !renewing.is_finished() {
        let view = reader.lease_view().await.unwrap();
        let mut streams: Vec<_> = view.holders.iter().map(|h| h.stream.clone()).collect();
        streams.sort();
        streams.dedup();
        assert_eq!(
            (view.holders.len(), streams.len()),
            (200, 200),
            "each stream once, every stream"
        );
        views += 1;
    }
    renewing.await.unwrap();
    assert!(views > 0);
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

/// The server gone (a single node down is quorum lost): a store call fails within its timeout
/// with an error that names the bucket and stops the integration (`needs_operator`), commits
/// nothing, and the same revision commits once the server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_its_server_fails_fast_and_clearly_and_resumes_when_it_returns() {
    let mut cluster = Cluster::start().await;
    let store = StateStore::Nats(cluster.instance().await);
    let s = stream();
    let run = store.begin_run(&s, 1).await.unwrap();
    let page = |mintime_ms, revision| PageCommit {
        stream: s.clone(),
        run_id: run,
        checkpoint: duo_collector::state::Checkpoint::start(LogKind::Authentication, mintime_ms),
        events: 1,
        now_ms: 2,
        files: Vec::new(),
        revision,
    };
    let r1 = store
        .commit_page(page(1_000, Revision::NONE), || {})
        .await
        .unwrap();

    let port = cluster.server.port;
    cluster.server.stop();
    let asked = Instant::now();
    let failed = store.commit_page(page(2_000, r1), || {}).await;
    let waited = asked.elapsed();
    match &failed {
        Err(e @ StateError::Kv { bucket, .. }) => {
            assert!(bucket.starts_with("contract-"), "{e}");
            assert!(e.needs_operator(), "the integration stops: {e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        waited < Duration::from_secs(3),
        "failed within its timeout: {waited:?}"
    );

    cluster.server = NatsServer::start(cluster.dir.path(), port).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let r2 = loop {
        match store.commit_page(page(2_000, r1), || {}).await {
            Ok(r) => break r,
            Err(StateError::Kv { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    let now = store.load_checkpoint(&s).await.unwrap();
    assert_eq!(now.revision, r2);
    assert_eq!(now.value.map(|c| c.mintime_ms()), Some(2_000));
    assert_eq!(
        store.runs(&s).await.unwrap()[0].pages,
        2,
        "the failed try counted nothing"
    );
}

fn state_config(url: &str, replicas: usize) -> duo_collector::settings::Config {
    let text = format!(
        r#"
[state]
backend = "nats"
url = "{url}"
bucket_prefix = "probe"
replicas = {replicas}

[[integration]]
name = "corp"
api_hostname = "api-abcd1234.duosecurity.com"
ikey = "DIWJ8X6AEYOR5OMC6TQ1"
skey = "0123456789012345678901234567890123456789"
sinks = ["out"]

[[sink]]
name = "out"
type = "stdout"
"#
    );
    duo_collector::settings::parse_config_str(
        &text,
        "test.toml",
        &duo_collector::config::Env::from_pairs(&[]),
    )
    .unwrap()
}

/// The state section of `test-connectivity` (integrations left out: `only` names none).
async fn state_check(config: &duo_collector::settings::Config) -> String {
    let cancel = tokio_util::sync::CancellationToken::new();
    let report = duo_collector::connectivity::run(config, Some("none"), &cancel).await;
    let text = report.render_text();
    // The section starts a line: the first one when the config has no warnings to show.
    let start = text
        .lines()
        .position(|line| line.starts_with("state (NATS JetStream"))
        .unwrap_or_else(|| panic!("no state section: {text}"));
    text.lines().skip(start + 1).collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connectivity_checks_the_state_store_and_its_replicas() {
    let cluster = Cluster::start().await;
    let ok = state_check(&state_config(&cluster.server.url(), 1)).await;
    assert!(
        ok.contains(
            "PASS  State store: JetStream answered; the buckets probe-* are open with 1 replica(s)"
        ),
        "{ok}"
    );
    // The buckets exist with one replica: asked for three, the check says which to change.
    let three = state_check(&state_config(&cluster.server.url(), 3)).await;
    assert!(
        three.contains("FAIL  State store:")
            && three.contains("the bucket has 1 replica(s), [state] has replicas = 3"),
        "{three}"
    );
    // No buckets yet, three replicas: one server cannot hold them.
    let mut fresh = state_config(&cluster.server.url(), 3);
    if let StoreSettings::Nats(n) = &mut fresh.state {
        n.bucket_prefix = "fresh".into();
    }
    let fresh = state_check(&fresh).await;
    assert!(
        fresh.contains("FAIL  State store:")
            && fresh.contains("3 servers are there for replicas = 3"),
        "{fresh}"
    );
    // Nobody listening.
    let gone = state_check(&state_config(
        &format!("nats://127.0.0.1:{}", free_port()),
        1,
    ))
    .await;
    assert!(
        gone.contains("FAIL  State store:") && gone.contains("cannot connect to NATS"),
        "{gone}"
    );
}

/// Collectors that share buckets must agree on the lease ttl (the lease bucket's `max_age`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_ttl_other_than_the_lease_bucket_s_is_refused_with_the_fix() {
    let cluster = Cluster::start().await;
    cluster.instance().await;
    let mut settings = nats_settings(&cluster.server.url());
    settings.lease_ttl = Duration::from_secs(30);
    let refused = NatsStore::open(&settings).await.unwrap_err().to_string();
    assert!(
        refused.contains("contract-leases")
            && refused.contains("expires leases after 3s, [state] has lease_ttl = 30s")
            && refused.contains("set it to 3s"),
        "{refused}"
    );
}

/// A value in the buckets that this build did not write (another program, a newer build) is
/// refused as corrupt, naming the stream, never misread and never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_this_build_cannot_read_is_refused_as_corrupt() {
    let cluster = Cluster::start().await;
    let store = StateStore::Nats(cluster.instance().await);
    let client = async_nats::connect(cluster.server.url()).await.unwrap();
    let kv = async_nats::jetstream::new(client)
        .get_key_value("contract-checkpoints")
        .await
        .unwrap();
    let s = stream();
    let key = duo_collector::state::nats_keys::stream_key(&s);
    let v1_for_a_windowed_kind = r#"{"format":1,"checkpoint":{"family":"v1","mintime_ms":5,"seen":[],"newest_event_ms":null},"events_total":0,"updated_ms":1}"#;
    for text in ["{", "[]", r#"{"format":2}"#, v1_for_a_windowed_kind] {
        kv.put(&key, text.into()).await.unwrap();
        let loaded = store.load_checkpoint(&s).await;
        assert!(
            matches!(&loaded, Err(StateError::Corrupt { stream, .. }) if stream.contains("DA1")),
            "{text}: {loaded:?}"
        );
    }
}
