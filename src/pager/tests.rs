//! The pager machines, case by case. Each case is a script: at Duo time `now` the pager must
//! ask for exactly this (or be done), then it is handed this answer; the case ends with the
//! checkpoint the stream would have committed.

use super::*;
use crate::checkpoint::{Checkpoint, Cursor, V1Checkpoint, WindowedCheckpoint};

const DAY: i64 = 86_400_000;
const NOW: i64 = 1_796_114_840_000; // 2026-12-01T08:47:20Z
const DELAY: i64 = 120_000;

fn settings(page_size: u32) -> PagerSettings {
    PagerSettings {
        delay_ms: DELAY,
        page_size,
        initial_lookback_ms: DAY,
    }
}

fn ev(ts_ms: i64, id: &str) -> Event {
    Event {
        raw: format!("{{\"id\":\"{id}\"}}"),
        event_id: id.to_string(),
        ts_ms,
    }
}

fn page(events: &[(i64, &str)], next: Option<&str>) -> Page {
    Page {
        events: events.iter().map(|(t, id)| ev(*t, id)).collect(),
        next_offset: next.map(str::to_string),
    }
}

/// What the pager must ask for.
#[derive(Debug)]
enum Want {
    /// `mintime`, `maxtime`, cursor (windowed).
    Window(i64, i64, Option<&'static str>),
    /// `mintime` in seconds (v1).
    Since(i64),
    Done(Done),
}

/// What Duo answers.
enum Answer {
    Page(Page),
    /// HTTP 400 with this detail; `true`: the pager restarts, `false`: the stream fails.
    Refused(&'static str, bool),
    /// The page is refused by the pager with this error.
    Rejected(Page, PagerError),
    Nothing,
}

struct Case {
    name: &'static str,
    kind: LogKind,
    page_size: u32,
    checkpoint: Option<Checkpoint>,
    script: Vec<(i64, Want, Answer)>,
    /// The checkpoint after the last committed page.
    end: Checkpoint,
    notices: Vec<Notice>,
    /// Event ids delivered, in order.
    delivered: Vec<&'static str>,
}

fn param<'a>(r: &'a Request, key: &str) -> Option<&'a str> {
    r.params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn run(case: Case) {
    let mut pager = for_kind(
        case.kind,
        settings(case.page_size),
        case.checkpoint.clone(),
        case.script.first().map_or(NOW, |s| s.0),
    );
    let mut committed = case.checkpoint.clone();
    let mut delivered = Vec::new();
    let mut notices = Vec::new();
    for (step, (now, want, answer)) in case.script.into_iter().enumerate() {
        let at = format!("{}: step {step}", case.name);
        let next = pager.next(now);
        match (&want, &next) {
            (Want::Done(d), Next::Done(got)) => assert_eq!(d, got, "{at}"),
            (Want::Window(min, max, cursor), Next::Fetch(r)) => {
                assert_eq!(
                    param(r, "mintime"),
                    Some(min.to_string().as_str()),
                    "{at}: mintime"
                );
                assert_eq!(
                    param(r, "maxtime"),
                    Some(max.to_string().as_str()),
                    "{at}: maxtime"
                );
                let name = if case.kind == LogKind::TrustMonitor {
                    "offset"
                } else {
                    "next_offset"
                };
                assert_eq!(param(r, name), *cursor, "{at}: cursor");
                assert_eq!(r.cursor.as_deref(), *cursor, "{at}");
                let sort = (case.kind != LogKind::TrustMonitor).then_some("ts:asc");
                assert_eq!(param(r, "sort"), sort, "{at}: Trust Monitor takes no sort");
            }
            (Want::Since(s), Next::Fetch(r)) => {
                assert_eq!(
                    r.params,
                    vec![("mintime".to_string(), s.to_string())],
                    "{at}"
                );
            }
            _ => panic!("{at}: wanted {want:?}, the pager said {next:?}"),
        }
        match answer {
            Answer::Page(p) => {
                let d = pager
                    .on_page(p, now)
                    .unwrap_or_else(|e| panic!("{at}: {e}"));
                delivered.extend(d.events.iter().map(|e| e.event_id.clone()));
                committed = Some(d.checkpoint);
            }
            Answer::Refused(detail, restarts) => match pager.on_refused(detail, now) {
                Ok(cp) => {
                    assert!(restarts, "{at}: expected the stream to fail");
                    committed = Some(cp);
                }
                Err(e) => assert!(!restarts, "{at}: expected a restart, got {e}"),
            },
            Answer::Rejected(p, err) => {
                assert_eq!(pager.on_page(p, now), Err(err), "{at}");
            }
            Answer::Nothing => {}
        }
        notices.extend(pager.take_notices());
    }
    assert_eq!(committed, Some(case.end), "{}: checkpoint", case.name);
    assert_eq!(notices, case.notices, "{}: notices", case.name);
    assert_eq!(delivered, case.delivered, "{}: delivered", case.name);
}

/// An open v2 window with Duo's `next_offset` text.
fn open(mintime: i64, max: i64, cursor: Option<&str>, newest: Option<i64>) -> Checkpoint {
    open_with(Paging::V2, mintime, max, cursor, newest)
}

/// An open Trust Monitor window with Duo's positional `offset`.
fn open_tm(mintime: i64, max: i64, offset: Option<&str>, newest: Option<i64>) -> Checkpoint {
    open_with(Paging::TrustMonitor, mintime, max, offset, newest)
}

fn open_with(
    paging: Paging,
    mintime: i64,
    max: i64,
    cursor: Option<&str>,
    newest: Option<i64>,
) -> Checkpoint {
    Checkpoint::Windowed(WindowedCheckpoint {
        mintime_ms: mintime,
        window_max_ms: Some(max),
        cursor: cursor.map(|c| Cursor::parse(paging, c)),
        newest_event_ms: newest,
    })
}

/// A windowed stream between windows.
fn closed(mintime: i64, newest: Option<i64>) -> Checkpoint {
    Checkpoint::Windowed(WindowedCheckpoint {
        mintime_ms: mintime,
        window_max_ms: None,
        cursor: None,
        newest_event_ms: newest,
    })
}

/// A v1 stream at the second `mintime`, with the fingerprints delivered there.
fn v1(mintime: i64, seen: &[&str], newest: Option<i64>) -> Checkpoint {
    Checkpoint::V1(V1Checkpoint {
        mintime_ms: mintime,
        seen: seen.iter().map(|s| s.to_string()).collect(),
        newest_event_ms: newest,
    })
}

const M: i64 = NOW - DAY; // a first run's mintime
const X: i64 = NOW - DELAY; // a first run's maxtime

#[test]
fn windowed_cases() {
    use Answer::*;
    use LogKind::*;
    let cases = vec![
        Case {
            name: "normal paging: full pages with cursors, then a page without",
            kind: Authentication,
            page_size: 2,
            checkpoint: None,
            script: vec![
                (NOW, Want::Window(M, X, None), Page(page(&[(M + 1, "a"), (M + 2, "b")], Some("2,b")))),
                (NOW + 1000, Want::Window(M, X, Some("2,b")), Page(page(&[(M + 3, "c"), (M + 4, "d")], Some("4,d")))),
                (NOW + 2000, Want::Window(M, X, Some("4,d")), Page(page(&[(M + 5, "e")], None))),
                (NOW + 3000, Want::Done(Done::CaughtUp), Nothing),
            ],
            end: closed(X + 1, Some(M + 5)),
            notices: vec![],
            delivered: vec!["a", "b", "c", "d", "e"],
        },
        Case {
            name: "short page with a cursor is followed (Duo's stopping rule)",
            kind: Telephony,
            page_size: 1000,
            checkpoint: None,
            script: vec![
                (NOW, Want::Window(M, X, None), Page(page(&[(M + 1, "a")], Some("1,a")))),
                (NOW, Want::Window(M, X, Some("1,a")), Page(page(&[(M + 2, "b"), (M + 3, "c")], Some("3,c")))),
                (NOW, Want::Window(M, X, Some("3,c")), Page(page(&[], None))),
                (NOW, Want::Done(Done::CaughtUp), Nothing),
            ],
            end: closed(X + 1, Some(M + 3)),
            notices: vec![],
            delivered: vec!["a", "b", "c"],
        },
        Case {
            name: "empty page with a cursor ends the window",
            kind: Activity,
            page_size: 100,
            checkpoint: None,
            script: vec![
                (NOW, Want::Window(M, X, None), Page(page(&[(M + 1, "a")], Some("1,a")))),
                (NOW, Want::Window(M, X, Some("1,a")), Page(page(&[], Some("1,a")))),
                (NOW, Want::Done(Done::CaughtUp), Nothing),
            ],
            end: closed(X + 1, Some(M + 1)),
            notices: vec![],
            delivered: vec!["a"],
        },
        Case {
            name: "null cursor on a full page ends the window",
            kind: Authentication,
            page_size: 2,
            checkpoint: None,
            script: vec![
                (NOW, Want::Window(M, X, None), Page(page(&[(M + 1, "a"), (M + 2, "b")], None))),
                (NOW, Want::Done(Done::CaughtUp), Nothing),
            ],
            end: closed(X + 1, Some(M + 2)),
            notices: vec![],
            delivered: vec!["a", "b"],
        },
        Case {
            name: "the same cursor twice stops the stream without moving the checkpoint",
            kind: Authentication,
            page_size: 2,
            checkpoint: None,
            script: vec![
                (NOW, Want::Window(M, X, None), Page(page(&[(M + 1, "a")], Some("1,a")))),
                (
                    NOW,
                    Want::Window(M, X, Some("1,a")),
                    Rejected(page(&[(M + 2, "b")], Some("1,a")), PagerError::CursorRepeated { cursor: "1,a".into() }),
                ),
            ],
            end: open(M, X, Some("1,a"), Some(M + 1)),
            notices: vec![],
            delivered: vec!["a"],
        },
        Case {
            name: "a window reopened after a restart keeps its maxtime and cursor, then a new one opens",
            kind: Authentication,
            page_size: 2,
            checkpoint: Some(open(M, M + 50_000, Some("10,x"), Some(M + 10))),
            script: vec![
                (NOW, Want::Window(M, M + 50_000, Some("10,x")), Page(page(&[(M + 20, "y")], None))),
                (NOW, Want::Window(M + 50_001, X, None), Page(page(&[(M + 60_000, "z")], None))),
                (NOW, Want::Done(Done::CaughtUp), Nothing),
            ],
            end: closed(X + 1, Some(M + 60_000)),
            notices: vec![],
            delivered: vec!["y", "z"],
        },
        Case {
            name: "180-day backfill: clamped once when the window opens, never between pages",
            kind: TrustMonitor,
            page_size: 200,
            checkpoint: Some(closed(NOW - 180 * DAY, None)),
            script: vec![
                (NOW, Want::Window(NOW - 179 * DAY, X, None), Page(page(&[(NOW - 170 * DAY, "a")], Some("1")))),
                // Hours later the floor has moved past nothing: the open window keeps its
                // mintime, and so its positional offset stays valid.
                (NOW + 3_600_000, Want::Window(NOW - 179 * DAY, X, Some("1")), Page(page(&[(NOW - 100 * DAY, "b")], Some("2")))),
                (NOW + 7_200_000, Want::Window(NOW - 179 * DAY, X, Some("2")), Page(page(&[], None))),
                (NOW + 7_200_000, Want::Done(Done::CaughtUp), Nothing),
            ],
            end: closed(X + 1, Some(NOW - 100 * DAY)),
            notices: vec![Notice::Clamped { from_ms: NOW - 180 * DAY, to_ms: NOW - 179 * DAY }],
            delivered: vec!["a", "b"],
        },
        Case {
            name: "a Trust Monitor window resumed past the floor is clamped once and restarted",
            kind: TrustMonitor,
            page_size: 200,
            checkpoint: Some(open_tm(NOW - 180 * DAY, X - DAY, Some("400"), None)),
            script: vec![
                (NOW, Want::Window(NOW - 179 * DAY, X - DAY, None), Page(page(&[(NOW - 150 * DAY, "a")], Some("1")))),
                (NOW, Want::Window(NOW - 179 * DAY, X - DAY, Some("1")), Page(page(&[], None))),
            ],
            end: closed(X - DAY + 1, Some(NOW - 150 * DAY)),
            notices: vec![Notice::Clamped { from_ms: NOW - 180 * DAY, to_ms: NOW - 179 * DAY }],
            delivered: vec!["a"],
        },
        Case {
            name: "a v2 window resumed past the floor keeps a cursor that is still inside it",
            kind: Authentication,
            page_size: 2,
            checkpoint: Some(open(NOW - 180 * DAY, X - DAY, Some(&format!("{},t", NOW - 100 * DAY)), None)),
            script: vec![(
                NOW,
                Want::Window(NOW - 179 * DAY, X - DAY, Some(Box::leak(format!("{},t", NOW - 100 * DAY).into_boxed_str()))),
                Page(page(&[], None)),
            )],
            end: closed(X - DAY + 1, None),
            notices: vec![Notice::Clamped { from_ms: NOW - 180 * DAY, to_ms: NOW - 179 * DAY }],
            delivered: vec![],
        },
        Case {
            name: "clock stepped back: an open window that is not settled waits for a later run",
            kind: Authentication,
            page_size: 2,
            checkpoint: Some(open(M, NOW, Some("5,a"), None)),
            script: vec![(
                NOW,
                Want::Done(Done::WindowNotSettled { window_end_ms: NOW, settled_ms: X }),
                Nothing,
            )],
            end: open(M, NOW, Some("5,a"), None),
            notices: vec![],
            delivered: vec![],
        },
        Case {
            name: "a window resumed a second after it opened goes on (Duo's now read to the second)",
            kind: Authentication,
            page_size: 2,
            checkpoint: Some(open(M, X, Some("5,a"), None)),
            script: vec![(NOW - 1_500, Want::Window(M, X, Some("5,a")), Page(page(&[(M + 9, "b")], None)))],
            end: closed(X + 1, Some(M + 9)),
            notices: vec![],
            delivered: vec!["b"],
        },
        Case {
            name: "Duo's now dipping between two pages of a window opened this run does not stop it",
            kind: Authentication,
            page_size: 2,
            checkpoint: Some(closed(M, None)),
            script: vec![
                (NOW, Want::Window(M, X, None), Page(page(&[(M + 1, "a"), (M + 2, "b")], Some("2,b")))),
                (NOW - 900, Want::Window(M, X, Some("2,b")), Page(page(&[(M + 3, "c")], None))),
            ],
            end: closed(X + 1, Some(M + 3)),
            notices: vec![],
            delivered: vec!["a", "b", "c"],
        },
        Case {
            name: "host clock ahead of Duo: maxtime comes from Duo's time, not the host's",
            kind: Authentication,
            page_size: 2,
            checkpoint: Some(closed(M, None)),
            // The driver passes Duo's now (the host's minus 45 s); the window ends delay before it.
            script: vec![(NOW - 45_000, Want::Window(M, NOW - 45_000 - DELAY, None), Page(page(&[], None)))],
            end: closed(NOW - 45_000 - DELAY + 1, None),
            notices: vec![],
            delivered: vec![],
        },
        Case {
            name: "a rejected cursor is dropped once and the window restarts from its mintime",
            kind: Activity,
            page_size: 2,
            checkpoint: Some(open(M, X, Some("bogus"), None)),
            script: vec![
                (NOW, Want::Window(M, X, Some("bogus")), Refused("Invalid next_offset", true)),
                (NOW, Want::Window(M, X, None), Page(page(&[(M + 1, "a")], None))),
            ],
            end: closed(X + 1, Some(M + 1)),
            notices: vec![Notice::CursorDropped { cursor: "bogus".into() }],
            delivered: vec!["a"],
        },
        Case {
            name: "a refusal without a cursor, inside retention, fails the stream",
            kind: Authentication,
            page_size: 2,
            checkpoint: Some(closed(M, None)),
            script: vec![(NOW, Want::Window(M, X, None), Refused("Invalid request parameters", false))],
            end: closed(M, None),
            notices: vec![],
            delivered: vec![],
        },
        Case {
            name: "a window that aged past Duo's retention mid-backfill is re-clamped once",
            kind: Authentication,
            page_size: 2,
            checkpoint: None,
            script: vec![
                (NOW, Want::Window(M, X, None), Page(page(&[(M + 1, "a")], Some("1,a")))),
                // Two days of paging later (a slow backfill) the window's mintime is past the
                // floor; Duo refuses the cursor, then the bare window.
                (NOW + 180 * DAY, Want::Window(M, X, Some("1,a")), Refused("mintime must be within the past 180 days", true)),
                (NOW + 180 * DAY, Want::Window(M, X, None), Refused("mintime must be within the past 180 days", true)),
            ],
            end: closed(NOW + DAY, Some(M + 1)),
            notices: vec![
                Notice::CursorDropped { cursor: "1,a".into() },
                Notice::Clamped { from_ms: M, to_ms: NOW + DAY },
            ],
            delivered: vec!["a"],
        },
        Case {
            name: "nothing to do when the checkpoint is at now - delay",
            kind: Telephony,
            page_size: 10,
            checkpoint: Some(closed(X + 1, None)),
            script: vec![(NOW, Want::Done(Done::CaughtUp), Nothing)],
            end: closed(X + 1, None),
            notices: vec![],
            delivered: vec![],
        },
    ];
    for case in cases {
        run(case);
    }
}

const S: i64 = (NOW - DAY) / 1000 * 1000; // a first v1 run's mintime, a whole second

#[test]
fn v1_cases() {
    use Answer::*;
    use LogKind::*;
    let full_second: Vec<(i64, String)> = (0..1000).map(|i| (S + 5000, format!("f{i}"))).collect();
    let full_second: Vec<(i64, &'static str)> = full_second
        .into_iter()
        .map(|(t, id)| (t, &*Box::leak(id.into_boxed_str())))
        .collect();
    let cases = vec![
        Case {
            name: "v1: resume at the newest second, skipping what was delivered there",
            kind: Administrator,
            page_size: 1000,
            checkpoint: None,
            script: vec![
                (
                    NOW,
                    Want::Since(S / 1000),
                    Page(page(&[(S + 1000, "a"), (S + 2000, "b")], None)),
                ),
                (NOW + 60_000, Want::Done(Done::CaughtUp), Nothing),
            ],
            end: v1(S + 2000, &["b"], Some(S + 2000)),
            notices: vec![],
            delivered: vec!["a", "b"],
        },
        Case {
            name: "v1: the delivered fingerprints of the resume second are not delivered again",
            kind: OfflineEnrollment,
            page_size: 1000,
            checkpoint: Some(v1(S + 2000, &["b"], None)),
            script: vec![(
                NOW,
                Want::Since(S / 1000 + 2),
                Page(page(&[(S + 2000, "b"), (S + 2000, "c")], None)),
            )],
            end: v1(S + 2000, &["b", "c"], Some(S + 2000)),
            notices: vec![],
            delivered: vec!["c"],
        },
        Case {
            name: "v1: unsettled events (by Duo's time) wait for a later request",
            kind: Administrator,
            page_size: 1000,
            checkpoint: Some(v1(X - 10_000, &[], None)),
            script: vec![(
                NOW,
                Want::Since((X - 10_000) / 1000),
                Page(page(&[(X - 10_000, "a"), (X + 1, "late")], None)),
            )],
            end: v1(X - 10_000, &["a"], Some(X - 10_000)),
            notices: vec![],
            delivered: vec!["a"],
        },
        Case {
            name: "v1: a second holding 1000 events is stepped past with a notice",
            kind: Administrator,
            page_size: 1000,
            checkpoint: Some(v1(S + 5000, &[], None)),
            script: vec![
                (
                    NOW,
                    Want::Since(S / 1000 + 5),
                    Page(page(&full_second, None)),
                ),
                (NOW, Want::Since(S / 1000 + 6), Page(page(&[], None))),
                (NOW, Want::Done(Done::CaughtUp), Nothing),
            ],
            end: v1(S + 6000, &[], Some(S + 5000)),
            notices: vec![Notice::OversizedSecond {
                second: S / 1000 + 5,
            }],
            delivered: full_second.iter().map(|(_, id)| *id).collect(),
        },
        Case {
            name: "v1: a checkpoint older than Duo's retention is clamped",
            kind: Administrator,
            page_size: 1000,
            checkpoint: Some(v1(NOW - 200 * DAY, &[], None)),
            script: vec![(
                NOW,
                Want::Since((NOW - 179 * DAY) / 1000 + 1),
                Page(page(&[], None)),
            )],
            end: v1((NOW - 179 * DAY) / 1000 * 1000 + 1000, &[], None),
            notices: vec![Notice::Clamped {
                from_ms: NOW - 200 * DAY,
                to_ms: (NOW - 179 * DAY) / 1000 * 1000 + 1000,
            }],
            delivered: vec![],
        },
        Case {
            name: "v1: a refusal fails the stream",
            kind: OfflineEnrollment,
            page_size: 1000,
            checkpoint: Some(v1(S, &[], None)),
            script: vec![(
                NOW,
                Want::Since(S / 1000),
                Refused("Invalid request parameters", false),
            )],
            end: v1(S, &[], None),
            notices: vec![],
            delivered: vec![],
        },
    ];
    for case in cases {
        run(case);
    }
}

#[test]
fn a_page_without_a_request_is_an_error() {
    let mut p = for_kind(LogKind::Authentication, settings(10), None, NOW);
    assert_eq!(p.on_page(page(&[], None), NOW), Err(PagerError::NoRequest));
    let mut p = for_kind(LogKind::Administrator, settings(10), None, NOW);
    assert_eq!(p.on_page(page(&[], None), NOW), Err(PagerError::NoRequest));
}

#[test]
fn page_size_is_capped_per_endpoint() {
    for (kind, asked, sent) in [
        (LogKind::Authentication, 5000, "1000"),
        (LogKind::TrustMonitor, 1000, "200"),
        (LogKind::Telephony, 0, "1"),
    ] {
        let mut p = for_kind(kind, settings(asked), None, NOW);
        let Next::Fetch(r) = p.next(NOW) else {
            panic!("{kind}: expected a request")
        };
        assert_eq!(param(&r, "limit"), Some(sent), "{kind}");
    }
}
