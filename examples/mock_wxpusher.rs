//! A fast stand-in for WxPusher's `POST /api/send/message` for `scripts/bench`: it reads the
//! request and answers success (`code: 1000`) at once, with one `data` entry per uid, so the
//! receiver's delivery path runs in full without a network in the way.
//!
//! `cargo run --release --example mock_wxpusher -- 127.0.0.1:9199`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};

static SENT: AtomicU64 = AtomicU64::new(0);

async fn send(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/count" {
        let n = SENT.load(Ordering::Relaxed).to_string();
        return Ok(Response::new(Full::new(Bytes::from(n))));
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        let mut r = Response::new(Full::new(Bytes::from_static(b"bad json")));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(r);
    };
    SENT.fetch_add(1, Ordering::Relaxed);
    // `MOCK_WXPUSHER_LOG=file`: every message's content appended, one record per line (the
    // storm benchmark counts the groups it names).
    if let Some(path) = std::env::var_os("MOCK_WXPUSHER_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let content = msg["content"].as_str().unwrap_or("").replace('\n', " ");
            let _ = writeln!(f, "{content}");
        }
    }
    let data: Vec<Value> = msg["uids"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, uid)| {
            json!({"uid": uid, "topicId": null, "messageId": i, "messageContentId": 1,
            "sendRecordId": i, "code": 1000, "status": "创建发送任务成功"})
        })
        .collect();
    let reply = json!({"code": 1000, "msg": "处理成功", "data": data, "success": true});
    let mut r = Response::new(Full::new(Bytes::from(reply.to_string())));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9199".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("mock WxPusher listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(send))
                .await;
        });
    }
}
