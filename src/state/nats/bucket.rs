//! One state bucket: JSON values by key, every failure named by the bucket (and, for a value
//! this build cannot read, the key). A checkpoint is only ever written by `create` / `update`
//! at a revision; [`Bucket::modify`] is the read-modify-write loop for the values that only
//! count or remember (runs, sink status), which a concurrent writer may interleave with.

use async_nats::jetstream::kv;
use futures::TryStreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::state::StateError;

/// How many times a read-modify-write is tried when another writer got in between.
const MODIFY_ATTEMPTS: usize = 16;

/// Another write got there first (a compare-and-set that failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict;

#[derive(Clone)]
pub struct Bucket {
    pub name: String,
    pub kv: kv::Store,
    /// How long a scan waits for its next entry before it gives up.
    pub timeout: std::time::Duration,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Bucket {
    pub fn error(&self, detail: impl std::fmt::Display) -> StateError {
        StateError::Kv {
            bucket: self.name.clone(),
            detail: detail.to_string(),
        }
    }

    fn corrupt(&self, key: &str, detail: impl std::fmt::Display) -> StateError {
        StateError::Corrupt {
            stream: format!("{}/{key}", self.name),
            detail: detail.to_string(),
        }
    }

    fn encode<T: Serialize>(&self, key: &str, value: &T) -> Result<bytes::Bytes, StateError> {
        serde_json::to_vec(value)
            .map(bytes::Bytes::from)
            .map_err(|e| self.corrupt(key, format!("not encodable: {e}")))
    }

    /// The value and its revision; `None` for a key never written, deleted or expired.
    pub async fn get<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, u64)>, StateError> {
        let entry = self.kv.entry(key).await.map_err(|e| self.error(e))?;
        let Some(entry) = entry else {
            return Ok(None);
        };
        if !matches!(entry.operation, kv::Operation::Put) {
            return Ok(None);
        }
        let value = serde_json::from_slice(&entry.value).map_err(|e| self.corrupt(key, e))?;
        Ok(Some((value, entry.revision)))
    }

    pub async fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<u64, StateError> {
        let bytes = self.encode(key, value)?;
        self.kv.put(key, bytes).await.map_err(|e| self.error(e))
    }

    /// Writes `value` only if the key holds nothing (never written, deleted or expired).
    pub async fn create<T: Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<Result<u64, Conflict>, StateError> {
        let bytes = self.encode(key, value)?;
        match self.kv.create(key, bytes).await {
            Ok(revision) => Ok(Ok(revision)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(Err(Conflict)),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Writes `value` only if the key is still at `revision`.
    pub async fn update<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        revision: u64,
    ) -> Result<Result<u64, Conflict>, StateError> {
        let bytes = self.encode(key, value)?;
        match self.kv.update(key, bytes, revision).await {
            Ok(revision) => Ok(Ok(revision)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(Err(Conflict)),
            Err(e) => Err(self.error(e)),
        }
    }

    /// `create` at revision 0, `update` at any other.
    pub async fn write_at<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        revision: u64,
    ) -> Result<Result<u64, Conflict>, StateError> {
        if revision == 0 {
            self.create(key, value).await
        } else {
            self.update(key, value, revision).await
        }
    }

    /// Reads the value, lets `change` decide the new one (`None`: leave it), writes it back at
    /// the revision read; read again when another writer got in between.
    pub async fn modify<T: Serialize + DeserializeOwned, R>(
        &self,
        key: &str,
        mut change: impl FnMut(Option<T>) -> Option<(T, R)>,
    ) -> Result<Option<R>, StateError> {
        for _ in 0..MODIFY_ATTEMPTS {
            let current = self.get::<T>(key).await?;
            let revision = current.as_ref().map_or(0, |(_, r)| *r);
            let Some((value, result)) = change(current.map(|(v, _)| v)) else {
                return Ok(None);
            };
            if self.write_at(key, &value, revision).await?.is_ok() {
                return Ok(Some(result));
            }
        }
        Err(self.error(format!(
            "{key}: {MODIFY_ATTEMPTS} writes in a row lost to other writers"
        )))
    }

    /// Every key that holds a value, sorted.
    pub async fn keys(&self) -> Result<Vec<String>, StateError> {
        let keys = self.kv.keys().await.map_err(|e| self.error(e))?;
        let mut keys: Vec<String> = keys.try_collect().await.map_err(|e| self.error(e))?;
        keys.sort();
        Ok(keys)
    }

    /// Hands every key matching `filter` (a key pattern, `>` for the rest) to `each` with its
    /// revision and value (empty with `headers_only`), in the order they were written, not sorted. One
    /// consumer delivers them, instead of a request per key; deleted keys are left out. A key
    /// written while the scan runs may be handed over twice (its write before and after; the
    /// later has the higher revision): the caller keeps the one it needs.
    pub async fn scan(
        &self,
        filter: &str,
        headers_only: bool,
        mut each: impl FnMut(&str, u64, &[u8]) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        use async_nats::jetstream::consumer::{pull, DeliverPolicy, ReplayPolicy};
        // Pulled in batches: a pushed consumer would deliver the whole listing into the
        // client's buffer as fast as the server sends it, whatever `each` keeps up with.
        let consumer = self
            .kv
            .stream
            .create_consumer(pull::OrderedConfig {
                description: Some("duo-collector inventory scan".to_string()),
                filter_subject: format!("{}{filter}", self.kv.prefix),
                headers_only,
                replay_policy: ReplayPolicy::Instant,
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| self.error(e))?;
        if consumer.cached_info().num_pending == 0 {
            return Ok(());
        }
        let mut messages = consumer.messages().await.map_err(|e| self.error(e))?;
        loop {
            // The count of what is left comes with each entry; one removed meanwhile (a purge)
            // would leave the last never delivered, so waiting is bounded.
            let next = tokio::time::timeout(self.timeout, messages.try_next())
                .await
                .map_err(|_| self.error(format!("{filter}: no entry within {:?}", self.timeout)))?
                .map_err(|e| self.error(e))?;
            let Some(message) = next else {
                return Ok(());
            };
            let info = message.info().map_err(|e| self.error(e))?;
            let pending = info.pending;
            let removed = message.headers.as_ref().is_some_and(|h| {
                h.get("KV-Operation").is_some() || h.get("Nats-Marker-Reason").is_some()
            });
            if !removed {
                let key = message
                    .subject
                    .strip_prefix(self.kv.prefix.as_str())
                    .unwrap_or(&message.subject);
                each(key, info.stream_sequence, &message.payload)?;
            }
            // The count of what is left can say 0 while a key written during the scan is still
            // to come (its earlier write was superseded before it was delivered): a scan of the
            // whole bucket (the leases, renewed all the time) is done only once the stream holds
            // nothing after this entry. (A pattern's keys are written once: inventory entities.)
            if pending == 0 && (filter != ">" || self.nothing_after(info.stream_sequence).await?) {
                return Ok(());
            }
        }
    }

    /// Whether the bucket's stream holds no entry after `sequence`.
    async fn nothing_after(&self, sequence: u64) -> Result<bool, StateError> {
        let info = self.kv.stream.get_info().await.map_err(|e| self.error(e))?;
        Ok(sequence >= info.state.last_sequence)
    }

    /// Removes every key matching `filter` at once (a purge of the bucket's stream).
    pub async fn purge(&self, filter: &str) -> Result<(), StateError> {
        self.kv
            .stream
            .purge()
            .filter(format!("{}{filter}", self.kv.prefix))
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }
}
