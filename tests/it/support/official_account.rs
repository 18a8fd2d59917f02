//! A mock WeChat Official Account API: `POST /cgi-bin/stable_token`, `GET /cgi-bin/token`,
//! `POST /cgi-bin/message/template/send` and `POST /cgi-bin/message/subscribe/bizsend`.
//!
//! It behaves like WeChat where tests depend on it: HTTP 200 with `errcode`; tokens are
//! `TOKEN_1`, `TOKEN_2`, … and only the newest is accepted (an older one gets 42001, an unknown
//! one 40001); a token call returns the current token until [`MockOfficialAccount::expire_token`]
//! retires it. Every request is recorded with its path, query string and body.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::watch;

/// What the mock answers to one send (or token) request.
#[derive(Debug, Clone)]
pub enum Reply {
    Ok,
    /// A business error; `{token}` in the message is replaced by the token the request used.
    Err(i64, &'static str),
    /// Answers 42001 and retires the current token, as WeChat does when a token expires.
    Expire,
    /// A bare HTTP status.
    Http(u16),
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
    /// When the request arrived.
    pub at: std::time::Instant,
}

impl Recorded {
    pub fn is_token(&self) -> bool {
        self.path == "/cgi-bin/stable_token" || self.path == "/cgi-bin/token"
    }

    /// The `access_token` query parameter.
    pub fn token(&self) -> Option<&str> {
        self.query
            .split('&')
            .find_map(|kv| kv.strip_prefix("access_token="))
    }

    pub fn openid(&self) -> &str {
        self.body["touser"].as_str().unwrap_or("")
    }
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    issued: u64,
    /// `None` after expiry: the next token call issues a new one.
    current: Option<String>,
    expires_in: u64,
    token_script: VecDeque<Reply>,
    /// Per openid, then for any send.
    openid_script: HashMap<String, VecDeque<Reply>>,
    send_script: VecDeque<Reply>,
    send_default: Option<Reply>,
}

#[derive(Clone)]
pub struct MockOfficialAccount {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    count: watch::Receiver<usize>,
    notify: Arc<watch::Sender<usize>>,
}

impl MockOfficialAccount {
    pub async fn start() -> MockOfficialAccount {
        let (tx, rx) = watch::channel(0usize);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mock = MockOfficialAccount {
            url,
            inner: Arc::new(Mutex::new(Inner {
                expires_in: 7200,
                ..Default::default()
            })),
            count: rx,
            notify: Arc::new(tx),
        };
        let app = Router::new()
            .route("/cgi-bin/stable_token", post(token))
            .route("/cgi-bin/token", get(token))
            .route("/cgi-bin/message/template/send", post(send))
            .route("/cgi-bin/message/subscribe/bizsend", post(send))
            .with_state(mock.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        mock
    }

    /// Replies to the next token calls, in order (then: the current token).
    pub fn script_token(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().token_script.extend(replies);
    }

    /// Replies to the next sends to `openid`, in order.
    pub fn script_openid(&self, openid: &str, replies: impl IntoIterator<Item = Reply>) {
        self.inner
            .lock()
            .unwrap()
            .openid_script
            .entry(openid.to_string())
            .or_default()
            .extend(replies);
    }

    /// Replies to the next sends to anyone (after per-openid scripts), in order.
    pub fn script_send(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().send_script.extend(replies);
    }

    /// The reply to sends once the scripts are used up (default: success).
    pub fn set_send_default(&self, reply: Reply) {
        self.inner.lock().unwrap().send_default = Some(reply);
    }

    /// Retires the current token: sends with it get 42001; the next token call issues another.
    pub fn expire_token(&self) {
        self.inner.lock().unwrap().current = None;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn token_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_token())
            .collect()
    }

    pub fn send_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| !r.is_token())
            .collect()
    }

    /// Waits until at least `n` send requests arrived (or panics after `timeout`).
    pub async fn wait_for_sends(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let mut rx = self.count.clone();
        let inner = self.inner.clone();
        let ok = tokio::time::timeout(
            timeout,
            rx.wait_for(|_| {
                inner
                    .lock()
                    .unwrap()
                    .requests
                    .iter()
                    .filter(|r| !r.is_token())
                    .count()
                    >= n
            }),
        )
        .await;
        let got = self.send_requests();
        assert!(
            ok.is_ok(),
            "expected {n} sends to the mock Official Account, got {}: {:#?}",
            got.len(),
            self.requests()
        );
        got
    }

    fn record(&self, r: Recorded) {
        self.inner.lock().unwrap().requests.push(r);
    }

    fn done(&self) {
        self.notify.send_modify(|c| *c += 1);
    }
}

async fn read(req: Request) -> Recorded {
    let at = std::time::Instant::now();
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

async fn token(State(mock): State<MockOfficialAccount>, req: Request) -> Response {
    let rec = read(req).await;
    mock.record(rec);
    let reply = {
        let mut inner = mock.inner.lock().unwrap();
        match inner.token_script.pop_front() {
            Some(Reply::Err(code, msg)) => Some(json!({"errcode": code, "errmsg": msg})),
            Some(Reply::Http(status)) => {
                drop(inner);
                mock.done();
                return (StatusCode::from_u16(status).unwrap(), "busy").into_response();
            }
            _ => {
                if inner.current.is_none() {
                    inner.issued += 1;
                    inner.current = Some(format!("TOKEN_{}", inner.issued));
                }
                Some(json!({"access_token": inner.current, "expires_in": inner.expires_in}))
            }
        }
    };
    mock.done();
    axum::Json(reply).into_response()
}

async fn send(State(mock): State<MockOfficialAccount>, req: Request) -> Response {
    let rec = read(req).await;
    let used = rec.token().unwrap_or("").to_string();
    let openid = rec.openid().to_string();
    let rec_data = rec.body["data"].clone();
    mock.record(rec);
    let response = {
        let mut inner = mock.inner.lock().unwrap();
        let valid = inner.current.as_deref() == Some(used.as_str());
        let issued_before = used
            .strip_prefix("TOKEN_")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n <= inner.issued);
        if !valid && issued_before {
            json!({"errcode": 42001, "errmsg": "access_token expired rid: 1"})
        } else if !valid {
            json!({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest rid: 2"})
        } else {
            let reply = inner
                .openid_script
                .get_mut(&openid)
                .and_then(VecDeque::pop_front)
                .or_else(|| inner.send_script.pop_front())
                .or_else(|| inner.send_default.clone())
                .unwrap_or(Reply::Ok);
            match reply {
                Reply::Ok => match invalid_field(&rec_data) {
                    // WeChat checks category-template fields by type (contract §D).
                    Some(key) => json!({"errcode": 47003,
                        "errmsg": format!("argument invalid! data.{key}.value invalid rid: 4")}),
                    None => json!({"errcode": 0, "errmsg": "ok", "msgid": 200228332}),
                },
                Reply::Err(code, msg) => {
                    json!({"errcode": code, "errmsg": msg.replace("{token}", &used)})
                }
                Reply::Expire => {
                    inner.current = None;
                    json!({"errcode": 42001, "errmsg": "access_token expired rid: 3"})
                }
                Reply::Http(status) => {
                    drop(inner);
                    mock.done();
                    return (StatusCode::from_u16(status).unwrap(), "busy").into_response();
                }
            }
        }
    };
    mock.done();
    axum::Json(response).into_response()
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FFFF)
}

/// The first data key whose value breaks its type's rule, per the contract's table:
/// thing ≤ 20; character_string ≤ 32 without Chinese; number ≤ 32 digits (a decimal point
/// allowed); letter ≤ 32 letters; symbol ≤ 5 symbols; phrase ≤ 5 Chinese characters only;
/// phone_number ≤ 17 digits and symbols; car_number ≤ 8; name ≤ 10 Chinese or ≤ 20 letters;
/// amount a currency symbol, ≤ 10 digits, optional 元; time/date not empty; no newlines.
pub fn invalid_field(data: &Value) -> Option<String> {
    let map = data.as_object()?;
    for (key, v) in map {
        let value = v["value"].as_str().unwrap_or_default();
        let n = value.chars().count();
        let prefix = key.trim_end_matches(|c: char| c.is_ascii_digit());
        let all = |f: &dyn Fn(char) -> bool| value.chars().all(f);
        let ok = !value.contains('\n')
            && match prefix {
                "thing" | "const" => n <= 20,
                "character_string" => n <= 32 && !value.chars().any(is_cjk),
                "number" => {
                    (1..=32).contains(&n)
                        && all(&|c| c.is_ascii_digit() || c == '.')
                        && value.matches('.').count() <= 1
                }
                "letter" => (1..=32).contains(&n) && all(&|c| c.is_ascii_alphabetic()),
                "symbol" => {
                    (1..=5).contains(&n) && all(&|c| !c.is_alphanumeric() && !c.is_whitespace())
                }
                "phrase" => (1..=5).contains(&n) && all(&is_cjk),
                "phone_number" => {
                    (1..=17).contains(&n)
                        && all(&|c| c.is_ascii_digit() || c.is_ascii_punctuation() || c == ' ')
                }
                "car_number" => (1..=8).contains(&n),
                "name" => {
                    if value.chars().any(is_cjk) {
                        n <= 10
                    } else {
                        (1..=20).contains(&n)
                    }
                }
                "amount" => {
                    let body = value.strip_suffix('元').unwrap_or(value);
                    let digits = body.trim_start_matches(|c: char| !c.is_ascii_digit());
                    let symbols = body.len() - digits.len();
                    let whole = digits.split('.').next().unwrap_or_default();
                    (symbols > 0 || value.ends_with('元'))
                        && !whole.is_empty()
                        && whole.len() <= 10
                        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
                }
                "time" | "date" => n >= 1,
                _ => true,
            };
        if !ok {
            return Some(key.clone());
        }
    }
    None
}
