//! Durations and rates for people: one format everywhere (status, progress, logs).

/// `"0s"`, `"45s"`, `"7m 5s"`, `"14h 20m"`, `"3d 4h"`: the two largest units, no more.
pub fn duration_secs(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h {m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d {h}h"),
    }
}

/// Events per second over `elapsed`, or `None` while too little time has passed for the
/// figure to mean anything (a first page in milliseconds is not "1000000/s").
pub fn rate(events: u64, elapsed: std::time::Duration) -> Option<String> {
    let secs = elapsed.as_secs_f64();
    if secs < 1.0 {
        return None;
    }
    let per_sec = events as f64 / secs;
    Some(if per_sec >= 10_000.0 {
        format!("{:.0}k/s", per_sec / 1000.0)
    } else if per_sec >= 1_000.0 {
        format!("{:.1}k/s", per_sec / 1000.0)
    } else {
        format!("{per_sec:.0}/s")
    })
}

/// `"1 page"`, `"2 pages"`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_use_the_two_largest_units() {
        assert_eq!(duration_secs(0), "0s");
        assert_eq!(duration_secs(-5), "0s");
        assert_eq!(duration_secs(45), "45s");
        assert_eq!(duration_secs(425), "7m 5s");
        assert_eq!(duration_secs(600), "10m");
        assert_eq!(duration_secs(14 * 3600 + 20 * 60 + 1), "14h 20m");
        assert_eq!(duration_secs(86_400), "1d");
        assert_eq!(duration_secs(86_400 + 3600 * 4 + 7), "1d 4h");
    }

    #[test]
    fn rates_need_a_second_of_data() {
        assert_eq!(rate(1000, Duration::from_millis(1)), None);
        assert_eq!(rate(500, Duration::from_secs(2)), Some("250/s".into()));
        assert_eq!(rate(3_000, Duration::from_secs(2)), Some("1.5k/s".into()));
        assert_eq!(rate(50_000, Duration::from_secs(2)), Some("25k/s".into()));
        assert_eq!(count(1, "page", "pages"), "1 page");
        assert_eq!(count(3, "page", "pages"), "3 pages");
    }
}
