//! The `duo-collector` command line. anyhow lives here only; everything below uses typed errors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use duo_collector::config::{Config, DEFAULT_CONFIG_PATH};
use duo_collector::daemon::{self, Runtime, RuntimeOptions};
use duo_collector::state::{RunOutcome, State};
use duo_collector::{demo, status};

#[derive(Parser)]
#[command(
    name = "duo-collector",
    version,
    about = "Collects Cisco Duo logs and delivers them to your SIEM or pipeline"
)]
struct Cli {
    /// Log filter, e.g. "info" or "duo_collector=debug" (RUST_LOG also works).
    #[arg(long, global = true, env = "DUO_COLLECTOR_LOG", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// Path of the TOML config file.
    #[arg(long, short = 'c', env = "DUO_COLLECTOR_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector as a service until SIGTERM/SIGINT.
    Run(ConfigArg),
    /// Check the config; exit 0 if valid, else list every problem and exit 2.
    Validate(ConfigArg),
    /// Drain every integration (or one) up to now − delay once, then exit.
    CollectNow {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this integration.
        #[arg(long)]
        integration: Option<String>,
    },
    /// Show checkpoints, lag and the last run of every stream.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Serve the embedded Duo API simulator.
    Simulate(demo::SimulateArgs),
    /// Start the simulator and a collector printing events to stdout: no Duo account needed.
    Demo(demo::DemoArgs),
}

const EXIT_FAILURE: u8 = 1;
const EXIT_CONFIG: u8 = 2;

fn init_tracing(filter: &str) {
    let env_filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_ansi(!under_journal && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if under_journal {
        // journald stamps every line itself.
        builder.without_time().init();
    } else {
        builder.init();
    }
}

fn load_config(path: &std::path::Path) -> Result<Config, ExitCode> {
    match Config::load(path) {
        Ok(config) => {
            for w in &config.warnings {
                tracing::warn!("config: {w}");
            }
            Ok(config)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

/// A token cancelled by the first SIGTERM or SIGINT.
fn shutdown_token() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{signal, SignalKind};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        t.cancel();
    });
    Ok(token)
}

fn print_reports(reports: &[duo_collector::collector::IntegrationReport]) -> bool {
    let mut ok = true;
    for report in reports {
        if let Some(e) = &report.error {
            ok = false;
            eprintln!("FAILED {}: {e}", report.integration);
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

async fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(arg) => match load_config(&arg.config) {
            Ok(config) => {
                println!(
                    "{}: valid ({} integration(s), {} sink(s), {} warning(s))",
                    arg.config.display(),
                    config.integrations.len(),
                    config.sinks.len(),
                    config.warnings.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(code) => Ok(code),
        },
        Command::Run(arg) => {
            let Ok(config) = load_config(&arg.config) else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            let cancel = shutdown_token()?;
            // The service waits for a failing sink (backpressure) instead of skipping pages.
            let options = RuntimeOptions {
                sink_retry: duo_collector::sink::SinkRetry::until_delivered(),
                ..RuntimeOptions::default()
            };
            let runtime = Runtime::build(&config, &options)?;
            daemon::run(runtime, cancel).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CollectNow {
            config,
            integration,
        } => {
            let Ok(cfg) = load_config(&config.config) else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            if let Some(name) = &integration {
                if cfg.integration(name).is_none() {
                    eprintln!(
                        "error: --integration {name:?} is not in {}",
                        config.config.display()
                    );
                    return Ok(ExitCode::from(EXIT_CONFIG));
                }
            }
            let cancel = shutdown_token()?;
            let runtime = Runtime::build(&cfg, &RuntimeOptions::default())?;
            let reports = daemon::collect_once(&runtime, integration.as_deref(), &cancel).await;
            Ok(if print_reports(&reports) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILURE)
            })
        }
        Command::Status { config, json } => {
            let Ok(cfg) = load_config(&config.config) else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            let path = cfg.state_db_path();
            if !path.exists() {
                eprintln!(
                    "no state database at {} yet: run `duo-collector run` or `collect-now` first",
                    path.display()
                );
                return Ok(ExitCode::from(EXIT_FAILURE));
            }
            let state = State::open_read_only(&path)?;
            let now = duo_collector::collector::now_ms();
            let rows = status::rows(&state.status()?, now);
            let sinks = status::sink_rows(&cfg.sinks, &state.sink_status()?);
            if json {
                let all = serde_json::json!({ "streams": rows, "sinks": sinks });
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                print!("{}", status::render_text(&rows));
                print!("{}", status::render_sinks_text(&sinks));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate(args) => {
            let cancel = shutdown_token()?;
            demo::simulate(args, cancel).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            let cancel = shutdown_token()?;
            demo::demo(args, cancel).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(real_main(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
