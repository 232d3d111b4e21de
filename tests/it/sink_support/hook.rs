//! A scriptable HTTP receiver: records every request (body gunzipped) and answers from a
//! queue of scripted responses, then 200.

use std::collections::VecDeque;
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub headers: HeaderMap,
    /// The body after undoing Content-Encoding: gzip.
    pub body: Vec<u8>,
    pub gzipped: bool,
    /// The status this request was answered with.
    pub status: u16,
}

/// A scripted answer: status, extra headers, body.
pub type Reply = (u16, Vec<(&'static str, String)>, String);

#[derive(Default)]
pub struct HookState {
    pub requests: Mutex<Vec<Request>>,
    pub script: Mutex<VecDeque<Reply>>,
}

pub struct Hook {
    pub state: Arc<HookState>,
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

async fn receive(State(state): State<Arc<HookState>>, headers: HeaderMap, body: Bytes) -> Response {
    let gzipped = headers.get("content-encoding").is_some_and(|v| v == "gzip");
    let body = if gzipped {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    } else {
        body.to_vec()
    };
    let (status, extra, text) = state.script.lock().unwrap().pop_front().unwrap_or((
        200,
        vec![],
        r#"{"text":"Success","code":0}"#.into(),
    ));
    state.requests.lock().unwrap().push(Request {
        at: Instant::now(),
        headers,
        body,
        gzipped,
        status,
    });
    let mut response = (StatusCode::from_u16(status).unwrap(), text).into_response();
    for (name, value) in extra {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

impl Hook {
    /// Listens on `port` (0: any free port).
    pub async fn start(port: u16, script: Vec<Reply>) -> Hook {
        let state = Arc::new(HookState::default());
        state.script.lock().unwrap().extend(script);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .route("/in", axum::routing::post(receive))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Hook { state, port, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/in", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Bodies of the requests answered with a 2xx, split into lines.
    pub fn accepted_lines(&self) -> Vec<serde_json::Value> {
        self.requests()
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .flat_map(|r| {
                String::from_utf8(r.body.clone())
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Stops listening (connections are refused from now on).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}
