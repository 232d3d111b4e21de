//! The `duo-collector` command line. anyhow lives here only; everything below uses typed errors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use duo_collector::collector::Collect;
use duo_collector::config::{ConfigError, Env, LogFormat, DEFAULT_CONFIG_PATH};
use duo_collector::daemon::{self, Runtime, RuntimeOptions};
use duo_collector::settings::Config;
use duo_collector::state::{State, StateStore, StoreSettings};
use duo_collector::{demo, posture_report, status, status_cluster};

mod cli;
use cli::reports::print_reports;

#[derive(Parser)]
#[command(
    name = "duo-collector",
    version,
    about = "Collects Cisco Duo logs and delivers them to your SIEM or pipeline",
    long_about = "Collects Cisco Duo Admin API logs (authentication, administrator, telephony, activity, \
Trust Monitor, offline enrollment; MSP child accounts too) and delivers them to sinks. A stream's \
checkpoint (SQLite, in state_dir) moves only after every sink acknowledged the events before it.",
    after_long_help = "Getting started:
  1. Install the .deb; edit /etc/duo-collector/config.toml (api_hostname, ikey, sinks) and put the
     secret key in /etc/duo-collector/credentials/corp.skey (chmod 600; skey_credential = \"corp.skey\").
  2. duo-collector validate            -- every config problem at once, exit 2 if any
  3. duo-collector test-connectivity   -- DNS, TLS, clock, keys, permissions, sinks: PASS/WARN/FAIL
  4. duo-collector collect-now         -- one full drain, with progress
  5. systemctl enable --now duo-collector   (unit: systemd/duo-collector.service; Type=notify,
     watchdog, the credentials directory via LoadCredential=, `systemctl reload` re-reads the config)
  6. duo-collector status              -- checkpoint, lag and last run per stream
Verify a caller: duo-collector verify-user --integration corp --username alice  (Auth API keys)
Try it without a Duo account: duo-collector demo

Exit codes: 0 success, 1 failure (collection, connectivity, runtime; verify-user: not verified),
2 invalid config.
Signals (run): SIGTERM/SIGINT finish the page in flight and exit 0; SIGHUP reloads the config."
)]
struct Cli {
    /// Log filter, e.g. "info", "debug" or "duo_collector=debug" (RUST_LOG also works). The
    /// default shows the collector's own lines at info and libraries' only from warn up.
    #[arg(
        long,
        global = true,
        env = "DUO_COLLECTOR_LOG",
        default_value = "duo_collector=info,warn"
    )]
    log_level: String,
    /// Log line format: "text" (journald-friendly; no timestamps under systemd) or "json".
    /// Default: `[collector] log_format` from the config, else text.
    #[arg(long, global = true, env = "DUO_COLLECTOR_LOG_FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Where `skey_credential` / `token_credential` names are read when not running under
    /// systemd. Default: $CREDENTIALS_DIRECTORY (set by the unit), else
    /// /etc/duo-collector/credentials when this user can read it (root).
    #[arg(long, global = true, env = "DUO_COLLECTOR_CREDENTIALS_DIRECTORY")]
    credentials_directory: Option<PathBuf>,
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
    ///
    /// Collects every integration once at start and then on its `schedule` (cron with seconds).
    /// Under systemd (Type=notify) it sends READY=1 once config, state and sinks are up, STATUS=
    /// progress lines, WATCHDOG=1 pings while collection makes progress, and STOPPING=1. SIGHUP
    /// re-reads the config: an invalid one is refused and the old one kept; a valid one is
    /// applied between pages. With `[collector] metrics_listen` it serves /metrics, /healthz and
    /// /readyz.
    Run(ConfigArg),
    /// Check the config; exit 0 if valid, else list every problem and exit 2.
    Validate {
        #[command(flatten)]
        config: ConfigArg,
        /// Check how secrets are given but do not read them (the unit's ExecReload=: systemd
        /// loads credentials only at start, and a reload cannot change them).
        #[arg(long)]
        skip_secrets: bool,
    },
    /// Drain every integration (or one) up to now − delay once, and take a snapshot of each
    /// configured inventory kind, then exit.
    CollectNow {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this integration.
        #[arg(long)]
        integration: Option<String>,
        /// Only the logs, or only the inventory snapshots. Default: both.
        #[arg(long, value_parser = ["logs", "inventory"])]
        only: Option<String>,
    },
    /// Posture counts per integration and account from the latest complete inventory
    /// snapshots in the state database (no Duo call): users not enrolled, in bypass, locked
    /// out, disabled, inactive, sharing a phone, with only SMS/phone-call factors; admins by
    /// role; telephony credits left.
    Posture {
        #[command(flatten)]
        config: ConfigArg,
        /// List the user names behind each count.
        #[arg(long)]
        details: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Only this integration (its own account, or its MSP children).
        #[arg(long)]
        integration: Option<String>,
    },
    /// Check DNS, TLS, clock, keys, permissions per log kind and sinks; exit 1 if anything FAILs.
    TestConnectivity {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this integration (and its sinks).
        #[arg(long)]
        integration: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show checkpoints, lag and the last run of every stream.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Verify a user by Duo Push (Auth API keys): exit 0 approved, 1 not verified, 2 config.
    ///
    /// Asks Duo's Auth API whether the user can take a push (`preauth`), sends one to the
    /// chosen device with who asks and why (`pushinfo`, shown in Duo Mobile), and waits for
    /// the answer. Exit 1 for denied, fraud, no answer before --timeout, not enrolled, bypass,
    /// refused by Duo, or no push-capable device, each with its own message. The outcome is
    /// also sent to the integration's sinks as one event (an authentication).
    VerifyUser {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: duo_collector::verify::VerifyUserArgs,
    },
    MigrateState(Box<duo_collector::migrate_state::MigrateStateArgs>),
    /// Serve the embedded Duo API simulator.
    Simulate(Box<demo::SimulateArgs>),
    /// Start the simulator and a collector printing events to stdout: no Duo account needed.
    Demo(demo::DemoArgs),
}

const EXIT_FAILURE: u8 = 1;

/// For `run` and `collect-now`: a closed stdout is one clear line and exit 1 (a stdout sink
/// could not deliver), not a page of retries.
fn stdout_closed_exit() -> Option<ExitCode> {
    duo_collector::sink::stdout_is_closed().then(|| {
        eprintln!("error: standard output was closed (EPIPE): the stdout sink's reader went away; stopped (checkpoints stay at the last delivered page)");
        ExitCode::from(EXIT_FAILURE)
    })
}
const EXIT_CONFIG: u8 = 2;

fn init_tracing(filter: &str, json: bool) {
    let env_filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_ansi(!under_journal && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().flatten_event(true).init();
    } else if under_journal {
        // journald stamps every line itself.
        builder.without_time().init();
    } else {
        builder.init();
    }
}

/// The config file a command reads, and the environment it reads secrets from (none for
/// `status` and `validate --skip-secrets`).
fn config_source(cli: &Cli) -> Option<(&std::path::Path, Env)> {
    let env = Env::real().with_credentials_directory(cli.credentials_directory.clone());
    match &cli.command {
        Command::Validate {
            config,
            skip_secrets: true,
        } => Some((&config.config, Env::real().without_secrets())),
        Command::Validate { config, .. } | Command::Run(config) => Some((&config.config, env)),
        Command::CollectNow { config, .. } | Command::TestConnectivity { config, .. } => {
            Some((&config.config, env))
        }
        Command::Status { config, .. } | Command::Posture { config, .. } => {
            Some((&config.config, Env::real().without_secrets()))
        }
        Command::VerifyUser { config, .. } => Some((&config.config, env)),
        Command::MigrateState(args) => Some((&args.config, env)),
        Command::Simulate(_) | Command::Demo(_) => None,
    }
}

/// The command's config, read once before logging starts (its `log_format` decides how
/// logging starts); its warnings are logged once logging runs.
type Loaded = Option<Result<Config, ConfigError>>;

fn load_config(loaded: Loaded) -> Result<Config, ExitCode> {
    match loaded {
        Some(Ok(config)) => {
            for w in &config.warnings {
                tracing::warn!("config: {w}");
            }
            Ok(config)
        }
        Some(Err(e)) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
        None => {
            eprintln!("error: this command reads no config file");
            Err(ExitCode::from(EXIT_FAILURE))
        }
    }
}

/// The config, with `--integration NAME`, if given, checked to be in it.
fn load_config_with(
    loaded: Loaded,
    path: &std::path::Path,
    integration: Option<&str>,
) -> Result<Config, ExitCode> {
    let config = load_config(loaded)?;
    if let Some(name) = integration {
        if config.integration(name).is_none() {
            eprintln!("error: --integration {name:?} is not in {}", path.display());
            return Err(ExitCode::from(EXIT_CONFIG));
        }
    }
    Ok(config)
}

/// Writes a command's report to stdout. A reader that went away (`status | head`) is not an
/// error: the command has said what it had to, to whoever still listened.
fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// A token cancelled by the first SIGTERM or SIGINT, or once stdout is closed (EPIPE): events
/// written to stdout have no reader any more, so the command stops instead of retrying.
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
            _ = duo_collector::sink::stdout_closed() => tracing::debug!("standard output closed"),
        }
        t.cancel();
    });
    Ok(token)
}

async fn real_main(cli: Cli, loaded: Loaded) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { config: arg, .. } => match load_config(loaded) {
            Ok(config) => {
                if let Some(problem) = config.state_dir_problem() {
                    eprintln!("error: [collector]: field `state_dir`: {problem}");
                    return Ok(ExitCode::from(EXIT_CONFIG));
                }
                emit(&format!(
                    "{}: valid ({} integration(s), {} sink(s), {} warning(s))\n",
                    arg.config.display(),
                    config.integrations.len(),
                    config.sinks.len(),
                    config.warnings.len()
                ))?;
                Ok(ExitCode::SUCCESS)
            }
            Err(code) => Ok(code),
        },
        Command::Run(arg) => {
            let Ok(config) = load_config(loaded) else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            let cancel = shutdown_token()?;
            // The service waits for a failing sink (backpressure) instead of skipping pages.
            let options = RuntimeOptions {
                observer: std::sync::Arc::new(duo_collector::observe::Observer::new(
                    config.collector.unready_after_failures,
                )),
                sink_retry: duo_collector::sink::SinkRetry::until_delivered(),
                ..RuntimeOptions::default()
            };
            let runtime = Runtime::open(&config, &options).await?;
            let reload = daemon::ReloadSource {
                path: arg.config.clone(),
            };
            daemon::run(runtime, config, Some(reload), cancel).await?;
            Ok(stdout_closed_exit().unwrap_or(ExitCode::SUCCESS))
        }
        Command::CollectNow {
            config,
            integration,
            only,
        } => {
            let cfg = match load_config_with(loaded, &config.config, integration.as_deref()) {
                Ok(cfg) => cfg,
                Err(code) => return Ok(code),
            };
            let cancel = shutdown_token()?;
            let options = RuntimeOptions::default();
            options.observer.add_listener(std::sync::Arc::new(
                duo_collector::progress::ProgressDisplay::new(),
            ));
            let runtime = Runtime::open(&cfg, &options).await?;
            let what = match only.as_deref() {
                Some("logs") => Collect::LOGS,
                Some("inventory") => Collect::INVENTORY,
                _ => Collect::ALL,
            };
            let reports =
                daemon::collect_once_with(&runtime, integration.as_deref(), what, &cancel).await;
            runtime.shutdown().await;
            if let Some(code) = stdout_closed_exit() {
                return Ok(code);
            }
            Ok(if print_reports(&reports) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILURE)
            })
        }
        Command::TestConnectivity {
            config,
            integration,
            json,
        } => {
            let cfg = match load_config_with(loaded, &config.config, integration.as_deref()) {
                Ok(cfg) => cfg,
                Err(code) => return Ok(code),
            };
            let cancel = shutdown_token()?;
            let report =
                duo_collector::connectivity::run(&cfg, integration.as_deref(), &cancel).await;
            if json {
                emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
            } else {
                emit(&report.render_text())?;
            }
            Ok(if report.failed() {
                ExitCode::from(EXIT_FAILURE)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Status { json, .. } => {
            // status reads the state database only: it never needs a secret.
            let Ok(cfg) = load_config(loaded) else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            let stored = match &cfg.state {
                StoreSettings::Nats(_) => {
                    let store = StateStore::open(&cfg.state, &cfg.state_db_path()).await?;
                    status::Stored::read(&store).await?
                }
                StoreSettings::Sqlite => {
                    let path = cfg.state_db_path();
                    if !path.exists() {
                        eprintln!(
                            "no state database at {} yet: run `duo-collector run` or `collect-now` first",
                            path.display()
                        );
                        return Ok(ExitCode::from(EXIT_FAILURE));
                    }
                    status::Stored::read_sqlite(&State::open_read_only(&path)?)?
                }
            };
            let now = duo_collector::clock::now_ms();
            // Duo's clock is not asked here (status calls nobody): the local clock stands in.
            let delay_ms = |name: &str| {
                cfg.integration(name)
                    .map_or(0, |i| i.delay.as_millis() as i64)
            };
            let duo_offset = |name: &str| {
                stored
                    .clocks
                    .iter()
                    .find(|c| c.integration == name)
                    .map(|c| c.offset_ms)
            };
            let mut rows = status::rows(&stored.streams, now, &delay_ms, &duo_offset);
            let instances = stored.leases.as_ref().map(|view| {
                status_cluster::attach_holders(&mut rows, view);
                status_cluster::instance_rows(view)
            });
            let sinks = status::sink_rows(&cfg.sinks, &stored.sinks);
            let pacing = status::pacing_rows(&stored.clocks, &stored.pacing);
            let inventory = status::inventory_rows(&stored.snapshots, now);
            if json {
                let mut all = serde_json::json!({
                    "streams": rows, "sinks": sinks, "integrations": pacing, "inventory": inventory
                });
                if let Some(instances) = &instances {
                    all["instances"] = serde_json::to_value(instances)?;
                }
                emit(&format!("{}\n", serde_json::to_string_pretty(&all)?))?;
            } else {
                emit(&format!(
                    "{}{}{}{}{}",
                    status::render_text(&rows),
                    status::render_sinks_text(&sinks),
                    status::render_pacing_text(&pacing),
                    status::render_inventory_text(&inventory),
                    instances
                        .as_deref()
                        .map(status_cluster::render_instances_text)
                        .unwrap_or_default()
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::VerifyUser { args, .. } => {
            let Ok(cfg) = load_config(loaded) else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            let cancel = shutdown_token()?;
            verify_user(&cfg, args, &cancel).await
        }
        Command::Posture {
            integration,
            json,
            details,
            ..
        } => {
            let Ok(cfg) = load_config(loaded) else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            if let Some(name) = integration
                .as_deref()
                .filter(|n| cfg.integration(n).is_none())
            {
                eprintln!("error: --integration {name:?}: no such integration in the config");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            let store = match &cfg.state {
                StoreSettings::Nats(_) => {
                    StateStore::open(&cfg.state, &cfg.state_db_path()).await?
                }
                StoreSettings::Sqlite => {
                    let path = cfg.state_db_path();
                    if !path.exists() {
                        eprintln!("no state database at {} yet: run `duo-collector collect-now --only inventory` first", path.display());
                        return Ok(ExitCode::from(EXIT_FAILURE));
                    }
                    StateStore::sqlite(State::open_read_only(&path)?)
                }
            };
            let selected: Vec<(String, std::time::Duration)> = cfg
                .integrations
                .iter()
                .filter(|i| integration.as_deref().is_none_or(|n| n == i.name))
                .map(|i| (i.name.clone(), i.inactive_after))
                .collect();
            let report = posture_report::report(&store, &selected).await?;
            if json {
                let value = posture_report::to_json(&report, details);
                emit(&format!("{}\n", serde_json::to_string_pretty(&value)?))?;
            } else {
                emit(&posture_report::to_text(&report, details))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::MigrateState(args) => match load_config(loaded) {
            Ok(cfg) => Ok(ExitCode::from(
                duo_collector::migrate_state::run_command(&cfg, &args).await,
            )),
            Err(code) => Ok(code),
        },
        Command::Simulate(args) => {
            let cancel = shutdown_token()?;
            demo::simulate(*args, cancel).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            let cancel = shutdown_token()?;
            demo::demo(args, cancel).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn verify_user(
    cfg: &Config,
    args: duo_collector::verify::VerifyUserArgs,
    cancel: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let done = match duo_collector::verify::run(cfg, &args.into_request(), cancel).await {
        Ok(done) => done,
        Err(e) => {
            eprintln!("error: {e}");
            let code = if e.is_config() {
                EXIT_CONFIG
            } else {
                EXIT_FAILURE
            };
            return Ok(ExitCode::from(code));
        }
    };
    if json {
        emit(&format!("{}\n", done.to_json()))?;
    } else {
        emit(&done.render_text())?;
    }
    if let Err(e) = &done.delivery {
        eprintln!("error: the outcome event was not delivered to the sinks: {e}");
        return Ok(ExitCode::from(EXIT_FAILURE));
    }
    Ok(ExitCode::from(done.outcome.exit_code()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded: Loaded = config_source(&cli).map(|(path, env)| Config::load_with(path, &env));
    let configured = loaded
        .as_ref()
        .and_then(|l| l.as_ref().ok())
        .and_then(|c| c.collector.log_format);
    let json = match cli.log_format.as_deref() {
        Some(flag) => flag == "json",
        None => configured == Some(LogFormat::Json),
    };
    init_tracing(&cli.log_level, json);
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
    match runtime.block_on(real_main(cli, loaded)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
