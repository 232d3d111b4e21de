use super::*;

fn live(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn streams(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("corp/DA{i}/authentication"))
        .collect()
}

/// One scheduling tick of every instance in turn, each applying its actions as the KV store
/// would: a claim is a `create`, which only the first instance wins.
fn tick(instances: &[&str], all: &[String], holders: &mut BTreeMap<String, String>) {
    let seen = live(instances);
    for me in instances {
        for action in assign(me, all, &seen, holders) {
            match action {
                Action::Claim(s) => {
                    holders.entry(s).or_insert_with(|| me.to_string());
                }
                Action::Release(s) => {
                    assert_eq!(holders.remove(&s).as_deref(), Some(*me));
                }
            }
        }
    }
}

fn counts(instances: &[&str], holders: &BTreeMap<String, String>) -> Vec<usize> {
    instances
        .iter()
        .map(|i| holders.values().filter(|h| h == i).count())
        .collect()
}

#[test]
fn the_share_is_the_ceiling_of_streams_over_instances() {
    assert_eq!(fair_share(10, 3), 4);
    assert_eq!(fair_share(9, 3), 3);
    assert_eq!(fair_share(2, 3), 1);
    assert_eq!(fair_share(5, 0), 5, "no instance seen: this one");
}

#[test]
fn one_instance_claims_everything_and_then_holds_still() {
    let all = streams(6);
    let mut holders = BTreeMap::new();
    tick(&["a"], &all, &mut holders);
    assert_eq!(counts(&["a"], &holders), [6]);
    assert!(assign("a", &all, &live(&["a"]), &holders).is_empty());
}

#[test]
fn a_joining_instance_gets_its_share_within_two_ticks_and_nobody_exceeds_the_share() {
    let all = streams(30);
    let mut holders = BTreeMap::new();
    tick(&["a"], &all, &mut holders);
    // b and c join: a gives up what is over its share, they claim it.
    let three = ["a", "b", "c"];
    tick(&three, &all, &mut holders);
    tick(&three, &all, &mut holders);
    assert_eq!(counts(&three, &holders), [10, 10, 10]);
    assert_eq!(holders.len(), 30, "every stream held");
    tick(&three, &all, &mut holders);
    assert_eq!(counts(&three, &holders), [10, 10, 10], "stable");
}

#[test]
fn instances_starting_together_share_without_exceeding_the_ceiling() {
    let all = streams(10);
    let mut holders = BTreeMap::new();
    let three = ["x", "y", "z"];
    tick(&three, &all, &mut holders);
    tick(&three, &all, &mut holders);
    let c = counts(&three, &holders);
    assert_eq!(c.iter().sum::<usize>(), 10, "{c:?}");
    assert!(c.iter().all(|n| *n <= 4 && *n >= 2), "{c:?}");
}

#[test]
fn a_dead_instance_s_streams_are_taken_once_its_leases_expired() {
    let all = streams(9);
    let mut holders = BTreeMap::new();
    let three = ["a", "b", "c"];
    tick(&three, &all, &mut holders);
    assert_eq!(counts(&three, &holders), [3, 3, 3]);
    // c dies; while its leases run, nobody takes them.
    let two = ["a", "b"];
    tick(&two, &all, &mut holders);
    assert_eq!(counts(&three, &holders), [3, 3, 3]);
    // They expire (the bucket's max_age removes the keys).
    holders.retain(|_, h| h != "c");
    tick(&two, &all, &mut holders);
    let c = counts(&two, &holders);
    assert_eq!(c.iter().sum::<usize>(), 9);
    assert!(c.iter().all(|n| *n <= 5), "{c:?}");
}

#[test]
fn an_instance_over_its_share_keeps_its_streams_while_nobody_is_short() {
    let all = streams(4);
    let holders: BTreeMap<String, String> = all
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), if i < 3 { "a" } else { "b" }.to_string()))
        .collect();
    // Share 2: a is over it, and b holds 1, short of floor(4 / 2) = 2: a gives one up.
    let actions = assign("a", &all, &live(&["a", "b"]), &holders);
    assert_eq!(actions.len(), 1);
    assert!(matches!(actions[0], Action::Release(_)));
    // With three instances (share 2, floor 1) and b at 1, c at 0: a still gives one up.
    let three = assign("a", &all, &live(&["a", "b", "c"]), &holders);
    assert_eq!(three.len(), 1);
    // b is not over its share: nothing to do.
    assert!(assign("b", &all, &live(&["a", "b"]), &holders).is_empty());
}

#[tokio::test(start_paused = true)]
async fn leases_are_renewed_every_third_and_stopped_at_two_thirds_of_the_ttl() {
    let ttl = Duration::from_secs(30);
    let mut leases = Leases::new(ttl);
    let start = Instant::now();
    leases.written("s1".to_string(), start);
    assert_eq!(leases.next_due(), Some(start + Duration::from_secs(10)));
    assert!(leases.due(Instant::now()).is_empty());

    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(leases.due(Instant::now()), [("s1".to_string(), start)]);
    // The renewal sent now is accepted.
    leases.written("s1".to_string(), Instant::now());
    assert!(leases.due(Instant::now()).is_empty());

    // Renewals fail from here on: the stream runs until 20 s after the last write, then stops,
    // 10 s before the server can expire the lease.
    let last_write = Instant::now();
    assert_eq!(
        leases.next_expiry(),
        Some(last_write + Duration::from_secs(20)),
        "the stop is due two thirds of the ttl after the last write"
    );
    tokio::time::advance(Duration::from_secs(19)).await;
    assert!(leases.expiring(Instant::now()).is_empty());
    assert_eq!(
        leases.due(Instant::now()),
        [("s1".to_string(), last_write)],
        "still due: a failed renewal is tried again"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(leases.expiring(Instant::now()), ["s1".to_string()]);
    assert!(!leases.holds(&"s1".to_string()), "forgotten once stopped");
    assert_eq!(leases.next_due(), None);
}

#[tokio::test(start_paused = true)]
async fn a_refused_renewal_stops_the_stream_at_once() {
    let mut leases = Leases::new(Duration::from_secs(3));
    leases.written("s1".to_string(), Instant::now());
    leases.written("s2".to_string(), Instant::now());
    assert_eq!(leases.renew_every(), Duration::from_secs(1));
    assert!(leases.lost(&"s1".to_string()));
    assert!(!leases.lost(&"s1".to_string()), "lost once");
    assert_eq!(
        leases.streams().cloned().collect::<Vec<_>>(),
        ["s2".to_string()]
    );
}

#[test]
fn a_round_comes_four_times_as_soon_below_the_floor_or_after_a_failed_renewal() {
    assert!(below_floor(0, 30, 3));
    assert!(below_floor(9, 30, 3));
    assert!(!below_floor(10, 30, 3));
    assert!(!below_floor(11, 30, 3));
    // Fewer streams than instances: a floor of 0, nothing to wait for.
    assert!(!below_floor(0, 2, 3));
    assert!(!below_floor(0, 0, 0));
    let ttl = Duration::from_secs(30);
    assert_eq!(next_round_in(ttl, false), Duration::from_secs(10));
    assert_eq!(next_round_in(ttl, true), Duration::from_millis(2_500));
    // Retried at ttl/12: three more tries fit before the stop at 2·ttl/3.
    let leases = Leases::<String>::new(ttl);
    assert!(leases.renew_every() + 3 * next_round_in(ttl, true) < leases.stop_after());
}
