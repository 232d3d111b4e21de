//! `collect-now`'s summary on stderr.

use duo_collector::state::RunOutcome;

pub fn print_reports(reports: &[duo_collector::collector::IntegrationReport]) -> bool {
    let mut ok = true;
    for report in reports {
        if let Some(e) = &report.error {
            ok = false;
            eprintln!("FAILED {}: {e}", report.integration);
        }
        if report.held_elsewhere > 0 {
            eprintln!(
                "{}: {} held by other instances (see `status`); left to them",
                report.integration,
                duo_collector::human::count(report.held_elsewhere as u64, "stream", "streams")
            );
        }
    }
    for r in reports.iter().flat_map(|r| &r.streams) {
        match r.outcome {
            RunOutcome::Failed => {
                ok = false;
                eprintln!(
                    "FAILED {}: {} pages, {} events delivered before: {}",
                    r.stream,
                    r.pages,
                    r.events,
                    r.error.as_deref().unwrap_or("unknown error")
                );
            }
            RunOutcome::Interrupted => {
                ok = false;
                eprintln!(
                    "INTERRUPTED {}: {} pages, {} events",
                    r.stream, r.pages, r.events
                );
            }
            RunOutcome::NotPermitted => eprintln!(
                "skipped {}: {}",
                r.stream,
                r.error.as_deref().unwrap_or("not permitted")
            ),
            RunOutcome::Ok => eprintln!("ok {}: {} pages, {} events", r.stream, r.pages, r.events),
        }
    }
    ok
}
