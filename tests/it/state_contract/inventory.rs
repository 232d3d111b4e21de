//! The inventory part of the state-store contract: snapshots begun, filled page by page,
//! compared in id order a chunk at a time and completed, on both backends; fencing of a
//! snapshot a stale writer still holds; complete snapshots copied between stores.

use super::support::*;

use duo_collector::inventory::InventoryKind;
use duo_collector::state::{
    PendingSnapshot, SnapshotKey, State, StateError, StateStore, StoredEntity,
};

contract!(
    a_first_snapshot_reports_nothing_before_it_and_reads_back_in_id_order,
    a_second_snapshot_reads_adds_changes_and_deletes_in_id_order_by_chunks,
    a_failed_snapshot_leaves_the_complete_one_and_reports_no_change,
    a_stale_snapshot_writer_is_fenced_and_the_complete_snapshot_stays,
    complete_snapshots_copy_into_another_store,
);

/// An MSP child whose id and entity ids hold what KV keys do not allow.
fn key(kind: InventoryKind) -> SnapshotKey {
    SnapshotKey {
        integration: "msp east".into(),
        account_id: Some("DA1.x".into()),
        kind,
    }
}

fn entity(id: &str, hash: &str) -> StoredEntity {
    StoredEntity {
        entity_id: id.into(),
        hash: hash.into(),
        state: format!("{{\"id\":\"{id}\",\"v\":\"{hash}\"}}"),
    }
}

fn state(id: &str, hash: &str) -> Option<String> {
    Some(entity(id, hash).state)
}

/// Takes a whole snapshot: `pages` added in order, then completed at `completed_ms`.
async fn snapshot(
    store: &StateStore,
    key: &SnapshotKey,
    pages: &[&[StoredEntity]],
    completed_ms: i64,
) {
    let mut pending = store.begin_snapshot(key).await.unwrap();
    for page in pages {
        store
            .add_pending(&mut pending, page.to_vec(), Vec::new(), 1, || {})
            .await
            .unwrap();
    }
    store
        .complete_snapshot(pending, completed_ms, Vec::new(), 2, || {})
        .await
        .unwrap();
}

type Change = (String, Option<String>, Option<String>);

/// Every change, read `chunk` at a time; also returns the size of each chunk.
async fn changes(
    store: &StateStore,
    pending: &PendingSnapshot,
    chunk: usize,
) -> (Vec<Change>, Vec<usize>) {
    let (mut out, mut sizes, mut after) = (Vec::new(), Vec::new(), String::new());
    loop {
        let read = store
            .changed_entities(pending, &after, chunk)
            .await
            .unwrap();
        let Some(last) = read.last() else {
            return (out, sizes);
        };
        after = last.entity_id.clone();
        sizes.push(read.len());
        out.extend(read.into_iter().map(|c| (c.entity_id, c.before, c.after)));
    }
}

/// The complete snapshot's entities, read `chunk` at a time.
async fn complete(store: &StateStore, key: &SnapshotKey, chunk: usize) -> Vec<StoredEntity> {
    let (mut out, mut after) = (Vec::new(), String::new());
    loop {
        let read = store.complete_entities(key, &after, chunk).await.unwrap();
        let Some(last) = read.last() else {
            return out;
        };
        after = last.entity_id.clone();
        out.extend(read);
    }
}

async fn a_first_snapshot_reports_nothing_before_it_and_reads_back_in_id_order(b: &dyn Backend) {
    let store = b.open().await;
    let users = key(InventoryKind::Users);
    assert_eq!(store.snapshot_completed_ms(&users).await.unwrap(), None);
    assert_eq!(store.snapshots().await.unwrap(), vec![]);
    let pending = store.begin_snapshot(&users).await.unwrap();
    assert_eq!(
        pending.previous_completed_ms, None,
        "nothing before the first"
    );
    drop(pending);
    let odd = ["DU.3 é/x", "DU1", "DU2", "_"];
    let page1 = [entity(odd[2], "h"), entity(odd[0], "h")];
    let page2 = [entity(odd[3], "h"), entity(odd[1], "h")];
    snapshot(&store, &users, &[&page1, &page2], 100).await;
    snapshot(
        &store,
        &key(InventoryKind::Admins),
        &[&[entity("DE1", "a")]],
        90,
    )
    .await;

    // Reopened (the server restarted): what completed is there, in id order, by chunks.
    b.restart().await;
    let store = b.open().await;
    assert_eq!(
        store.snapshot_completed_ms(&users).await.unwrap(),
        Some(100)
    );
    let ids: Vec<String> = complete(&store, &users, 3)
        .await
        .into_iter()
        .map(|e| e.entity_id)
        .collect();
    let mut sorted = odd.map(String::from).to_vec();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(
        complete(&store, &users, 2).await[0],
        entity(&sorted[0], "h")
    );
    let listed: Vec<(String, Option<String>, String, i64, i64)> = store
        .snapshots()
        .await
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                s.integration,
                s.account_id,
                s.kind,
                s.completed_ms,
                s.entities,
            )
        })
        .collect();
    let child = Some("DA1.x".to_string());
    assert_eq!(
        listed,
        vec![
            ("msp east".into(), child.clone(), "admins".into(), 90, 1),
            ("msp east".into(), child, "users".into(), 100, 4),
        ]
    );
}

async fn a_second_snapshot_reads_adds_changes_and_deletes_in_id_order_by_chunks(b: &dyn Backend) {
    let store = b.open().await;
    let users = key(InventoryKind::Users);
    let first: Vec<StoredEntity> = (0..7).map(|i| entity(&format!("DU{i}"), "1")).collect();
    snapshot(&store, &users, &[&first[..4], &first[4..]], 100).await;

    // DU1 changed, DU3 and DU6 deleted, DU7 and DU8 new; DU5 listed twice (Duo's offsets
    // moved), keeping its last state, which is its old one.
    let mut pending = store.begin_snapshot(&users).await.unwrap();
    assert_eq!(pending.previous_completed_ms, Some(100));
    let pages: [Vec<StoredEntity>; 2] = [
        vec![
            entity("DU8", "1"),
            entity("DU0", "1"),
            entity("DU1", "2"),
            entity("DU5", "x"),
        ],
        vec![
            entity("DU2", "1"),
            entity("DU4", "1"),
            entity("DU7", "1"),
            entity("DU5", "1"),
        ],
    ];
    for (n, page) in pages.into_iter().enumerate() {
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        store
            .add_pending(
                &mut pending,
                page,
                vec![mark("local", 100 + n as u64)],
                3,
                move || flag.store(true, std::sync::atomic::Ordering::SeqCst),
            )
            .await
            .unwrap();
        assert!(ran.load(std::sync::atomic::Ordering::SeqCst), "then runs");
        assert_eq!(
            store.file_mark("local").await.unwrap(),
            Some(mark("local", 100 + n as u64)),
            "the page's file marks are stored with it"
        );
    }
    let (read, chunks) = changes(&store, &pending, 2).await;
    assert_eq!(
        read,
        vec![
            ("DU1".into(), state("DU1", "1"), state("DU1", "2")),
            ("DU3".into(), state("DU3", "1"), None),
            ("DU6".into(), state("DU6", "1"), None),
            ("DU7".into(), None, state("DU7", "1")),
            ("DU8".into(), None, state("DU8", "1")),
        ]
    );
    assert_eq!(chunks, vec![2, 2, 1], "no chunk over its limit");
    assert_eq!(
        changes(&store, &pending, 500).await.0,
        read,
        "read again alike"
    );
    assert_eq!(
        store.complete_entities(&users, "", 10).await.unwrap().len(),
        7,
        "the previous snapshot stays complete until the new one completes"
    );
    store
        .commit_files(vec![mark("local", 300)], 4, || {})
        .await
        .unwrap();
    assert_eq!(
        store.file_mark("local").await.unwrap(),
        Some(mark("local", 300))
    );
    store
        .complete_snapshot(pending, 200, vec![mark("local", 301)], 5, || {})
        .await
        .unwrap();
    assert_eq!(
        store.file_mark("local").await.unwrap(),
        Some(mark("local", 301))
    );
    let now: Vec<String> = complete(&store, &users, 3)
        .await
        .into_iter()
        .map(|e| e.entity_id)
        .collect();
    assert_eq!(now, ["DU0", "DU1", "DU2", "DU4", "DU5", "DU7", "DU8"]);
    let info = store.snapshots().await.unwrap();
    assert_eq!((info[0].completed_ms, info[0].entities), (200, 7));
    assert_eq!(complete(&store, &users, 10).await[1], entity("DU1", "2"));
}

async fn a_failed_snapshot_leaves_the_complete_one_and_reports_no_change(b: &dyn Backend) {
    let store = b.open().await;
    let users = key(InventoryKind::Users);
    let all = [entity("DU1", "1"), entity("DU2", "1"), entity("DU3", "1")];
    snapshot(&store, &users, &[&all], 100).await;

    // A snapshot fails after one page (DU3 never listed): it is never completed.
    let mut failed = store.begin_snapshot(&users).await.unwrap();
    store
        .add_pending(&mut failed, vec![entity("DU1", "2")], Vec::new(), 3, || {})
        .await
        .unwrap();
    drop(failed);
    assert_eq!(
        store.snapshot_completed_ms(&users).await.unwrap(),
        Some(100)
    );
    assert_eq!(complete(&store, &users, 2).await, all.to_vec(), "untouched");

    // The next snapshot starts from nothing pending: the same tenant is no change at all.
    let mut next = store.begin_snapshot(&users).await.unwrap();
    assert_eq!(next.previous_completed_ms, Some(100));
    store
        .add_pending(&mut next, all.to_vec(), Vec::new(), 4, || {})
        .await
        .unwrap();
    assert_eq!(changes(&store, &next, 2).await.0, vec![]);
    store
        .complete_snapshot(next, 300, Vec::new(), 5, || {})
        .await
        .unwrap();
    assert_eq!(complete(&store, &users, 2).await, all.to_vec());
    assert_eq!(store.snapshots().await.unwrap()[0].entities, 3);
}

async fn a_stale_snapshot_writer_is_fenced_and_the_complete_snapshot_stays(b: &dyn Backend) {
    let store = b.open().await;
    let users = key(InventoryKind::Users);
    let mut stale = store.begin_snapshot(&users).await.unwrap();
    store
        .add_pending(&mut stale, vec![entity("DU1", "old")], Vec::new(), 1, || {})
        .await
        .unwrap();

    // Another writer restarts the snapshot and completes it meanwhile.
    snapshot(
        &store,
        &users,
        &[&[entity("DU1", "new"), entity("DU2", "new")]],
        200,
    )
    .await;

    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ran.clone();
    let refused = store
        .add_pending(
            &mut stale,
            vec![entity("DU9", "old")],
            vec![mark("local", 9)],
            2,
            move || flag.store(true, std::sync::atomic::Ordering::SeqCst),
        )
        .await;
    assert!(
        matches!(refused, Err(StateError::Fenced { .. })),
        "{refused:?}"
    );
    assert!(
        !ran.load(std::sync::atomic::Ordering::SeqCst),
        "nothing runs after a refusal"
    );
    assert_eq!(
        store.file_mark("local").await.unwrap(),
        None,
        "nothing written"
    );
    let refused = store
        .complete_snapshot(stale, 300, Vec::new(), 3, || {})
        .await;
    assert!(
        matches!(refused, Err(StateError::Fenced { .. })),
        "{refused:?}"
    );
    assert_eq!(
        store.snapshot_completed_ms(&users).await.unwrap(),
        Some(200)
    );
    assert_eq!(
        complete(&store, &users, 10).await,
        vec![entity("DU1", "new"), entity("DU2", "new")],
        "the stale writer moved nothing"
    );
}

/// Fills `store` with two complete snapshots (one of them taken twice) and a pending one.
async fn some_snapshots(store: &StateStore) -> Vec<StoredEntity> {
    let users: Vec<StoredEntity> = (0..1_203)
        .map(|i| entity(&format!("DU{i:05}"), "1"))
        .collect();
    snapshot(
        store,
        &key(InventoryKind::Users),
        &[&users[..600], &users[600..]],
        100,
    )
    .await;
    snapshot(store, &key(InventoryKind::Users), &[&users], 150).await;
    snapshot(
        store,
        &key(InventoryKind::Summary),
        &[&[entity("summary", "s")]],
        120,
    )
    .await;
    let mut pending = store
        .begin_snapshot(&key(InventoryKind::Admins))
        .await
        .unwrap();
    store
        .add_pending(&mut pending, vec![entity("DE1", "a")], Vec::new(), 1, || {})
        .await
        .unwrap();
    users
}

/// `to` holds what `from` completed: the same list, the same entities in chunks.
async fn same_snapshots(from: &StateStore, to: &StateStore, users: &[StoredEntity]) {
    assert_eq!(
        to.snapshots().await.unwrap(),
        from.snapshots().await.unwrap()
    );
    assert_eq!(
        to.snapshots().await.unwrap().len(),
        2,
        "the pending one is not copied"
    );
    assert_eq!(
        complete(to, &key(InventoryKind::Users), 500).await,
        users.to_vec()
    );
    assert_eq!(
        to.snapshot_completed_ms(&key(InventoryKind::Users))
            .await
            .unwrap(),
        Some(150)
    );
    // The next snapshot in the new store reports the changes since the copied one.
    let mut next = to.begin_snapshot(&key(InventoryKind::Users)).await.unwrap();
    let mut changed = users.to_vec();
    changed[7] = entity(&users[7].entity_id, "2");
    to.add_pending(&mut next, changed, Vec::new(), 1, || {})
        .await
        .unwrap();
    let read = changes(to, &next, 100).await.0;
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].0, users[7].entity_id);
}

async fn complete_snapshots_copy_into_another_store(b: &dyn Backend) {
    let from = b.open().await;
    let users = some_snapshots(&from).await;
    let dir = tempfile::tempdir().unwrap();
    let to = StateStore::sqlite(State::open(&dir.path().join("state.db")).unwrap());
    assert_eq!(to.copy_snapshots_from(&from, 5).await.unwrap(), 2);
    same_snapshots(&from, &to, &users).await;
}

/// Two collector instances (two connections) on one NATS server.
mod nats_instances {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_overtaken_instance_is_fenced_and_its_generation_is_never_read() {
        let backend = Nats::new().await;
        let (a, b) = (backend.open().await, backend.open().await);
        let users = key(InventoryKind::Users);
        snapshot(&a, &users, &[&[entity("DU1", "1")]], 100).await;

        // Instance A starts the next snapshot and stalls (paused, partitioned) mid-way.
        let mut stalled = a.begin_snapshot(&users).await.unwrap();
        a.add_pending(&mut stalled, vec![entity("DU1", "2")], Vec::new(), 1, || {})
            .await
            .unwrap();
        // Instance B takes the snapshot over and completes it.
        snapshot(
            &b,
            &users,
            &[&[entity("DU1", "1"), entity("DU2", "1")]],
            200,
        )
        .await;

        let refused = a
            .add_pending(&mut stalled, vec![entity("DU3", "2")], Vec::new(), 2, || {})
            .await;
        assert!(
            matches!(refused, Err(StateError::Fenced { .. })),
            "{refused:?}"
        );
        let refused = a
            .complete_snapshot(stalled, 300, Vec::new(), 3, || {})
            .await;
        assert!(
            matches!(refused, Err(StateError::Fenced { .. })),
            "{refused:?}"
        );
        for store in [&a, &b] {
            assert_eq!(
                store.snapshot_completed_ms(&users).await.unwrap(),
                Some(200)
            );
            assert_eq!(
                complete(store, &users, 10).await,
                vec![entity("DU1", "1"), entity("DU2", "1")]
            );
        }
        assert_eq!(
            entities_stored(&backend).await,
            2,
            "only the complete generation is left: the replaced one and A's are purged"
        );
        // The next snapshot compares with B's: A's stalled page is no change.
        let mut next = a.begin_snapshot(&users).await.unwrap();
        a.add_pending(
            &mut next,
            vec![entity("DU1", "1"), entity("DU2", "1")],
            Vec::new(),
            4,
            || {},
        )
        .await
        .unwrap();
        assert_eq!(changes(&a, &next, 10).await.0, vec![]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn complete_snapshots_copy_from_sqlite_into_nats() {
        let dir = tempfile::tempdir().unwrap();
        let from = StateStore::sqlite(State::open(&dir.path().join("state.db")).unwrap());
        let users = some_snapshots(&from).await;
        let backend = Nats::new().await;
        let to = backend.open().await;
        assert_eq!(to.copy_snapshots_from(&from, 5).await.unwrap(), 2);
        same_snapshots(&from, &to, &users).await;
    }

    /// How many entity values the entities bucket holds, all snapshots and generations.
    async fn entities_stored(backend: &Nats) -> u64 {
        let client = async_nats::connect(backend.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream("KV_contract-entities").await.unwrap();
        stream.info().await.unwrap().state.messages
    }

    fn proc_status_kb(field: &str) -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Measurement, not a check (`cargo test --test it measure_ -- --ignored --nocapture`):
    /// 100,000 users of ~400-byte states snapshotted twice with 1% changed; the peak memory
    /// the NATS store adds while it reads the changes, and how long each step takes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn measure_changes_of_100k_users_on_nats() {
        const USERS: usize = 100_000;
        let backend = Nats::new().await;
        let store = backend.open().await;
        let users = key(InventoryKind::Users);
        let padding = "x".repeat(360);
        let user = |i: usize, version: &str| StoredEntity {
            entity_id: format!("DU{i:019}"),
            hash: format!("{:064x}", i * 7 + version.len()),
            state: format!("{{\"v\":\"{version}\",\"pad\":\"{padding}\"}}"),
        };
        let take = |version: &'static str, changed_every: usize| {
            let store = store.clone();
            let users = users.clone();
            async move {
                let started = std::time::Instant::now();
                let mut pending = store.begin_snapshot(&users).await.unwrap();
                for page in (0..USERS).collect::<Vec<_>>().chunks(300) {
                    let entities = page
                        .iter()
                        .map(|&i| user(i, if i % changed_every == 0 { version } else { "1" }))
                        .collect();
                    store
                        .add_pending(&mut pending, entities, Vec::new(), 1, || {})
                        .await
                        .unwrap();
                }
                (pending, started.elapsed())
            }
        };
        let (first, written) = take("1", 1).await;
        store
            .complete_snapshot(first, 100, Vec::new(), 2, || {})
            .await
            .unwrap();
        let (second, written_again) = take("22", 100).await;
        // Peak RSS from here on (writing "5" resets VmHWM to the current RSS).
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let base = proc_status_kb("VmRSS:");
        let started = std::time::Instant::now();
        let (changed, _) = changes(&store, &second, 500).await;
        let read = started.elapsed();
        let peak = proc_status_kb("VmHWM:");
        assert_eq!(changed.len(), USERS / 100);
        let started = std::time::Instant::now();
        store
            .complete_snapshot(second, 200, Vec::new(), 3, || {})
            .await
            .unwrap();
        println!(
            "{USERS} users: snapshot written in {written:?} and {written_again:?}; {} changes read in {read:?}, \
             peak RSS +{} MB over {} MB while reading them; completed (old generation purged) in {:?}",
            changed.len(),
            (peak - base) / 1024,
            base / 1024,
            started.elapsed()
        );
    }
}
