//! A mock WxPusher `POST /api/send/message` that follows the API's contract: HTTP 200 with a
//! business `code`, a `data` entry per uid and per topic. Tests script the replies.
//!
//! `GET /api/send/query/status?sendRecordId=` answers the generic `Result` the contract
//! describes: `{"code":1000,"msg":"等待发送","data":1,"success":true}` (the one value seen in
//! the field) for a record it created, unless a test scripts another answer for that record;
//! a record it never created gets a business error (`code` 1001, "消息不存在"). Every send
//! record id is unique across the mock's answers.
//!
//! `POST /api/send/message/simple-push` (simple push) answers "the same result shape": a
//! `data` entry per SPT of `sptList` (or the one `spt`), in order, with the owner's `uid` and
//! no field naming the SPT; more than 10 SPTs in one call is refused (code 1001).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::watch;

/// What the mock answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `code: 1000` for the call and every recipient.
    Success,
    /// A call-level business error, HTTP 200.
    Code(i64, &'static str),
    /// Only these uids fail (code 1001 in their entry); the rest succeed.
    FailUids(Vec<String>),
    /// A bare HTTP status with a text body.
    Http(u16),
    /// Waits, then succeeds.
    Slow(Duration),
    /// Simple push: only these SPTs fail (code 1001 and the given status in their entry).
    FailSpts(Vec<String>, &'static str),
}

#[derive(Debug, Clone)]
pub struct Recorded {
    /// `/api/send/message` or `/api/send/message/simple-push`.
    pub path: &'static str,
    pub body: Value,
    pub headers: HeaderMap,
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    /// `POST /api/fun/create/qrcode` bodies, apart from the sends.
    qrcodes: Vec<Value>,
    script: VecDeque<Reply>,
    default: Option<Reply>,
    /// The last send record id given out.
    last_record: i64,
    /// Send record ids given out, and the status answer scripted for some of them.
    records: std::collections::BTreeMap<i64, Option<Status>>,
    /// The status queries, by send record id, in order.
    queries: Vec<i64>,
}

/// A status answer: `{"code", "msg", "data", "success"}`.
#[derive(Debug, Clone)]
pub struct Status {
    pub code: i64,
    pub msg: &'static str,
    pub data: Option<i64>,
}

#[derive(Clone)]
pub struct MockWxPusher {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    count: watch::Receiver<usize>,
    notify: Arc<watch::Sender<usize>>,
    /// While false, every request waits before it is answered (see [`MockWxPusher::hold`]).
    open: Arc<watch::Sender<bool>>,
    /// Counts status queries.
    queried: Arc<watch::Sender<usize>>,
}

impl MockWxPusher {
    pub async fn start() -> MockWxPusher {
        let (tx, rx) = watch::channel(0usize);
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mock = MockWxPusher {
            url,
            inner,
            count: rx,
            notify: Arc::new(tx),
            open: Arc::new(watch::channel(true).0),
            queried: Arc::new(watch::channel(0).0),
        };
        let app = Router::new()
            .route("/api/send/message", post(send))
            .route("/api/send/message/simple-push", post(simple_push))
            .route("/api/fun/create/qrcode", post(qrcode))
            .route("/api/send/query/status", get(query_status))
            .with_state(mock.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        mock
    }

    /// Replies to the next requests, in order; after them, the default (success).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    pub fn set_default(&self, reply: Reply) {
        self.inner.lock().unwrap().default = Some(reply);
    }

    /// Answers nothing until [`MockWxPusher::release`]: an upstream that hangs, so deliveries
    /// pile up in the receiver.
    pub fn hold(&self) {
        self.open.send_replace(false);
    }

    /// Answers every held request (with the reply configured now) and the ones after it.
    pub fn release(&self) {
        self.open.send_replace(true);
    }

    /// What the status query of `record` answers from now on.
    pub fn set_status(&self, record: i64, status: Status) {
        self.inner
            .lock()
            .unwrap()
            .records
            .insert(record, Some(status));
    }

    /// The status queries so far, by send record id.
    pub fn status_queries(&self) -> Vec<i64> {
        self.inner.lock().unwrap().queries.clone()
    }

    /// Waits until at least `n` status queries arrived (or panics after `timeout`).
    pub async fn wait_for_queries(&self, n: usize, timeout: Duration) -> Vec<i64> {
        let mut rx = self.queried.subscribe();
        let ok = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await;
        let got = self.status_queries();
        assert!(ok.is_ok(), "expected {n} status queries, got {got:?}");
        got
    }

    pub fn qrcode_requests(&self) -> Vec<Value> {
        self.inner.lock().unwrap().qrcodes.clone()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Waits until at least `n` requests arrived (or panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let mut rx = self.count.clone();
        let ok = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await;
        let got = self.requests();
        assert!(
            ok.is_ok(),
            "expected {n} requests to the mock WxPusher, got {}: {:#?}",
            got.len(),
            got.iter().map(|r| &r.body).collect::<Vec<_>>()
        );
        got
    }
}

async fn send(
    State(mock): State<MockWxPusher>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    answer(mock, "/api/send/message", headers, body).await
}

async fn simple_push(
    State(mock): State<MockWxPusher>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    answer(mock, "/api/send/message/simple-push", headers, body).await
}

async fn answer(
    mock: MockWxPusher,
    path: &'static str,
    headers: HeaderMap,
    body: Value,
) -> Response {
    mock.inner.lock().unwrap().requests.push(Recorded {
        path,
        body: body.clone(),
        headers,
        at: Instant::now(),
    });
    // A held request is answered with what is configured when it is let go.
    let _ = mock.open.subscribe().wait_for(|open| *open).await;
    let reply = {
        let mut inner = mock.inner.lock().unwrap();
        inner
            .script
            .pop_front()
            .or_else(|| inner.default.clone())
            .unwrap_or(Reply::Success)
    };
    let simple = path.ends_with("simple-push");
    let too_many = body["sptList"].as_array().is_some_and(|l| l.len() > 10);
    let response = match reply {
        _ if simple && too_many => {
            Json(json!({"code": 1001, "msg": "sptList最多10个", "data": null, "success": false}))
                .into_response()
        }
        Reply::Success if simple => simple_success(&mock, &body, &[], ""),
        Reply::FailSpts(spts, status) => simple_success(&mock, &body, &spts, status),
        Reply::Success => success(&mock, &body, &[]),
        Reply::FailUids(uids) => success(&mock, &body, &uids),
        Reply::Code(code, msg) => {
            Json(json!({"code": code, "msg": msg, "data": null, "success": false})).into_response()
        }
        Reply::Http(status) => {
            (StatusCode::from_u16(status).unwrap(), "upstream trouble").into_response()
        }
        Reply::Slow(d) => {
            tokio::time::sleep(d).await;
            success(&mock, &body, &[])
        }
    };
    mock.notify.send_modify(|c| *c += 1);
    response
}

#[derive(serde::Deserialize)]
struct StatusQuery {
    #[serde(rename = "sendRecordId")]
    send_record_id: i64,
}

/// `GET /api/send/query/status?sendRecordId=`: the generic `Result`, as the contract shows it.
async fn query_status(State(mock): State<MockWxPusher>, Query(q): Query<StatusQuery>) -> Response {
    let answer = {
        let mut inner = mock.inner.lock().unwrap();
        inner.queries.push(q.send_record_id);
        match inner.records.get(&q.send_record_id) {
            None => json!({"code": 1001, "msg": "消息不存在", "data": null, "success": false}),
            Some(None) => json!({"code": 1000, "msg": "等待发送", "data": 1, "success": true}),
            Some(Some(s)) => {
                json!({"code": s.code, "msg": s.msg, "data": s.data, "success": s.code == 1000})
            }
        }
    };
    mock.queried.send_modify(|c| *c += 1);
    Json(answer).into_response()
}

/// A new send record id, known to the status query.
fn new_record(mock: &MockWxPusher) -> i64 {
    let mut inner = mock.inner.lock().unwrap();
    inner.last_record = inner.last_record.max(12_312) + 1;
    let id = inner.last_record;
    inner.records.insert(id, None);
    id
}

/// Creates a parameter QR code as the contract describes: `data{expires, code, shortUrl, url,
/// extra}`; a wrong token gets code 1001.
async fn qrcode(State(mock): State<MockWxPusher>, Json(body): Json<Value>) -> Response {
    mock.inner.lock().unwrap().qrcodes.push(body.clone());
    if body["appToken"] != "AT_test_token" {
        return Json(
            json!({"code": 1001, "msg": "appToken不正确", "data": null, "success": false}),
        )
        .into_response();
    }
    let code = format!("QR_{}", body["extra"].as_str().unwrap_or_default());
    Json(
        json!({"code": 1000, "msg": "处理成功", "success": true, "data": {
            "expires": 1_800_000_000_000i64,
            "code": code,
            "shortUrl": format!("https://wxpusher.example/s/{code}"),
            "url": format!("https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket={code}"),
            "extra": body["extra"],
        }}),
    )
    .into_response()
}

/// One entry per SPT, in the order of the request, naming the owner's uid, not the SPT.
fn simple_success(mock: &MockWxPusher, body: &Value, failing: &[String], status: &str) -> Response {
    let spts: Vec<&Value> = match body["sptList"].as_array() {
        Some(list) => list.iter().collect(),
        None => body.get("spt").into_iter().collect(),
    };
    let data: Vec<Value> = spts
        .iter()
        .enumerate()
        .map(|(i, spt)| {
            let failed = failing.iter().any(|f| Some(f.as_str()) == spt.as_str());
            json!({"uid": format!("UID_owner_{i}"), "topicId": null, "messageId": 200 + i,
                "messageContentId": 9, "sendRecordId": new_record(mock),
                "code": if failed { 1001 } else { 1000 },
                "status": if failed { status } else { "创建发送任务成功" }})
        })
        .collect();
    Json(json!({"code": 1000, "msg": "处理成功", "data": data, "success": true})).into_response()
}

fn success(mock: &MockWxPusher, body: &Value, failing: &[String]) -> Response {
    let mut data = Vec::new();
    let mut id = 100;
    for uid in body["uids"].as_array().into_iter().flatten() {
        id += 1;
        let failed = failing.iter().any(|f| Some(f.as_str()) == uid.as_str());
        data.push(json!({"uid": uid, "topicId": null, "messageId": id, "messageContentId": 7, "sendRecordId": new_record(mock),
            "code": if failed { 1001 } else { 1000 }, "status": if failed { "用户已取消关注" } else { "创建发送任务成功" }}));
    }
    for topic in body["topicIds"].as_array().into_iter().flatten() {
        id += 1;
        data.push(json!({"uid": null, "topicId": topic, "messageId": id, "messageContentId": 7, "sendRecordId": new_record(mock),
            "code": 1000, "status": "创建发送任务成功"}));
    }
    Json(json!({"code": 1000, "msg": "处理成功", "data": data, "success": true})).into_response()
}
