//! The NATS JetStream sink: one message per event on a subject from a template, with
//! `Nats-Msg-Id` = the event id, so JetStream drops a re-sent event inside its duplicate window.
//! A piece is acknowledged once every one of its messages has a PubAck.

use std::ops::Range;

use async_nats::jetstream;

use super::config::{Batching, NatsSettings};
use super::{DriverError, Rendered};
use crate::event::StreamId;

pub struct NatsSink {
    settings: NatsSettings,
    js: Option<jetstream::Context>,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("url", &self.settings.connection.url)
            .field("stream", &self.settings.stream)
            .finish()
    }
}

/// The subject for a stream's events: `{integration}`, `{log}` and `{account}` replaced
/// (`{account}` is the MSP child account id, or `own` for the integration's own account).
pub fn subject(template: &str, stream: &StreamId) -> String {
    template
        .replace("{integration}", &stream.integration)
        .replace("{log}", stream.source_name())
        .replace("{account}", stream.account_id.as_deref().unwrap_or("own"))
}

/// The subjects a created stream listens on: every placeholder becomes a `*` wildcard.
pub fn subject_filter(template: &str) -> String {
    template
        .replace("{integration}", "*")
        .replace("{log}", "*")
        .replace("{account}", "*")
}

impl NatsSink {
    pub fn open(settings: &NatsSettings) -> Result<NatsSink, DriverError> {
        if settings.connection.uses_tls() {
            // Fail at startup on unreadable certificates rather than at the first page.
            super::tls::client_config(&settings.connection.tls)?;
        }
        Ok(NatsSink {
            settings: settings.clone(),
            js: None,
        })
    }

    pub fn limits(&self) -> (Batching, usize) {
        (self.settings.batch, 64)
    }

    /// Logs in as a delivery would and checks the stream; creates nothing (a stream that
    /// `create_stream` would create is reported as such).
    pub async fn probe(&self) -> Result<String, DriverError> {
        let s = &self.settings;
        let js = self.login().await?;
        match js.get_stream(&s.stream).await {
            Ok(_) => Ok(format!("{} accepted the login; stream {:?} exists", s.connection.url, s.stream)),
            Err(e) => match stream_error(&s.stream, &s.subject, &e) {
                DriverError::Permanent { .. } if s.create_stream && is_not_found(&e) => Ok(format!(
                    "{} accepted the login; stream {:?} does not exist yet and is created at the first delivery (create_stream = true)",
                    s.connection.url, s.stream
                )),
                other => Err(other),
            },
        }
    }

    async fn connect(&self) -> Result<jetstream::Context, DriverError> {
        let s = &self.settings;
        let js = self.login().await?;
        if s.create_stream {
            let config = jetstream::stream::Config {
                name: s.stream.clone(),
                subjects: vec![subject_filter(&s.subject)],
                ..Default::default()
            };
            js.get_or_create_stream(config).await.map_err(|e| {
                let detail = format!("cannot create JetStream stream {:?}: {e}", s.stream);
                match e.kind() {
                    // The server answered and refused this stream (its subjects overlap
                    // another's, no permission, ...): the same request fails again.
                    jetstream::context::CreateStreamErrorKind::JetStream(_) => DriverError::permanent(
                        detail,
                        "create the stream on the server yourself, or fix `stream` / `subject` so they do not clash with an existing stream",
                    ),
                    _ => DriverError::transient(detail),
                }
            })?;
        } else {
            js.get_stream(&s.stream)
                .await
                .map_err(|e| stream_error(&s.stream, &s.subject, &e))?;
        }
        Ok(js)
    }

    async fn login(&self) -> Result<jetstream::Context, DriverError> {
        let client = self
            .settings
            .connection
            .connect("duo-collector")
            .await
            .map_err(|failure| match failure.fix {
                Some(fix) => DriverError::permanent(failure.detail, fix),
                None => DriverError::transient(failure.detail),
            })?;
        Ok(jetstream::ContextBuilder::new()
            .timeout(self.settings.ack_timeout)
            .build(client))
    }

    pub async fn send(
        &mut self,
        page: &Rendered<'_>,
        range: Range<usize>,
    ) -> Result<(), DriverError> {
        if self.js.is_none() {
            self.js = Some(self.connect().await?);
        }
        let Some(js) = &self.js else {
            return Err(DriverError::transient("not connected"));
        };
        let subject = subject(&self.settings.subject, page.batch.stream);
        // Publish the whole piece, then wait for every PubAck.
        let mut acks = Vec::with_capacity(range.len());
        for i in range {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", page.batch.events[i].event_id.as_str());
            let payload = bytes::Bytes::copy_from_slice(page.line(i));
            let ack = js
                .publish_with_headers(subject.clone(), headers, payload)
                .await
                .map_err(|e| DriverError::transient(format!("publish to {subject}: {e}")))?;
            acks.push(ack);
        }
        let mut duplicates = 0;
        for ack in acks {
            let ack = ack.await.map_err(|e| {
                DriverError::transient(format!(
                    "no PubAck from stream {:?} on {subject}: {e}",
                    self.settings.stream
                ))
            })?;
            duplicates += usize::from(ack.duplicate);
        }
        if duplicates > 0 {
            tracing::info!(stream = %self.settings.stream, subject = %subject, duplicates, "JetStream dropped re-sent events (same Nats-Msg-Id)");
        }
        Ok(())
    }
}

fn is_not_found(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), async_nats::jetstream::context::GetStreamErrorKind::JetStream(js)
        if js.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// A stream the server says does not exist is permanent; no answer is transient.
fn stream_error(
    stream: &str,
    subject: &str,
    e: &async_nats::jetstream::context::GetStreamError,
) -> DriverError {
    use async_nats::jetstream::context::GetStreamErrorKind;
    let detail = format!("JetStream stream {stream:?} is not available ({e})");
    match e.kind() {
        _ if is_not_found(e) => DriverError::permanent(
            detail,
            format!(
                "create it with subjects {:?} (nats stream add), or set create_stream = true",
                subject_filter(subject)
            ),
        ),
        GetStreamErrorKind::InvalidStreamName | GetStreamErrorKind::EmptyName => {
            DriverError::permanent(detail, "fix `stream`")
        }
        _ => DriverError::transient(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogKind;

    #[test]
    fn subjects_from_the_template() {
        let own = StreamId::new("corp", None, LogKind::Authentication);
        let child = StreamId::new("msp", Some("DA123".into()), LogKind::TrustMonitor);
        assert_eq!(
            subject("duo.{integration}.{log}", &own),
            "duo.corp.authentication"
        );
        assert_eq!(
            subject("duo.{account}.{log}", &child),
            "duo.DA123.trust_monitor"
        );
        assert_eq!(subject("duo.{account}", &own), "duo.own");
        assert_eq!(subject_filter("duo.{integration}.{log}"), "duo.*.*");
    }
}
