//! A mock weixin-gateway that behaves as its source does (see the contracts): `POST /send`
//! sends only the first text item with non-empty text (else the first file item), answers
//! 200 `{"ok":true,"result":{}}`, and reports every failure as HTTP 500
//! `{"ok":false,"error":"…"}` — `unknown account: X`, a JSON parse error, `unsupported
//! outbound payload…`, or the upstream's `ret=-2` once a user has used its send quota.
//! `GET /health` answers the gateway's health document. Every request is recorded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::watch;

/// A scripted answer to the next `/send`, instead of the contract behaviour.
#[derive(Debug, Clone)]
pub enum Reply {
    /// What the gateway's contract says (as when nothing is scripted).
    Pass,
    /// A bare HTTP status with a text body (a proxy in front, a crash).
    Http(u16),
    /// The gateway's own failure: 500 `{"ok":false,"error":…}`.
    Error(&'static str),
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub body: Value,
    pub headers: HeaderMap,
    pub at: Instant,
}

struct Inner {
    sends: Vec<Recorded>,
    health_checks: usize,
    accounts: HashSet<String>,
    /// Sends the upstream accepts per user before refusing with `ret=-2`.
    quota: usize,
    sent: HashMap<String, usize>,
    script: VecDeque<Reply>,
}

#[derive(Clone)]
pub struct MockGateway {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    count: watch::Receiver<usize>,
    notify: Arc<watch::Sender<usize>>,
}

impl MockGateway {
    /// A gateway with `account` logged in and an unlimited quota.
    pub async fn start(account: &str) -> MockGateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, account)
    }

    /// The same, on a given address (to bring a gateway up where one was expected).
    pub async fn start_on(addr: SocketAddr, account: &str) -> MockGateway {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        Self::serve(listener, account)
    }

    fn serve(listener: tokio::net::TcpListener, account: &str) -> MockGateway {
        let (tx, rx) = watch::channel(0usize);
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mock = MockGateway {
            url,
            inner: Arc::new(Mutex::new(Inner {
                sends: Vec::new(),
                health_checks: 0,
                accounts: HashSet::from([account.to_string()]),
                quota: usize::MAX,
                sent: HashMap::new(),
                script: VecDeque::new(),
            })),
            count: rx,
            notify: Arc::new(tx),
        };
        let app = Router::new()
            .route("/send", post(send))
            .route("/health", get(health))
            .with_state(mock.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        mock
    }

    /// Each user gets `n` successful sends, then `ret=-2` (the 24-hour window's cap).
    pub fn set_quota(&self, n: usize) {
        self.inner.lock().unwrap().quota = n;
    }

    /// The user wrote to the bot: iLink opens their window again (their count restarts).
    pub fn inbound(&self, user: &str) {
        self.inner.lock().unwrap().sent.remove(user);
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    pub fn sends(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().sends.clone()
    }

    pub fn health_checks(&self) -> usize {
        self.inner.lock().unwrap().health_checks
    }

    /// Waits until at least `n` `/send` requests arrived (or panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let mut rx = self.count.clone();
        let ok = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await;
        let got = self.sends();
        assert!(
            ok.is_ok(),
            "expected {n} requests to the mock gateway, got {}: {:#?}",
            got.len(),
            got.iter().map(|r| &r.body).collect::<Vec<_>>()
        );
        got
    }
}

fn failure(error: impl Into<String>) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({"ok": false, "error": error.into()})),
    )
        .into_response()
}

async fn send(State(mock): State<MockGateway>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    let response = {
        let mut inner = mock.inner.lock().unwrap();
        inner.sends.push(Recorded {
            body: parsed
                .as_ref()
                .cloned()
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into())),
            headers,
            at: Instant::now(),
        });
        match (inner.script.pop_front(), parsed) {
            (Some(Reply::Http(status)), _) => {
                (StatusCode::from_u16(status).unwrap(), "Bad Gateway").into_response()
            }
            (Some(Reply::Error(e)), _) => failure(e),
            (None | Some(Reply::Pass), Err(e)) => failure(e.to_string()),
            (None | Some(Reply::Pass), Ok(v)) => contract(&mut inner, &v),
        }
    };
    mock.notify.send_modify(|c| *c += 1);
    response
}

/// What the real gateway does with a parsed `/send` body.
fn contract(inner: &mut Inner, v: &Value) -> Response {
    let account = v["account_id"].as_str().unwrap_or_default();
    if !inner.accounts.contains(account) {
        return failure(format!("unknown account: {account}"));
    }
    let items = v["items"].as_array().cloned().unwrap_or_default();
    let text = items
        .iter()
        .find(|i| i["type"] == "text" && i["text"].as_str().is_some_and(|t| !t.is_empty()));
    let file = items.iter().find(|i| i["type"] == "file");
    if text.is_none() && file.is_none() {
        return failure("unsupported outbound payload: expected text or file item");
    }
    // `to_user_id` is not validated; the upstream counts sends per user.
    let user = v["to_user_id"].as_str().unwrap_or_default().to_string();
    let quota = inner.quota;
    let used = inner.sent.entry(user).or_default();
    if *used >= quota {
        return failure("ret=-2");
    }
    *used += 1;
    axum::Json(json!({"ok": true, "result": {}})).into_response()
}

async fn health(State(mock): State<MockGateway>) -> Response {
    mock.inner.lock().unwrap().health_checks += 1;
    axum::Json(json!({"ok": true, "service": "weixin-gateway", "phase": "text-mvp",
        "polling": {"running": true, "interval_ms": 5000, "last_started_at": "", "last_finished_at": "",
            "last_error": "", "last_results": [{"account_id": "wx-account-1", "forwarded": 0, "cursor": "", "session_state": "active"}]},
        "delivery_mode": "callback"}))
    .into_response()
}
