//! Simulator tests: real HTTP against a bound simulator, requests signed with `crate::duo::sign`.

mod api;
mod clock_and_limits;
mod inventory;
mod inventory_parts;
mod modes;
mod paging;

use serde_json::Value;

use super::*;
use crate::duo::sign::{authorization_header, rfc2822_date, signature_hex, SigVersion, SignInput};

pub(super) const HOST: &str = "api-sim00001.duosecurity.com";
pub(super) const MIN: i64 = 60_000;
pub(super) const DAY: i64 = 86_400_000;

pub(super) fn cfg() -> SimConfig {
    let now = now_ms();
    SimConfig {
        start_ms: now - 2 * DAY,
        end_ms: now - 10 * MIN,
        counts: KindCounts {
            authentication: 5000,
            administrator: 2600,
            telephony: 700,
            activity: 700,
            trust_monitor: 450,
            offline_enrollment: 300,
        },
        ..SimConfig::default()
    }
}

pub(super) async fn start(cfg: SimConfig) -> Simulator {
    Simulator::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap()
}

/// One signed (or unsigned) request.
#[derive(Clone)]
pub(super) struct Call {
    pub(super) method: &'static str,
    pub(super) path: String,
    pub(super) params: Vec<(String, String)>,
    pub(super) ikey: String,
    pub(super) skey: String,
    pub(super) host: String,
    pub(super) version: SigVersion,
    pub(super) date: String,
    pub(super) x_duo_date: bool,
    pub(super) signed: bool,
}

impl Call {
    pub(super) fn get(c: &SimConfig, path: &str, params: &[(&str, &str)]) -> Call {
        Call {
            method: "GET",
            path: path.to_string(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ikey: c.ikey.clone(),
            skey: c.skey.clone(),
            host: c.api_hostname.clone(),
            version: SigVersion::V5,
            date: rfc2822_date(chrono::Utc::now()),
            x_duo_date: false,
            signed: true,
        }
    }

    pub(super) fn param(mut self, k: &str, v: impl Into<String>) -> Call {
        self.params.push((k.to_string(), v.into()));
        self
    }

    pub(super) fn keys(mut self, ikey: &str, skey: &str) -> Call {
        self.ikey = ikey.to_string();
        self.skey = skey.to_string();
        self
    }

    pub(super) async fn send(&self, sim: &Simulator) -> (u16, String) {
        self.send_with(&reqwest::Client::new(), sim).await
    }

    pub(super) async fn send_with(
        &self,
        client: &reqwest::Client,
        sim: &Simulator,
    ) -> (u16, String) {
        let (status, _, body) = self.send_raw(client, sim).await;
        (status, body)
    }

    /// Status, response headers and body.
    pub(super) async fn send_raw(
        &self,
        client: &reqwest::Client,
        sim: &Simulator,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.params.iter())
            .finish();
        let json_body = self.method == "POST" && self.version == SigVersion::V5;
        let (url, body, sign_params): (String, Vec<u8>, Vec<(String, String)>) = match self.method {
            "POST" if json_body => {
                let obj: serde_json::Map<String, Value> = self
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                let body = serde_json::to_vec(&obj).unwrap();
                (format!("{}{}", sim.base_url(), self.path), body, vec![])
            }
            "POST" => (
                format!("{}{}", sim.base_url(), self.path),
                encoded.into_bytes(),
                self.params.clone(),
            ),
            _ => (
                format!("{}{}?{}", sim.base_url(), self.path, encoded),
                vec![],
                self.params.clone(),
            ),
        };
        let x_duo: Vec<(String, String)> = if self.x_duo_date {
            vec![("X-Duo-Date".to_string(), self.date.clone())]
        } else {
            vec![]
        };
        let input = SignInput {
            date: &self.date,
            method: self.method,
            host: &self.host,
            path: &self.path,
            params: &sign_params,
            body: if json_body { &body } else { b"" },
            x_duo_headers: &x_duo,
        };
        let sig = signature_hex(self.version, self.skey.as_bytes(), &input);
        let mut rb = if self.method == "POST" {
            client.post(&url).body(body.clone()).header(
                "Content-Type",
                if json_body {
                    "application/json"
                } else {
                    "application/x-www-form-urlencoded"
                },
            )
        } else {
            client.get(&url)
        };
        if self.signed {
            rb = rb.header("Authorization", authorization_header(&self.ikey, &sig));
            rb = if self.x_duo_date {
                rb.header("X-Duo-Date", &self.date)
            } else {
                rb.header("Date", &self.date)
            };
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap())
    }

    /// Sign with this date (ms since the epoch), e.g. Duo's clock when it is far off.
    pub(super) fn dated(mut self, ms: i64) -> Call {
        let t = chrono::DateTime::from_timestamp_millis(ms).unwrap();
        self.date = rfc2822_date(t);
        self
    }

    pub(super) async fn json(&self, sim: &Simulator) -> (u16, Value) {
        let (status, text) = self.send(sim).await;
        let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        (status, v)
    }
}

pub(super) fn code(v: &Value) -> i64 {
    v["code"].as_i64().unwrap_or(-1)
}
impl Call {
    pub(super) fn path_to(mut self, path: &str) -> Call {
        self.path = path.to_string();
        self
    }
}
