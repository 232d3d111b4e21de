//! `duo-collector simulate` and `duo-collector demo`: the embedded Duo API simulator on its own,
//! or together with a collector that prints events to stdout — the whole pipeline, no Duo
//! account needed.

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::daemon::{self, Runtime, RuntimeOptions};
use crate::settings::parse_config_str;
use crate::simulator::inventory::InventoryCounts;
use crate::simulator::{AccountsConfig, ChildAccount, KindCounts, SimConfig, Simulator};

/// Accounts API keys of the simulated MSP parent (`simulate --msp-children N`; test values).
pub const SIM_ACCOUNTS_IKEY: &str = "DIS1MULAT0RACC0UNTS0";
pub const SIM_ACCOUNTS_SKEY: &str = "simulatoraccountssecretsimulatoraccounts";

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Seed of the generated data (same seed, same events).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Authentication events in the backlog (the other log kinds get fewer, in proportion).
    #[arg(long, default_value_t = 20_000)]
    pub auth_events: usize,
    /// Days of history the backlog spans, ending now.
    #[arg(long, default_value_t = 2)]
    pub days: i64,
    /// Keep generating events for this many minutes after start (events "arrive" live).
    #[arg(long, default_value_t = 60)]
    pub live_minutes: i64,
    /// Host name the signatures are verified against.
    #[arg(long, default_value = "api-sim00001.duosecurity.com")]
    pub api_hostname: String,
    #[arg(long, default_value = "DIS1MULAT0R0ADM1NKEY")]
    pub ikey: String,
    /// Secret key the simulator expects (a test value, not a real secret).
    #[arg(long, default_value = "simulatorsecretkeysimulatorsecretkey0000")]
    pub skey: String,
    /// Answer 429 (no Retry-After, as Duo) above this many requests per minute per
    /// (key, account, endpoint); a token bucket. Off by default; 0 turns it off.
    #[arg(long)]
    pub rate_limit_per_minute: Option<u32>,
    /// Requests a rate-limit bucket holds (it starts full).
    #[arg(long, default_value_t = 1)]
    pub rate_limit_burst: u32,
    /// Fraction (0..=1) of v2 and Trust Monitor pages that hold fewer than `limit` records while
    /// more exist, still with a cursor.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub short_page_rate: f64,
    /// The last non-empty page of a window still carries a cursor; following it gives an
    /// empty page without one.
    #[arg(long)]
    pub cursor_on_last_page: bool,
    /// Publish some events later than --max-visibility-delay-ms, by up to this much more
    /// (e.g. 5m).
    #[arg(long, value_parser = parse_duration_ms)]
    pub late_tail: Option<i64>,
    /// Fraction (0..=1) of events in the late tail [default: 0.01].
    #[arg(long, requires = "late_tail", value_parser = parse_fraction)]
    pub late_tail_rate: Option<f64>,
    /// Duo's clock relative to this host's, e.g. -45s for a host 45 s ahead of Duo. It drives
    /// the Date header, /auth/v2/ping, the Date check, visibility and the 180-day floor.
    #[arg(long, default_value = "0s", value_parser = parse_signed_duration_ms, allow_hyphen_values = true)]
    pub clock_offset: i64,
    /// Events become visible up to this many ms after their timestamp (Duo: 120000).
    #[arg(long, default_value_t = 120_000)]
    pub max_visibility_delay_ms: i64,
    /// Administrator events (default: a quarter of --auth-events).
    #[arg(long)]
    pub administrator_events: Option<usize>,
    /// Telephony events (default: a tenth of --auth-events).
    #[arg(long)]
    pub telephony_events: Option<usize>,
    /// Activity events (default: a fifth of --auth-events).
    #[arg(long)]
    pub activity_events: Option<usize>,
    /// Trust Monitor events (default: a fortieth of --auth-events).
    #[arg(long)]
    pub trust_monitor_events: Option<usize>,
    /// Offline enrollment events (default: a twentieth of --auth-events).
    #[arg(long)]
    pub offline_enrollment_events: Option<usize>,
    /// Also act as an MSP parent with this many child accounts (Accounts API keys
    /// DIS1MULAT0RACC0UNTS0 / simulatoraccountssecretsimulatoraccounts), each with the same
    /// numbers of events as above (its own data).
    #[arg(long, default_value_t = 0)]
    pub msp_children: usize,
    /// Render every record once at start (uses all cores and about 1.1 KB of memory per
    /// event) and serve pages by copying text: for benchmarks, so the simulator keeps up.
    #[arg(long)]
    pub prerender: bool,
    /// Users in each account's inventory (phones and groups come with them). Default: 60.
    #[arg(long)]
    pub inventory_users: Option<usize>,
    /// On SIGUSR1, change this share of the users (in percent): each changed user's status
    /// flips between active and disabled, so the next inventory snapshot has that many changes
    /// (the inventory benchmark).
    #[arg(long, default_value_t = 1.0, value_parser = parse_percent)]
    pub inventory_change_percent: f64,
}

fn parse_percent(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{text:?} is not a percentage between 0 and 100")),
    }
}

/// Flips the status of every n-th user of the parent's inventory (n from `percent`); returns
/// how many changed.
fn change_users(sim: &crate::simulator::SimHandle, percent: f64) -> usize {
    if percent <= 0.0 {
        return 0;
    }
    let every = (100.0 / percent).round().max(1.0) as usize;
    let mut changed = 0;
    sim.mutate_inventory(None, |inv| {
        for user in inv.users.iter_mut().step_by(every) {
            user.status = if user.status == "active" {
                "disabled"
            } else {
                "active"
            }
            .into();
            changed += 1;
        }
    });
    changed
}

impl SimulateArgs {
    fn sim_config(&self) -> SimConfig {
        let now = chrono::Utc::now().timestamp_millis();
        let history_ms = self.days.max(0) * 86_400_000;
        let live_ms = self.live_minutes.max(0) * 60_000;
        let counts = self.counts();
        SimConfig {
            api_hostname: self.api_hostname.clone(),
            ikey: self.ikey.clone(),
            skey: self.skey.clone(),
            seed: self.seed,
            start_ms: now - history_ms,
            end_ms: now + live_ms,
            counts,
            max_visibility_delay_ms: self.max_visibility_delay_ms,
            rate_limit_per_minute: self.rate_limit_per_minute.filter(|&n| n > 0),
            rate_limit_burst: self.rate_limit_burst,
            short_page_rate: self.short_page_rate,
            cursor_on_last_page: self.cursor_on_last_page,
            late_tail_rate: match self.late_tail {
                Some(_) => self.late_tail_rate.unwrap_or(DEFAULT_LATE_TAIL_RATE),
                None => 0.0,
            },
            late_tail_ms: self.late_tail.unwrap_or(0),
            clock_offset_ms: self.clock_offset,
            accounts: (self.msp_children > 0).then(|| AccountsConfig {
                ikey: SIM_ACCOUNTS_IKEY.to_string(),
                skey: SIM_ACCOUNTS_SKEY.to_string(),
                children: (1..=self.msp_children)
                    .map(|n| ChildAccount {
                        account_id: format!("DA{n:018}"),
                        name: format!("Child {n}"),
                        api_hostname: format!("api-child{n:05}.duosecurity.com"),
                        counts,
                        seed: self.seed.wrapping_mul(1_000_003).wrapping_add(n as u64),
                    })
                    .collect(),
            }),
            prerender: self.prerender,
            inventory: InventoryCounts {
                users: self
                    .inventory_users
                    .unwrap_or(InventoryCounts::default().users),
                ..InventoryCounts::default()
            },
            ..SimConfig::default()
        }
    }

    fn counts(&self) -> KindCounts {
        let n = self.auth_events;
        KindCounts {
            authentication: n,
            administrator: self.administrator_events.unwrap_or(n / 4),
            telephony: self.telephony_events.unwrap_or(n / 10),
            activity: self.activity_events.unwrap_or(n / 5),
            trust_monitor: self.trust_monitor_events.unwrap_or(n / 40),
            offline_enrollment: self.offline_enrollment_events.unwrap_or(n / 20),
        }
    }
}

/// `--late-tail-rate` when only `--late-tail` is given.
const DEFAULT_LATE_TAIL_RATE: f64 = 0.01;

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{text:?} is not a fraction between 0 and 1")),
    }
}

fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| format!("{text:?}: {e}"))?;
    i64::try_from(d.as_millis()).map_err(|_| format!("{text:?} is too long"))
}

/// `-45s`, `+2m`, `90s`.
fn parse_signed_duration_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    match text.strip_prefix('-') {
        Some(rest) => parse_duration_ms(rest).map(|ms| -ms),
        None => parse_duration_ms(text.strip_prefix('+').unwrap_or(text)),
    }
}

/// The startup lines naming the harsh modes that are on.
fn modes_text(cfg: &SimConfig) -> String {
    let modes = cfg.describe_modes();
    if modes.is_empty() {
        return "simulator modes: none (a kinder Duo than the real one; see --help)".to_string();
    }
    modes
        .iter()
        .map(|m| format!("simulator mode: {m}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Serves the simulator until cancelled.
pub async fn simulate(args: SimulateArgs, cancel: CancellationToken) -> anyhow::Result<()> {
    let cfg = args.sim_config();
    let modes = modes_text(&cfg);
    let sim = Simulator::start(args.listen, cfg)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // The config goes to stdout (`simulate > sim.toml`), the talk to stderr.
    eprintln!(
        "Duo API simulator listening on {}; a matching config is on stdout (duo-collector simulate > sim.toml, then duo-collector collect-now --config sim.toml)\n{modes}",
        sim.base_url()
    );
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        // A closed stdout only loses the snippet; the simulator keeps serving.
        let _ = out
            .write_all(config_snippet(&args, &sim.base_url()).as_bytes())
            .and_then(|()| out.flush());
    }
    let handle = sim.handle();
    let percent = args.inventory_change_percent;
    let mut changes = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .context("cannot listen for SIGUSR1")?;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(()) = changes.recv() => {
                let changed = change_users(&handle, percent);
                eprintln!("SIGUSR1: changed the status of {changed} users");
            }
        }
    }
    sim.shutdown().await;
    Ok(())
}

/// The collector's pace for a simulator that allows `rate_limit` requests per minute per
/// endpoint (`None`: unlimited, so unpaced).
fn pace_for(rate_limit: Option<u32>) -> String {
    match rate_limit.filter(|&n| n > 0) {
        Some(n) => format!("requests_per_minute = {n}"),
        None => "requests_per_minute = 0".to_string(),
    }
}

/// A complete config for the simulator: state in ./duo-collector-sim-state, events to stdout.
fn config_snippet(args: &SimulateArgs, base_url: &str) -> String {
    format!(
        "[collector]\nstate_dir = \"duo-collector-sim-state\"\n\n{}",
        integration_snippet(args, base_url)
    )
}

fn integration_snippet(args: &SimulateArgs, base_url: &str) -> String {
    let pace = pace_for(args.rate_limit_per_minute);
    if args.msp_children > 0 {
        return format!(
            "[[integration]]\nname = \"sim\"\napi_hostname = \"{}\"\nikey = \"{SIM_ACCOUNTS_IKEY}\"\nskey = \"{SIM_ACCOUNTS_SKEY}\"\naccounts_api = true\nconnect_to = \"{base_url}\"\n{pace}\nsinks = [\"out\"]\n\n[[sink]]\nname = \"out\"\ntype = \"stdout\"\n",
            args.api_hostname
        );
    }
    format!(
        "[[integration]]\nname = \"sim\"\napi_hostname = \"{}\"\nikey = \"{}\"\nskey = \"{}\"\nconnect_to = \"{base_url}\"\n{pace}\nsinks = [\"out\"]\n\n[[sink]]\nname = \"out\"\ntype = \"stdout\"\n",
        args.api_hostname, args.ikey, args.skey
    )
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Authentication events in the simulated backlog.
    #[arg(long, default_value_t = 2_000)]
    pub events: usize,
    /// Drain the backlog once and exit instead of collecting continuously.
    #[arg(long)]
    pub once: bool,
    /// The simulator answers 429 above this many requests per minute per endpoint, as Duo
    /// does; 0 turns rate limiting off.
    #[arg(long, default_value_t = 120)]
    pub rate_limit_per_minute: u32,
    /// Requests a rate-limit bucket holds (it starts full).
    #[arg(long, default_value_t = 5)]
    pub rate_limit_burst: u32,
}

/// Starts the simulator and a collector writing to stdout.
pub async fn demo(args: DemoArgs, cancel: CancellationToken) -> anyhow::Result<()> {
    let sim_args = SimulateArgs {
        listen: "127.0.0.1:0".parse().context("listen address")?,
        seed: 1,
        auth_events: args.events,
        days: 1,
        live_minutes: 60,
        api_hostname: "api-sim00001.duosecurity.com".into(),
        ikey: "DIS1MULAT0R0ADM1NKEY".into(),
        skey: "simulatorsecretkeysimulatorsecretkey0000".into(),
        rate_limit_per_minute: Some(args.rate_limit_per_minute),
        rate_limit_burst: args.rate_limit_burst,
        // The demo shows a collector that copes with Duo's harsher habits.
        short_page_rate: 0.25,
        cursor_on_last_page: true,
        late_tail: None,
        late_tail_rate: None,
        clock_offset: 0,
        max_visibility_delay_ms: 5_000,
        administrator_events: None,
        telephony_events: None,
        activity_events: None,
        trust_monitor_events: None,
        offline_enrollment_events: None,
        msp_children: 0,
        inventory_users: None,
        inventory_change_percent: 0.0,
        prerender: false,
    };
    let sim_config = sim_args.sim_config();
    let modes = modes_text(&sim_config);
    let sim = Simulator::start(sim_args.listen, sim_config).await?;
    let state_dir = tempfile::tempdir().context("cannot create a temporary state directory")?;
    let text = format!(
        "[collector]\nstate_dir = {state:?}\n\n[[integration]]\nname = \"demo\"\napi_hostname = \"{host}\"\nikey = \"{ikey}\"\nskey = \"{skey}\"\nconnect_to = \"{url}\"\nschedule = \"*/10 * * * * *\"\ndelay = \"5s\"\n{pace}\nsinks = [\"stdout\"]\n\n[[sink]]\nname = \"stdout\"\ntype = \"stdout\"\nformat = \"ocsf\"\n",
        state = state_dir.path().display().to_string(),
        host = sim_args.api_hostname,
        ikey = sim_args.ikey,
        skey = sim_args.skey,
        url = sim.base_url(),
        pace = pace_for(Some(args.rate_limit_per_minute)),
    );
    let config = parse_config_str(&text, "demo config", &crate::config::Env::real())?;
    eprintln!(
        "demo: Duo API simulator at {} with {} authentication events (and the other log kinds) over the last day (more arrive live).\n\
         demo: collecting them to stdout as JSON lines; progress is logged here on stderr.{}\n{modes}",
        sim.base_url(),
        args.events,
        if args.once { "" } else { " Ctrl-C to stop." }
    );
    let runtime = Runtime::build(&config, &RuntimeOptions::default())?;
    if args.once {
        let reports = daemon::collect_once(&runtime, None, &cancel).await;
        let events: u64 = reports.iter().map(|r| r.events()).sum();
        if crate::sink::stdout_is_closed() {
            // The reader (`| head`) has what it wanted: that is a normal end.
            eprintln!("demo: standard output was closed; stopping after {events} events");
        } else {
            eprintln!("demo: delivered {events} events");
            if let Some(failure) = first_failure(&reports) {
                anyhow::bail!("demo collection failed: {failure}");
            }
        }
    } else {
        daemon::run(runtime, config, None, cancel).await?;
        if crate::sink::stdout_is_closed() {
            eprintln!("demo: standard output was closed; stopping");
        }
    }
    sim.shutdown().await;
    Ok(())
}

/// The first failure of a collection, in one line: "integration: error" or "stream: error".
fn first_failure(reports: &[crate::collector::IntegrationReport]) -> Option<String> {
    reports.iter().find_map(|r| {
        if let Some(e) = &r.error {
            return Some(format!("{}: {e}", r.integration));
        }
        r.streams
            .iter()
            .find(|s| s.outcome == crate::state::RunOutcome::Failed)
            .map(|s| {
                format!(
                    "{}: {}",
                    s.stream,
                    s.error.as_deref().unwrap_or("unknown error")
                )
            })
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn sim_config(argv: &[&str]) -> Result<SimConfig, clap::Error> {
        let argv = std::iter::once("simulate").chain(argv.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.args.sim_config())
    }

    #[test]
    fn simulate_flags_set_the_harsh_modes() {
        let off = sim_config(&[]).unwrap();
        assert!(off.describe_modes().is_empty());
        assert_eq!((off.rate_limit_per_minute, off.rate_limit_burst), (None, 1));
        let on = sim_config(&[
            "--rate-limit-per-minute",
            "120",
            "--rate-limit-burst",
            "5",
            "--short-page-rate",
            "0.25",
            "--cursor-on-last-page",
            "--late-tail",
            "5m",
            "--clock-offset",
            "-45s",
        ])
        .unwrap();
        assert_eq!(on.rate_limit_per_minute, Some(120));
        assert_eq!(on.rate_limit_burst, 5);
        assert_eq!(on.short_page_rate, 0.25);
        assert!(on.cursor_on_last_page);
        assert_eq!((on.late_tail_ms, on.late_tail_rate), (300_000, 0.01));
        assert_eq!(on.clock_offset_ms, -45_000);
        assert_eq!(on.describe_modes().len(), 5);
        let rated = sim_config(&["--late-tail", "1m", "--late-tail-rate", "0.5"]).unwrap();
        assert_eq!(rated.late_tail_rate, 0.5);
        let zero = sim_config(&["--rate-limit-per-minute", "0", "--clock-offset", "+2m"]).unwrap();
        assert_eq!(zero.rate_limit_per_minute, None);
        assert_eq!(zero.clock_offset_ms, 120_000);
        assert!(sim_config(&["--late-tail-rate", "0.5"]).is_err());
        assert!(sim_config(&["--short-page-rate", "1.5"]).is_err());
        assert!(sim_config(&["--clock-offset", "soon"]).is_err());
    }
}
