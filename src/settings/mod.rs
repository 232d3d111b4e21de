//! The whole configuration: the config file (`crate::config`) and every sink's settings, which
//! each sink type validates itself (`crate::sink::config`). This is the one place that knows
//! both, so that `config` never imports `sink`.

use std::path::Path;

use crate::config::{
    duplicate_names, read_config_file, CollectorSettings, ConfigError, ConfigFile, Env, Integration,
};
use crate::sink::config::{one_file_sink_per_path, validate_sink, SinkSettings};
use crate::state::StoreSettings;

mod state;

pub use state::state_keys;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub collector: CollectorSettings,
    pub integrations: Vec<Integration>,
    pub sinks: Vec<SinkSettings>,
    /// `[state]`: the state store's backend.
    pub state: StoreSettings,
    /// Problems that do not stop the collector but that an operator should see.
    pub warnings: Vec<String>,
    /// Whether some integration's secret key is written in the file itself.
    pub literal_secret: bool,
    /// False for a config loaded with [`Env::without_secrets`]: its secrets are empty and it
    /// must not be used to call Duo or a sink.
    pub secrets_resolved: bool,
}

/// Parses and validates config text, sinks included; `source_name` names it in messages.
pub fn parse_config_str(text: &str, source_name: &str, env: &Env) -> Result<Config, ConfigError> {
    assemble(
        crate::config::parse_config_file(text, source_name, env)?,
        env,
    )
}

/// Hands each `[[sink]]` to its sink type, then checks what concerns the sinks together.
fn assemble(mut file: ConfigFile, env: &Env) -> Result<Config, ConfigError> {
    let report = &mut file.report;
    let sinks: Vec<SinkSettings> = file
        .sinks
        .iter()
        .filter_map(|section| validate_sink(report, env, section))
        .collect();
    duplicate_names(report, "sink", sinks.iter().map(|s| s.name.as_str()));
    one_file_sink_per_path(report, &sinks);
    let state = state::validate_state(report, env, file.state.as_ref());
    if file.integrations.is_empty() && report.problems.is_empty() {
        report.problems.push(
            "no [[integration]] is configured: add one with name, api_hostname, ikey and a secret key"
                .to_string(),
        );
    }
    if !report.problems.is_empty() {
        return Err(ConfigError {
            source_name: file.source_name,
            problems: std::mem::take(&mut report.problems),
        });
    }
    Ok(Config {
        collector: file.collector,
        integrations: file.integrations,
        sinks,
        state: state.unwrap_or_default(),
        warnings: std::mem::take(&mut file.report.warnings),
        literal_secret: file.report.literal_secret,
        secrets_resolved: file.secrets_resolved,
    })
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &Env::real())
    }

    /// [`Config::load`] with a chosen environment (credentials directory, secrets or not).
    pub fn load_with(path: &Path, env: &Env) -> Result<Config, ConfigError> {
        let text = read_config_file(path)?;
        let file = crate::config::parse_config_file(&text, &path.display().to_string(), env)?;
        let file_warnings = file.file_warnings(path);
        let mut config = assemble(file, env)?;
        config.warnings.extend(file_warnings);
        Ok(config)
    }

    pub fn integration(&self, name: &str) -> Option<&Integration> {
        self.integrations.iter().find(|i| i.name == name)
    }

    pub fn sink(&self, name: &str) -> Option<&SinkSettings> {
        self.sinks.iter().find(|s| s.name == name)
    }

    /// See [`CollectorSettings::state_dir_problem`].
    pub fn state_dir_problem(&self) -> Option<String> {
        self.collector.state_dir_problem()
    }

    pub fn state_db_path(&self) -> std::path::PathBuf {
        self.collector.state_db_path()
    }
}

#[cfg(test)]
mod sink_tests;
#[cfg(test)]
pub(crate) mod tests;
