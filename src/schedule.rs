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

/// A cron expression (with a seconds field) that the scheduler accepts: only
/// [`Schedule::parse`] makes one, so a `Schedule` never fails to schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(String);

impl Schedule {
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        validate_cron(expr).map(|()| Schedule(expr.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The next tick after `after`, if the expression ever fires again.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        next_tick(&self.0, after)
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
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

    #[test]
    fn a_schedule_is_only_made_from_a_valid_expression() {
        let every_five = Schedule::parse("0 */5 * * * *").unwrap();
        assert_eq!(every_five.as_str(), "0 */5 * * * *");
        let now = chrono::Utc::now();
        assert!(every_five.next_after(now).is_some_and(|t| t > now));
        assert!(Schedule::parse("*/5 * * * *").is_err());
    }
}
