//! A connection to NATS as configured (servers, authentication, TLS), shared by the NATS sink
//! and the NATS state store so that both log in the same way and say the same about a refusal.
//! The keys are validated once, by `sink::config::nats::connection`.

use std::time::Duration;

use crate::secret::Secret;
use crate::tls::TlsFiles;

#[derive(Debug, Clone, PartialEq)]
pub enum NatsAuth {
    None,
    Token(Secret),
    UserPassword {
        username: String,
        password: Secret,
    },
    /// The contents of a `.creds` file (JWT and NKey seed).
    Credentials(Secret),
}

/// Where and how to log in.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsConnection {
    /// One or more server URLs, comma-separated.
    pub url: String,
    pub auth: NatsAuth,
    pub tls: TlsFiles,
    pub tls_required: bool,
    /// Connect timeout.
    pub timeout: Duration,
}

/// Why a login failed; with a fix when trying again cannot help (refused credentials, bad
/// certificate files), without one when the server may yet answer (down, unreachable, slow).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ConnectFailure {
    pub detail: String,
    pub fix: Option<String>,
}

impl ConnectFailure {
    fn permanent(detail: String, fix: &str) -> ConnectFailure {
        ConnectFailure {
            detail,
            fix: Some(fix.to_string()),
        }
    }
}

impl NatsConnection {
    pub fn uses_tls(&self) -> bool {
        self.tls_required || !self.tls.is_empty()
    }

    /// Logs in; `client_name` is what the server shows for the connection.
    pub async fn connect(&self, client_name: &str) -> Result<async_nats::Client, ConnectFailure> {
        let mut options = async_nats::ConnectOptions::new()
            .name(client_name)
            .connection_timeout(self.timeout);
        options = match &self.auth {
            NatsAuth::None => options,
            NatsAuth::Token(t) => options.token(t.expose().to_string()),
            NatsAuth::UserPassword { username, password } => {
                options.user_and_password(username.clone(), password.expose().to_string())
            }
            NatsAuth::Credentials(c) => options.credentials(c.expose()).map_err(|e| {
                ConnectFailure::permanent(
                    format!("creds_file is not a valid NATS credentials file: {e}"),
                    "point creds_file at the .creds file `nsc generate creds` wrote",
                )
            })?,
        };
        if self.uses_tls() {
            let tls = crate::tls::client_config(&self.tls)
                .map_err(|detail| ConnectFailure::permanent(detail, crate::tls::FILES_FIX))?;
            options = options.require_tls(true).tls_client_config(tls);
        }
        options
            .connect(servers(&self.url))
            .await
            .map_err(|e| connect_error(&self.url, &e))
    }
}

/// The servers `url` names: async-nats parses a string as one URL, so a comma-separated list
/// (a cluster) would otherwise fail as an invalid port.
fn servers(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

fn connect_error(url: &str, e: &async_nats::ConnectError) -> ConnectFailure {
    use async_nats::ConnectErrorKind;
    let detail = format!("cannot connect to NATS at {url}: {e}");
    match e.kind() {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            ConnectFailure::permanent(
                detail,
                "the server refused the credentials: check token_file / token_env, username and password_file, or creds_file against the server's authorization",
            )
        }
        ConnectErrorKind::ServerParse => {
            ConnectFailure::permanent(detail, "check `url`, e.g. \"nats://127.0.0.1:4222\"")
        }
        _ => ConnectFailure {
            detail,
            fix: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::servers;

    #[test]
    fn a_comma_separated_url_names_every_server() {
        assert_eq!(
            servers("nats://n1:4222, nats://n2:4222,nats://n3:4222"),
            ["nats://n1:4222", "nats://n2:4222", "nats://n3:4222"]
        );
        assert_eq!(servers("tls://one:4222"), ["tls://one:4222"]);
    }
}
