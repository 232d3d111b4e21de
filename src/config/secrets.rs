//! Resolving the secret key from exactly one source, and warning about readable secrets.

use std::path::{Path, PathBuf};

use super::credentials::{credential_path, CredentialError};
use super::report::{Env, Report};
use crate::secret::Secret;

/// The ways a secret key can be given; exactly one must be. `base` names the fields:
/// `skey`, `skey_file`, `skey_env`, `skey_credential` (or `auth_skey…`).
pub(super) struct SecretSources {
    pub base: &'static str,
    pub literal: Option<String>,
    pub file: Option<String>,
    pub env_name: Option<String>,
    /// A systemd credential name (see `credentials::credential_path`).
    pub credential: Option<String>,
}

/// Duo Admin API secret keys are this long.
const DUO_SKEY_LEN: usize = 40;

/// Reads the integration's secret key from its one source. For an integration that still has
/// the example's placeholder host or key (`placeholder`), a secret that is not there yet is a
/// warning: the packaged config validates before anything secret exists.
pub(super) fn resolve_skey(
    report: &mut Report,
    env: &Env,
    scope: &str,
    sources: SecretSources,
    placeholder: bool,
) -> Option<Secret> {
    let SecretSources {
        base,
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
            "{scope}: field `{base}`: secret key {what}; set exactly one of `{base}_file` (recommended), `{base}_credential` (systemd LoadCredential=), `{base}_env` or `{base}`"
        ));
        return None;
    }
    let file_field = format!("{base}_file");
    let credential_field = format!("{base}_credential");
    let env_field = format!("{base}_env");
    let mut field_name = file_field.as_str();
    if let Some(name) = credential {
        field_name = &credential_field;
        if !env.resolve_secrets {
            return Some(Secret::new(String::new()));
        }
        match credential_path(env, &name) {
            Ok(path) => file = Some(path.display().to_string()),
            Err(CredentialError::NotFound(why)) if placeholder => {
                report.warn(
                    scope,
                    &credential_field,
                    format!("{why} (not needed until the placeholders are replaced)"),
                );
                return Some(Secret::new(String::new()));
            }
            Err(e) => {
                report.error(scope, &credential_field, e);
                return None;
            }
        }
    }
    if !env.resolve_secrets {
        return Some(Secret::new(String::new()));
    }
    let (field, value) = if let Some(v) = literal {
        report.literal_secret = true;
        (base, v)
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
            Some(v) => (env_field.as_str(), v),
            None => {
                report.error(
                    scope,
                    &env_field,
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
    let length = value.chars().count();
    if length != DUO_SKEY_LEN {
        report.warn(
            scope,
            field,
            format!("the secret key is {length} characters; Duo secret keys are {DUO_SKEY_LEN}: copy the whole key from the Admin API application"),
        );
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
pub fn config_file_permission_warning(path: &Path, literal_secret: bool) -> Option<String> {
    if !literal_secret {
        return None;
    }
    others_can_read(path).map(|why| {
        format!(
            "{}: {why} and holds a literal `skey`; run chmod 600 on it or move the secret to `skey_file`",
            path.display()
        )
    })
}

/// A secret from exactly one of `<base>_file`, `<base>_env`, `<base>_credential`, or none.
/// `Some(None)`: none given; `None`: an error was reported.
pub fn optional_secret(
    report: &mut Report,
    env: &Env,
    scope: &str,
    base: &str,
    file: Option<&str>,
    env_name: Option<&str>,
    credential: Option<&str>,
) -> Option<Option<Secret>> {
    let given = [file.is_some(), env_name.is_some(), credential.is_some()]
        .into_iter()
        .filter(|g| *g)
        .count();
    if given == 0 {
        return Some(None);
    }
    if given > 1 {
        report.error(
            scope,
            &format!("{base}_file"),
            format!("set only one of `{base}_file`, `{base}_env` and `{base}_credential`"),
        );
        return None;
    }
    if !env.resolve_secrets {
        return Some(Some(Secret::new(String::new())));
    }
    let (field, value) = if let Some(name) = env_name {
        let field = format!("{base}_env");
        match env.var(name) {
            Some(v) => (field, v),
            None => {
                report.error(
                    scope,
                    &field,
                    format!("environment variable {name:?} is not set"),
                );
                return None;
            }
        }
    } else {
        let (field, path) = match (file, credential) {
            (Some(path), _) => (format!("{base}_file"), PathBuf::from(path)),
            (None, Some(name)) => {
                let field = format!("{base}_credential");
                match credential_path(env, name) {
                    Ok(path) => (field, path),
                    Err(e) => {
                        report.error(scope, &field, e);
                        return None;
                    }
                }
            }
            (None, None) => return Some(None),
        };
        match std::fs::read_to_string(&path) {
            Ok(v) => (field, v),
            Err(e) => {
                report.error(
                    scope,
                    &field,
                    format!("cannot read {}: {e}", path.display()),
                );
                return None;
            }
        }
    };
    let value = value.trim();
    if value.is_empty() {
        report.error(scope, &field, "the secret is empty");
        return None;
    }
    Some(Some(Secret::new(value)))
}
