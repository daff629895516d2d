//! A small, real push gateway for the tests: an HTTP server on 127.0.0.1
//! implementing the Push Gateway API's `POST /_matrix/push/v1/notify`. It
//! records every request it receives and answers as the test tells it:
//! success, an HTTP error, or the pushkey in `rejected`.
//!
//! It stands in for Sygnal (matrix.org's push gateway), which cannot be
//! installed from the package registries reachable here.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// How the gateway answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `200 {"rejected": []}`.
    Accept,
    /// This HTTP status with an empty JSON object.
    Status(u16),
    /// `200` listing every pushkey of the request in `rejected`.
    Reject,
}

#[derive(Default)]
struct Shared {
    /// Every request body, in arrival order, with the answer it got.
    received: Vec<(Value, Answer)>,
    /// Answers for the next requests; `Accept` once empty.
    script: VecDeque<Answer>,
}

pub struct PushGateway {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl PushGateway {
    pub async fn start() -> PushGateway {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/_matrix/push/v1/notify", post(notify))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the test push gateway");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PushGateway { addr, shared, task }
    }

    /// The URL a pusher's `data.url` should carry.
    pub fn url(&self) -> String {
        format!("http://{}/_matrix/push/v1/notify", self.addr)
    }

    /// Queues `answer` for the next request not yet answered.
    pub fn answer_next(&self, answer: Answer) {
        self.shared.lock().unwrap().script.push_back(answer);
    }

    /// Every request so far with the answer it got.
    pub fn received(&self) -> Vec<(Value, Answer)> {
        self.shared.lock().unwrap().received.clone()
    }

    /// The `notification` objects of requests about `event_id`.
    pub fn requests_for(&self, event_id: &str) -> Vec<(Value, Answer)> {
        self.received()
            .into_iter()
            .filter(|(body, _)| body["notification"]["event_id"] == event_id)
            .map(|(body, answer)| (body["notification"].clone(), answer))
            .collect()
    }

    /// Waits until a request about `event_id` was answered with `answer`;
    /// returns its `notification`. Panics after `within`.
    pub async fn wait_for(&self, event_id: &str, answer: Answer, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some((n, _)) = self
                .requests_for(event_id)
                .into_iter()
                .find(|(_, a)| *a == answer)
            {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "no push for {event_id} answered {answer:?} within {within:?}; received: {:?}",
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PushGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn notify(
    State(shared): State<Arc<Mutex<Shared>>>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut shared = shared.lock().unwrap();
    let answer = shared.script.pop_front().unwrap_or(Answer::Accept);
    shared.received.push((body.clone(), answer));
    match answer {
        Answer::Accept => (StatusCode::OK, Json(json!({ "rejected": [] }))),
        Answer::Status(code) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Json(json!({})),
        ),
        Answer::Reject => {
            let keys: Vec<Value> = body["notification"]["devices"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| d["pushkey"].clone())
                .collect();
            (StatusCode::OK, Json(json!({ "rejected": keys })))
        }
    }
}
