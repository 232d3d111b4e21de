//! Cron schedules: validation (shared with the config) and next-tick computation.

use croner::parser::{CronParser, Seconds};

fn parser() -> CronParser {
    CronParser::builder().seconds(Seconds::Required).build()
}

/// Checks a cron expression the way the scheduler will read it (a seconds field first).
pub fn validate_cron(expr: &str) -> Result<(), String> {
    parser().parse(expr).map(|_| ()).map_err(|e| {
        format!("{expr:?} is not a valid cron expression with a seconds field ({e}); for every 5 minutes write \"0 */5 * * * *\"")
    })
}

/// The next time the expression fires after `after`, if it ever does.
pub fn next_tick(
    expr: &str,
    after: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    parser()
        .parse(expr)
        .ok()?
        .find_next_occurrence(&after, false)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_six_fields_and_rejects_five() {
        assert!(validate_cron("0 */5 * * * *").is_ok());
        assert!(validate_cron("*/10 * * * * *").is_ok());
        let e = validate_cron("*/5 * * * *").unwrap_err();
        assert!(e.contains("\"*/5 * * * *\""), "{e}");
        assert!(validate_cron("banana").is_err());
        let now = chrono::Utc::now();
        let next = next_tick("0 */5 * * * *", now).unwrap();
        assert!(next > now && next - now <= chrono::Duration::minutes(5));
    }
}
