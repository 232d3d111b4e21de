//! The NATS JetStream sink: one message per event on a subject from a template, with
//! `Nats-Msg-Id` = the event id, so JetStream drops a re-sent event inside its duplicate window.
//! A piece is acknowledged once every one of its messages has a PubAck.

use std::ops::Range;

use async_nats::jetstream;

use super::{Failure, Rendered};
use crate::config::{Batching, NatsAuth, NatsSettings};
use crate::event::StreamId;

pub struct NatsSink {
    settings: NatsSettings,
    js: Option<jetstream::Context>,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("url", &self.settings.url)
            .field("stream", &self.settings.stream)
            .finish()
    }
}

/// The subject for a stream's events: `{integration}`, `{log}` and `{account}` replaced
/// (`{account}` is the MSP child account id, or `own` for the integration's own account).
pub fn subject(template: &str, stream: &StreamId) -> String {
    template
        .replace("{integration}", &stream.integration)
        .replace("{log}", stream.log.as_str())
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
    pub fn open(settings: &NatsSettings) -> Result<NatsSink, String> {
        if settings.tls_required || !settings.tls.is_empty() {
            // Fail at startup on unreadable certificates rather than at the first page.
            super::tls::client_config(&settings.tls)?;
        }
        Ok(NatsSink {
            settings: settings.clone(),
            js: None,
        })
    }

    pub fn limits(&self) -> (Batching, usize) {
        (self.settings.batch, 64)
    }

    async fn connect(&self) -> Result<jetstream::Context, String> {
        let s = &self.settings;
        let mut options = async_nats::ConnectOptions::new()
            .name("duo-collector")
            .connection_timeout(s.timeout);
        options = match &s.auth {
            NatsAuth::None => options,
            NatsAuth::Token(t) => options.token(t.expose().to_string()),
            NatsAuth::UserPassword { username, password } => {
                options.user_and_password(username.clone(), password.expose().to_string())
            }
            NatsAuth::Credentials(c) => options
                .credentials(c.expose())
                .map_err(|e| format!("creds_file is not a valid NATS credentials file: {e}"))?,
        };
        if s.tls_required || !s.tls.is_empty() {
            options = options
                .require_tls(true)
                .tls_client_config(super::tls::client_config(&s.tls)?);
        }
        let client = options
            .connect(s.url.as_str())
            .await
            .map_err(|e| format!("cannot connect to NATS at {}: {e}", s.url))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(s.ack_timeout)
            .build(client);
        if s.create_stream {
            let config = jetstream::stream::Config {
                name: s.stream.clone(),
                subjects: vec![subject_filter(&s.subject)],
                ..Default::default()
            };
            js.get_or_create_stream(config)
                .await
                .map_err(|e| format!("cannot create JetStream stream {:?}: {e}", s.stream))?;
        } else {
            js.get_stream(&s.stream).await.map_err(|e| {
                format!("JetStream stream {:?} is not available ({e}); create it with subjects {:?}, or set create_stream = true", s.stream, subject_filter(&s.subject))
            })?;
        }
        Ok(js)
    }

    pub async fn send(&mut self, page: &Rendered<'_>, range: Range<usize>) -> Result<(), Failure> {
        if self.js.is_none() {
            self.js = Some(self.connect().await.map_err(Failure::transient)?);
        }
        let Some(js) = &self.js else {
            return Err(Failure::transient("not connected"));
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
                .map_err(|e| Failure::transient(format!("publish to {subject}: {e}")))?;
            acks.push(ack);
        }
        let mut duplicates = 0;
        for ack in acks {
            let ack = ack.await.map_err(|e| {
                Failure::transient(format!(
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
