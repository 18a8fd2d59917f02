//! A mock WeCom API (qyapi), written from the contract: `POST /cgi-bin/webhook/send?key=`,
//! `GET /cgi-bin/gettoken?corpid=&corpsecret=`, `POST /cgi-bin/message/send?access_token=`
//! and `POST /cgi-bin/message/update_template_card?access_token=`.
//!
//! Like WeCom: HTTP 200 with `errcode`; an unknown robot key gets 93000; content over 4096
//! bytes (markdown) or 2048 bytes (text) is refused (40058); a robot gets 45009 beyond 20
//! messages in a sliding minute (when `enforce_robot_rate` is on); tokens are `WT_1`, `WT_2`, …
//! and only the newest is accepted (an older one gets 42001, another 40014); a wrong corp id
//! or secret gets 40001. A `template_card` sent answers a fresh `response_code` (`RC_SEND_n`);
//! an update spends its code, and a spent one is refused (WeCom's errcode for that is
//! unverified: any non-zero means "not updated"). Every request is recorded with its path,
//! query string, body and time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::watch;

/// What the mock answers to one send.
#[derive(Debug, Clone)]
pub enum Reply {
    Ok,
    /// A business error.
    Err(i64, &'static str),
    /// Success with these `invaliduser` / `invalidparty` (app messages).
    Invalid(&'static str, &'static str),
    /// Answers 42001 and retires the current token.
    Expire,
    Http(u16),
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
    /// When the request arrived (tokio's clock, so paused-time tests can read it).
    pub at: tokio::time::Instant,
}

impl Recorded {
    pub fn param(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        self.query
            .split('&')
            .find_map(|kv| kv.strip_prefix(prefix.as_str()).map(decode))
    }
    pub fn is_token(&self) -> bool {
        self.path == "/cgi-bin/gettoken"
    }
    pub fn is_robot(&self) -> bool {
        self.path == "/cgi-bin/webhook/send"
    }
    /// The message's content, whatever its type.
    pub fn content(&self) -> String {
        let t = self.body["msgtype"].as_str().unwrap_or("");
        self.body[t]["content"].as_str().unwrap_or("").to_string()
    }
}

/// Percent-decoding of a query value.
fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&v[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    /// Robot keys that exist.
    keys: Vec<String>,
    corp_id: String,
    secret: String,
    issued: u64,
    current: Option<String>,
    token_script: VecDeque<Reply>,
    send_script: VecDeque<Reply>,
    robot_script: VecDeque<Reply>,
    enforce_robot_rate: bool,
    /// Accepted robot messages, by time, for the 20-a-minute rule.
    robot_sent: Vec<tokio::time::Instant>,
    /// `response_code`s handed out, and those spent by an update.
    codes_issued: u64,
    codes_spent: Vec<String>,
}

#[derive(Clone)]
pub struct MockWecom {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    /// While `true`, robot messages are recorded but not answered (see [`MockWecom::hold_robot`]).
    hold: Arc<watch::Sender<bool>>,
    count: watch::Receiver<usize>,
    notify: Arc<watch::Sender<usize>>,
}

impl MockWecom {
    /// A mock knowing robot `keys` and one app of `corp_id` with `secret`.
    pub async fn start(keys: &[&str], corp_id: &str, secret: &str) -> MockWecom {
        let (tx, rx) = watch::channel(0usize);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mock = MockWecom {
            url,
            inner: Arc::new(Mutex::new(Inner {
                keys: keys.iter().map(|k| k.to_string()).collect(),
                corp_id: corp_id.into(),
                secret: secret.into(),
                ..Default::default()
            })),
            count: rx,
            notify: Arc::new(tx),
            hold: Arc::new(watch::channel(false).0),
        };
        let app = Router::new()
            .route("/cgi-bin/webhook/send", post(robot))
            .route("/cgi-bin/gettoken", get(token))
            .route("/cgi-bin/message/send", post(send))
            .route("/cgi-bin/message/update_template_card", post(update_card))
            .with_state(mock.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        mock
    }

    /// Records robot messages but answers none until [`MockWecom::release_robot`]: what a
    /// backlog needs to build up behind a slow upstream whatever the machine's speed.
    pub fn hold_robot(&self) {
        self.hold.send_replace(true);
    }

    pub fn release_robot(&self) {
        self.hold.send_replace(false);
    }

    /// Refuse robot messages beyond 20 in any 60 seconds with 45009, as WeCom does.
    pub fn enforce_robot_rate(&self) {
        self.inner.lock().unwrap().enforce_robot_rate = true;
    }
    pub fn script_robot(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().robot_script.extend(replies);
    }
    pub fn script_send(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().send_script.extend(replies);
    }
    pub fn script_token(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().token_script.extend(replies);
    }
    pub fn expire_token(&self) {
        self.inner.lock().unwrap().current = None;
    }
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }
    pub fn robot_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_robot())
            .collect()
    }
    pub fn token_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_token())
            .collect()
    }
    pub fn app_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/cgi-bin/message/send")
            .collect()
    }

    /// Waits until `pred` holds for the recorded requests (or panics after `timeout`).
    pub async fn wait(&self, timeout: Duration, what: &str, pred: impl Fn(&[Recorded]) -> bool) {
        let mut rx = self.count.clone();
        let inner = self.inner.clone();
        let ok = tokio::time::timeout(
            timeout,
            rx.wait_for(|_| pred(&inner.lock().unwrap().requests)),
        )
        .await;
        assert!(ok.is_ok(), "waiting for {what}: {:#?}", self.requests());
    }

    pub async fn wait_robot(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        self.wait(timeout, &format!("{n} robot messages"), |r| {
            r.iter().filter(|r| r.is_robot()).count() >= n
        })
        .await;
        self.robot_requests()
    }

    pub async fn wait_app(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        self.wait(timeout, &format!("{n} app messages"), |r| {
            r.iter()
                .filter(|r| r.path == "/cgi-bin/message/send")
                .count()
                >= n
        })
        .await;
        self.app_requests()
    }

    fn done(&self) {
        self.notify.send_modify(|c| *c += 1);
    }
}

async fn read(req: Request) -> Recorded {
    let at = tokio::time::Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Recorded {
        method,
        path,
        query,
        body,
        at,
    }
}

fn http(status: u16) -> Response {
    (StatusCode::from_u16(status).unwrap(), "busy").into_response()
}

async fn robot(State(mock): State<MockWecom>, req: Request) -> Response {
    let rec = read(req).await;
    let key = rec.param("key").unwrap_or_default();
    let msgtype = rec.body["msgtype"].as_str().unwrap_or("").to_string();
    let content = rec.content();
    let at = rec.at;
    mock.record(rec);
    let _ = mock.hold.subscribe().wait_for(|held| !held).await;
    let answer = {
        let mut inner = mock.inner.lock().unwrap();
        let limit = match msgtype.as_str() {
            "markdown" | "markdown_v2" => 4096,
            "text" => 2048,
            _ => 0,
        };
        if !inner.keys.contains(&key) {
            json!({"errcode": 93000, "errmsg": "invalid webhook url, hint: [1733000000_1_abc], from ip: 10.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e=93000"})
        } else if limit == 0 {
            json!({"errcode": 40008, "errmsg": "invalid message type"})
        } else if content.is_empty() {
            json!({"errcode": 44004, "errmsg": "empty content"})
        } else if content.len() > limit {
            json!({"errcode": 40058, "errmsg": format!("content exceed max length {limit}")})
        } else if inner.enforce_robot_rate
            && inner
                .robot_sent
                .iter()
                .filter(|t| at.duration_since(**t) < Duration::from_secs(60))
                .count()
                >= 20
        {
            json!({"errcode": 45009, "errmsg": "api freq out of limit, hint: [1733000000_2_def]"})
        } else {
            match inner.robot_script.pop_front().unwrap_or(Reply::Ok) {
                Reply::Http(s) => {
                    drop(inner);
                    mock.done();
                    return http(s);
                }
                Reply::Err(code, msg) => json!({"errcode": code, "errmsg": msg}),
                _ => {
                    inner.robot_sent.push(at);
                    json!({"errcode": 0, "errmsg": "ok"})
                }
            }
        }
    };
    mock.done();
    axum::Json(answer).into_response()
}

async fn token(State(mock): State<MockWecom>, req: Request) -> Response {
    let rec = read(req).await;
    let (corp, secret) = (
        rec.param("corpid").unwrap_or_default(),
        rec.param("corpsecret").unwrap_or_default(),
    );
    mock.record(rec);
    let answer = {
        let mut inner = mock.inner.lock().unwrap();
        match inner.token_script.pop_front() {
            Some(Reply::Err(code, msg)) => json!({"errcode": code, "errmsg": msg}),
            Some(Reply::Http(s)) => {
                drop(inner);
                mock.done();
                return http(s);
            }
            _ if corp != inner.corp_id || secret != inner.secret => {
                json!({"errcode": 40001, "errmsg": "invalid credential, hint: [1733000000_3_ghi]"})
            }
            _ => {
                if inner.current.is_none() {
                    inner.issued += 1;
                    inner.current = Some(format!("WT_{}", inner.issued));
                }
                json!({"errcode": 0, "errmsg": "ok", "access_token": inner.current, "expires_in": 7200})
            }
        }
    };
    mock.done();
    axum::Json(answer).into_response()
}

async fn send(State(mock): State<MockWecom>, req: Request) -> Response {
    let rec = read(req).await;
    let used = rec.param("access_token").unwrap_or_default();
    let msgtype = rec.body["msgtype"].as_str().unwrap_or("").to_string();
    let content = rec.content();
    mock.record(rec);
    let answer = {
        let mut inner = mock.inner.lock().unwrap();
        let issued_before = used
            .strip_prefix("WT_")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n <= inner.issued);
        if inner.current.as_deref() != Some(used.as_str()) {
            if issued_before {
                json!({"errcode": 42001, "errmsg": "access_token expired, hint: [1]"})
            } else {
                json!({"errcode": 40014, "errmsg": "invalid access_token, hint: [2]"})
            }
        } else if matches!(msgtype.as_str(), "text" | "markdown") && content.len() > 2048 {
            json!({"errcode": 40058, "errmsg": "content exceed max length 2048"})
        } else {
            match inner.send_script.pop_front().unwrap_or(Reply::Ok) {
                Reply::Ok if msgtype == "template_card" => {
                    inner.codes_issued += 1;
                    json!({"errcode": 0, "errmsg": "ok", "invaliduser": "", "invalidparty": "", "invalidtag": "", "unlicenseduser": "", "msgid": "m1", "response_code": format!("RC_SEND_{}", inner.codes_issued)})
                }
                Reply::Ok => {
                    json!({"errcode": 0, "errmsg": "ok", "invaliduser": "", "invalidparty": "", "invalidtag": "", "unlicenseduser": "", "msgid": "m1"})
                }
                Reply::Invalid(u, p) => {
                    json!({"errcode": 0, "errmsg": "ok", "invaliduser": u, "invalidparty": p, "invalidtag": "", "unlicenseduser": "", "msgid": "m2"})
                }
                Reply::Err(code, msg) => json!({"errcode": code, "errmsg": msg}),
                Reply::Expire => {
                    inner.current = None;
                    json!({"errcode": 42001, "errmsg": "access_token expired, hint: [3]"})
                }
                Reply::Http(s) => {
                    drop(inner);
                    mock.done();
                    return http(s);
                }
            }
        }
    };
    mock.done();
    axum::Json(answer).into_response()
}

async fn update_card(State(mock): State<MockWecom>, req: Request) -> Response {
    let rec = read(req).await;
    let used = rec.param("access_token").unwrap_or_default();
    let code = rec.body["response_code"].as_str().unwrap_or("").to_string();
    mock.record(rec);
    let answer = {
        let mut inner = mock.inner.lock().unwrap();
        if inner.current.as_deref() != Some(used.as_str()) {
            json!({"errcode": 40014, "errmsg": "invalid access_token"})
        } else if code.is_empty() || inner.codes_spent.contains(&code) {
            json!({"errcode": 40137, "errmsg": "invalid response_code (mock: spent or unknown)"})
        } else {
            inner.codes_spent.push(code);
            json!({"errcode": 0, "errmsg": "ok", "invaliduser": []})
        }
    };
    mock.done();
    axum::Json(answer).into_response()
}

impl MockWecom {
    pub fn update_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/cgi-bin/message/update_template_card")
            .collect()
    }

    fn record(&self, r: Recorded) {
        self.inner.lock().unwrap().requests.push(r);
    }
}
