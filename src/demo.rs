//! `duo-collector simulate` and `duo-collector demo`: the embedded Duo API simulator on its own,
//! or together with a collector that prints events to stdout — the whole pipeline, no Duo
//! account needed.

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::parse_config_str;
use crate::daemon::{self, Runtime, RuntimeOptions};
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
    /// Answer 429 above this many log requests per minute (off by default).
    #[arg(long)]
    pub rate_limit_per_minute: Option<u32>,
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
            rate_limit_per_minute: self.rate_limit_per_minute,
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

/// Serves the simulator until cancelled.
pub async fn simulate(args: SimulateArgs, cancel: CancellationToken) -> anyhow::Result<()> {
    let cfg = args.sim_config();
    let sim = Simulator::start(args.listen, cfg)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // The config goes to stdout (`simulate > sim.toml`), the talk to stderr.
    eprintln!(
        "Duo API simulator listening on {}; a matching config is on stdout (duo-collector simulate > sim.toml, then duo-collector collect-now --config sim.toml)",
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
    cancel.cancelled().await;
    sim.shutdown().await;
    Ok(())
}

/// A complete config for the simulator: state in ./duo-collector-sim-state, events to stdout.
fn config_snippet(args: &SimulateArgs, base_url: &str) -> String {
    format!(
        "[collector]\nstate_dir = \"duo-collector-sim-state\"\n\n{}",
        integration_snippet(args, base_url)
    )
}

fn integration_snippet(args: &SimulateArgs, base_url: &str) -> String {
    if args.msp_children > 0 {
        return format!(
            "[[integration]]\nname = \"sim\"\napi_hostname = \"{}\"\nikey = \"{SIM_ACCOUNTS_IKEY}\"\nskey = \"{SIM_ACCOUNTS_SKEY}\"\naccounts_api = true\nconnect_to = \"{base_url}\"\nsinks = [\"out\"]\n\n[[sink]]\nname = \"out\"\ntype = \"stdout\"\n",
            args.api_hostname
        );
    }
    format!(
        "[[integration]]\nname = \"sim\"\napi_hostname = \"{}\"\nikey = \"{}\"\nskey = \"{}\"\nconnect_to = \"{base_url}\"\nsinks = [\"out\"]\n\n[[sink]]\nname = \"out\"\ntype = \"stdout\"\n",
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
        rate_limit_per_minute: None,
        max_visibility_delay_ms: 5_000,
        administrator_events: None,
        telephony_events: None,
        activity_events: None,
        trust_monitor_events: None,
        offline_enrollment_events: None,
        msp_children: 0,
        prerender: false,
    };
    let sim = Simulator::start(sim_args.listen, sim_args.sim_config()).await?;
    let state_dir = tempfile::tempdir().context("cannot create a temporary state directory")?;
    let text = format!(
        "[collector]\nstate_dir = {state:?}\n\n[[integration]]\nname = \"demo\"\napi_hostname = \"{host}\"\nikey = \"{ikey}\"\nskey = \"{skey}\"\nconnect_to = \"{url}\"\nschedule = \"*/10 * * * * *\"\ndelay = \"5s\"\nsinks = [\"stdout\"]\n\n[[sink]]\nname = \"stdout\"\ntype = \"stdout\"\nformat = \"ocsf\"\n",
        state = state_dir.path().display().to_string(),
        host = sim_args.api_hostname,
        ikey = sim_args.ikey,
        skey = sim_args.skey,
        url = sim.base_url(),
    );
    let config = parse_config_str(&text, "demo config", &crate::config::Env::real())?;
    eprintln!(
        "demo: Duo API simulator at {} with {} authentication events (and the other log kinds) over the last day (more arrive live).\n\
         demo: collecting them to stdout as JSON lines; progress is logged here on stderr.{}",
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
