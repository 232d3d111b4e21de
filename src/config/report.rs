//! What validation reports into ([`Report`]) and what it reads from the process ([`Env`]).
//! A leaf of `config`: every section's validator (here and in the sinks' own modules) takes
//! these two, so none of them needs the others.

use std::path::PathBuf;

/// The directory the shipped unit hands to the service (`LoadCredential=ID:DIR`).
pub const UNIT_CREDENTIALS_DIR: &str = "/etc/duo-collector/credentials";
/// The ID in the unit's `LoadCredential=duo-collector:/etc/duo-collector/credentials`: systemd
/// names each file's credential `<ID>_<file name>`.
pub const UNIT_CREDENTIAL_ID: &str = "duo-collector";

type VarLookup = Box<dyn Fn(&str) -> Option<String>>;

/// The process environment, injectable so tests need not mutate global state.
pub struct Env {
    var: VarLookup,
    /// `--credentials-directory`: where `*_credential` names are read outside systemd.
    pub(crate) credentials_directory: Option<PathBuf>,
    /// The directory the shipped unit loads credentials from; read when it is readable and
    /// neither systemd nor `--credentials-directory` says otherwise.
    pub(crate) unit_credentials_directory: PathBuf,
    /// Whether secrets are read at all (`status` needs none).
    pub(crate) resolve_secrets: bool,
}

impl Env {
    pub fn real() -> Env {
        Env {
            var: Box::new(|name| std::env::var(name).ok()),
            credentials_directory: None,
            unit_credentials_directory: PathBuf::from(UNIT_CREDENTIALS_DIR),
            resolve_secrets: true,
        }
    }

    /// Reads `*_credential` names from `dir` (the `--credentials-directory` flag).
    pub fn with_credentials_directory(mut self, dir: Option<PathBuf>) -> Env {
        self.credentials_directory = dir;
        self
    }

    /// Uses `dir` in place of /etc/duo-collector/credentials (tests).
    pub fn with_unit_credentials_directory(mut self, dir: PathBuf) -> Env {
        self.unit_credentials_directory = dir;
        self
    }

    /// Checks how secrets are given without reading them: for commands that never call Duo
    /// or a sink (`status`). The resulting [`Config`] holds empty secrets and says so.
    pub fn without_secrets(mut self) -> Env {
        self.resolve_secrets = false;
        self
    }

    pub fn from_pairs(pairs: &[(&str, &str)]) -> Env {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env {
            var: Box::new(move |name| {
                owned
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            }),
            credentials_directory: None,
            unit_credentials_directory: PathBuf::from(UNIT_CREDENTIALS_DIR),
            resolve_secrets: true,
        }
    }

    pub(crate) fn var(&self, name: &str) -> Option<String> {
        (self.var)(name)
    }
}

/// Collects problems and warnings with a consistent prefix.
#[derive(Default)]
pub struct Report {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    pub literal_secret: bool,
}

impl Report {
    pub fn error(&mut self, scope: &str, field: &str, message: impl std::fmt::Display) {
        self.problems
            .push(format!("{scope}: field `{field}`: {message}"));
    }

    pub fn warn(&mut self, scope: &str, field: &str, message: impl std::fmt::Display) {
        self.warnings
            .push(format!("{scope}: field `{field}`: {message}"));
    }
}
