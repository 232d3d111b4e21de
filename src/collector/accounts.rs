//! MSP: the child accounts an Accounts API integration collects, listed with
//! `POST /accounts/v1/account/list` and refreshed every `account_refresh`.

use crate::duo::Call;
use std::time::Instant;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::IntegrationRuntime;
use crate::duo::DuoError;
use crate::logs::page::{response_of, PageError};

pub const ACCOUNT_LIST_PATH: &str = "/accounts/v1/account/list";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChildAccount {
    pub account_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub api_hostname: Option<String>,
}

/// The last listing and when it was taken.
#[derive(Debug, Default)]
pub(super) struct ChildCache {
    inner: tokio::sync::Mutex<Option<(Instant, Vec<ChildAccount>)>>,
}

pub fn parse_children(body: &[u8]) -> Result<Vec<ChildAccount>, PageError> {
    let response = response_of(body)?;
    serde_json::from_str(response.get())
        .map_err(|e| PageError(format!("unexpected account list shape ({e})")))
}

/// The children to collect now, listing them again when the cached list is older than
/// `account_refresh`. `accounts = [...]` in the config restricts the set.
pub(super) async fn children(
    rt: &IntegrationRuntime,
    cancel: &CancellationToken,
) -> Result<Vec<ChildAccount>, DuoError> {
    let settings = &rt.settings;
    let mut cache = rt.children.inner.lock().await;
    let fresh = matches!(&*cache, Some((at, _)) if at.elapsed() < settings.account_refresh);
    if !fresh {
        let listed = rt
            .client
            .request(
                &Call::post(&settings.api_hostname, ACCOUNT_LIST_PATH, &[]),
                cancel,
                parse_children,
            )
            .await?;
        let previous: Vec<String> = cache
            .as_ref()
            .map(|(_, c)| c.iter().map(|c| c.account_id.clone()).collect())
            .unwrap_or_default();
        for child in &listed {
            if !previous.is_empty() && !previous.contains(&child.account_id) {
                tracing::info!(integration = %settings.name, account = %child.account_id, name = %child.name, "new child account; collecting it from initial_lookback");
            }
        }
        for gone in previous
            .iter()
            .filter(|id| !listed.iter().any(|c| &c.account_id == *id))
        {
            tracing::info!(integration = %settings.name, account = %gone, "child account no longer listed; collection stops");
        }
        tracing::debug!(integration = %settings.name, children = listed.len(), "child accounts listed");
        *cache = Some((Instant::now(), listed));
    }
    let all = cache.as_ref().map(|(_, c)| c.clone()).unwrap_or_default();
    if settings.accounts.is_empty() {
        return Ok(all);
    }
    for wanted in &settings.accounts {
        if !all.iter().any(|c| &c.account_id == wanted) {
            tracing::warn!(integration = %settings.name, account = %wanted, "`accounts` names a child account that the Accounts API does not list");
        }
    }
    Ok(all
        .into_iter()
        .filter(|c| settings.accounts.contains(&c.account_id))
        .collect())
}
