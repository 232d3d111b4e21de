//! Where a `*_credential` name is read: systemd's `$CREDENTIALS_DIRECTORY` under the service;
//! from a shell, `--credentials-directory`, else the directory the shipped unit loads from.

use std::path::{Path, PathBuf};

use super::report::{Env, UNIT_CREDENTIALS_DIR, UNIT_CREDENTIAL_ID};

/// Why a credential could not be located, worded for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CredentialError {
    /// Not a plain file name.
    BadName(String),
    /// Nowhere to look, or the file is not where we looked.
    NotFound(String),
}

impl std::fmt::Display for CredentialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialError::BadName(m) | CredentialError::NotFound(m) => f.write_str(m),
        }
    }
}

/// The file that holds credential `name`.
///
/// Under systemd, `$CREDENTIALS_DIRECTORY/<name>` (a per-file `LoadCredential=NAME:PATH`) or
/// `$CREDENTIALS_DIRECTORY/duo-collector_<name>` (the unit's directory-wide line). From a
/// shell, `--credentials-directory DIR` gives `DIR/<name>`; without it, the unit's own source,
/// `/etc/duo-collector/credentials/<name>`, when this user can read that directory.
pub(super) fn credential_path(env: &Env, name: &str) -> Result<PathBuf, CredentialError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(CredentialError::BadName(format!(
            "{name:?} must be a credential name: a file name in {UNIT_CREDENTIALS_DIR}, e.g. \"corp.skey\""
        )));
    }
    if let Some(dir) = &env.credentials_directory {
        let path = dir.join(name);
        return if path.exists() {
            Ok(path)
        } else {
            Err(CredentialError::NotFound(format!(
                "{} does not exist (from --credentials-directory)",
                path.display()
            )))
        };
    }
    if let Some(dir) = env.var("CREDENTIALS_DIRECTORY") {
        let dir = PathBuf::from(dir);
        let plain = dir.join(name);
        let prefixed = dir.join(format!("{UNIT_CREDENTIAL_ID}_{name}"));
        return if plain.exists() {
            Ok(plain)
        } else if prefixed.exists() {
            Ok(prefixed)
        } else {
            Err(CredentialError::NotFound(format!(
                "systemd passed no credential {name:?}: put the secret in {UNIT_CREDENTIALS_DIR}/{name} (the unit loads that directory) and restart the service"
            )))
        };
    }
    let unit_dir = &env.unit_credentials_directory;
    let path = unit_dir.join(name);
    match std::fs::read_dir(unit_dir) {
        Ok(_) if path.exists() => Ok(path),
        Ok(_) => Err(CredentialError::NotFound(format!(
            "{} does not exist: write the secret there (install -m 0600 /dev/stdin {} <<< 'SECRET'), or pass --credentials-directory DIR",
            path.display(),
            path.display()
        ))),
        Err(e) => Err(CredentialError::NotFound(not_under_systemd(unit_dir, &e))),
    }
}

fn not_under_systemd(unit_dir: &Path, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::PermissionDenied => "is readable by root only (run this as root)",
        std::io::ErrorKind::NotFound => "does not exist",
        _ => "cannot be read",
    };
    format!(
        "$CREDENTIALS_DIRECTORY is not set (it is set under systemd by the unit's LoadCredential=) and {} {why}; pass --credentials-directory DIR, or use `skey_file`",
        unit_dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            std::fs::write(dir.path().join(f), "secret").unwrap();
        }
        dir
    }

    #[test]
    fn under_systemd_the_directory_wide_name_is_found() {
        let creds = dir_with(&["duo-collector_corp.skey"]);
        let env = Env::from_pairs(&[("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())]);
        assert_eq!(
            credential_path(&env, "corp.skey").unwrap(),
            creds.path().join("duo-collector_corp.skey")
        );
    }

    #[test]
    fn a_per_file_credential_wins_over_the_directory_wide_one() {
        let creds = dir_with(&["corp.skey", "duo-collector_corp.skey"]);
        let env = Env::from_pairs(&[("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())]);
        assert_eq!(
            credential_path(&env, "corp.skey").unwrap(),
            creds.path().join("corp.skey")
        );
    }

    #[test]
    fn from_a_shell_the_flag_then_the_unit_directory() {
        let flag = dir_with(&["corp.skey"]);
        let unit = dir_with(&["corp.skey"]);
        let env = Env::from_pairs(&[])
            .with_unit_credentials_directory(unit.path().to_path_buf())
            .with_credentials_directory(Some(flag.path().to_path_buf()));
        assert_eq!(
            credential_path(&env, "corp.skey").unwrap(),
            flag.path().join("corp.skey")
        );
        let env = Env::from_pairs(&[]).with_unit_credentials_directory(unit.path().to_path_buf());
        assert_eq!(
            credential_path(&env, "corp.skey").unwrap(),
            unit.path().join("corp.skey")
        );
    }

    #[test]
    fn nowhere_to_look_says_what_to_do() {
        let env = Env::from_pairs(&[]).with_unit_credentials_directory("/nonexistent/creds".into());
        let e = credential_path(&env, "corp.skey").unwrap_err().to_string();
        assert!(e.contains("$CREDENTIALS_DIRECTORY is not set"), "{e}");
        assert!(e.contains("--credentials-directory"), "{e}");
        assert!(matches!(
            credential_path(&env, "../x"),
            Err(CredentialError::BadName(_))
        ));
    }
}
