//! `verify-user`'s command-line arguments (the config file's own flag is the CLI's).

use super::{DeviceChoice, UserRef, VerifyRequest};

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("who").required(true).args(["username", "user_id"]))]
pub struct VerifyUserArgs {
    /// The integration whose Auth API keys send the push (and whose sinks get the outcome).
    #[arg(long)]
    pub integration: String,
    /// The Duo username.
    #[arg(long)]
    pub username: Option<String>,
    /// The Duo user id (DU…).
    #[arg(long)]
    pub user_id: Option<String>,
    /// "auto" (the first push-capable device) or a device id (DP…) from the user's devices.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// How long to wait for the user's answer once the push is sent.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// Why, shown in Duo Mobile.
    #[arg(long, default_value = "help desk verification")]
    pub reason: String,
    /// Who asks, shown in Duo Mobile. Default: <local user (behind sudo)>@<host>.
    #[arg(long)]
    pub requested_by: Option<String>,
    /// Print one JSON object (outcome, user, device, txid, elapsed_ms, …).
    #[arg(long)]
    pub json: bool,
}

impl VerifyUserArgs {
    pub fn into_request(self) -> VerifyRequest {
        // The argument group requires one of the two; a user id only when no username.
        let user = match self.username {
            Some(name) => UserRef::Username(name),
            None => UserRef::UserId(self.user_id.unwrap_or_default()),
        };
        VerifyRequest {
            integration: self.integration,
            user,
            device: DeviceChoice::parse(&self.device),
            timeout: self.timeout,
            requested_by: self.requested_by,
            reason: self.reason,
        }
    }
}
