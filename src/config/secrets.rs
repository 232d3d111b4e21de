//! Resolving the secret key from exactly one source, and warning about readable secrets.

use std::path::{Path, PathBuf};

use super::validate::{Env, Report};
use super::Config;
use crate::secret::Secret;

/// The ways a secret key can be given; exactly one must be.
pub(super) struct SecretSources {
    pub literal: Option<String>,
    pub file: Option<String>,
    pub env_name: Option<String>,
    /// A systemd credential name, read from `$CREDENTIALS_DIRECTORY/<name>`.
    pub credential: Option<String>,
}

pub(super) fn resolve_skey(
    report: &mut Report,
    env: &Env,
    scope: &str,
    sources: SecretSources,
) -> Option<Secret> {
    let SecretSources {
        literal,
        mut file,
        env_name,
        credential,
    } = sources;
    let given = [
        literal.is_some(),
        file.is_some(),
        env_name.is_some(),
        credential.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        let what = if given == 0 {
            "missing"
        } else {
            "given more than once"
        };
        report.problems.push(format!(
            "{scope}: field `skey`: secret key {what}; set exactly one of `skey_file` (recommended), `skey_credential` (systemd LoadCredential=), `skey_env` or `skey`"
        ));
        return None;
    }
    let mut field_name = "skey_file";
    if let Some(name) = credential {
        field_name = "skey_credential";
        if name.is_empty() || name.contains('/') {
            report.error(
                scope,
                "skey_credential",
                format!("{name:?} must be a credential name, as in LoadCredential=NAME:PATH"),
            );
            return None;
        }
        match env.var("CREDENTIALS_DIRECTORY") {
            Some(dir) => file = Some(format!("{dir}/{name}")),
            None => {
                report.error(scope, "skey_credential", format!("$CREDENTIALS_DIRECTORY is not set: run under systemd with LoadCredential={name}:/path/to/secret, or use `skey_file`"));
                return None;
            }
        }
    }
    let (field, value) = if let Some(v) = literal {
        report.literal_secret = true;
        ("skey", v)
    } else if let Some(path) = file {
        let path = PathBuf::from(path);
        match std::fs::read_to_string(&path) {
            Ok(v) => {
                if let Some(w) = others_can_read(&path) {
                    report.warn(
                        scope,
                        field_name,
                        format!("{} {w}; run chmod 600 on it", path.display()),
                    );
                }
                (field_name, v)
            }
            Err(e) => {
                report.error(
                    scope,
                    field_name,
                    format!("cannot read {}: {e}", path.display()),
                );
                return None;
            }
        }
    } else {
        let name = env_name.unwrap_or_default();
        match env.var(&name) {
            Some(v) => ("skey_env", v),
            None => {
                report.error(
                    scope,
                    "skey_env",
                    format!("environment variable {name:?} is not set"),
                );
                return None;
            }
        }
    };
    let value = value.trim();
    if value.is_empty() {
        report.error(
            scope,
            field,
            "the secret key is empty; paste the Admin API application's secret key",
        );
        return None;
    }
    Some(Secret::new(value))
}

/// Describes why a file is readable by users other than its owner, if it is.
pub(super) fn others_can_read(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    if mode & 0o004 != 0 {
        Some("is readable by every user")
    } else if mode & 0o040 != 0 {
        Some("is readable by its group")
    } else {
        None
    }
}

/// A config that holds a literal `skey` must not be readable by others.
pub fn config_file_permission_warning(path: &Path, config: &Config) -> Option<String> {
    if !config.literal_secret {
        return None;
    }
    others_can_read(path).map(|why| {
        format!(
            "{}: {why} and holds a literal `skey`; run chmod 600 on it or move the secret to `skey_file`",
            path.display()
        )
    })
}
