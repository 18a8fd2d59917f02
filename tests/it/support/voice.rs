//! Mock voice APIs, written from the contracts: Aliyun Dyvms (`POST /?…`, RPC parameters in
//! the query, `ACS3-HMAC-SHA256`) and Tencent Cloud VMS (`POST /`, JSON, `TC3-HMAC-SHA256`).
//!
//! Each rebuilds the canonical request from what arrived on the wire (the query string as
//! sent, the headers named in `SignedHeaders` as received, the body's hash) and checks the
//! `Authorization` header exactly with its own copy of the key; a mismatch is answered as the
//! vendor does (Aliyun HTTP 400 `SignatureDoesNotMatch`, Tencent HTTP 200
//! `AuthFailure.SignatureFailure`). Otherwise the scripted answer, or a success with a call id.
//! Every request is recorded.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use alertmanager_wechat::channels::voice::sign;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Aliyun,
    Tencent,
}

#[derive(Debug, Clone)]
pub struct VoiceRequest {
    /// Query parameters, decoded, in the order sent.
    pub query: Vec<(String, String)>,
    /// Headers by lower-case name.
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// Whether the `Authorization` header matched the mock's own computation.
    pub signature_ok: bool,
}

impl VoiceRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Inner {
    vendor: Vendor,
    key_id: String,
    secret: String,
    requests: Vec<VoiceRequest>,
    /// Scripted answers: (HTTP status, body).
    script: VecDeque<(u16, Value)>,
    calls: u64,
}

#[derive(Clone)]
pub struct MockVoice {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

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
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl MockVoice {
    pub async fn start(vendor: Vendor, key_id: &str, secret: &str) -> MockVoice {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mock = MockVoice {
            url,
            inner: Arc::new(Mutex::new(Inner {
                vendor,
                key_id: key_id.into(),
                secret: secret.into(),
                requests: Vec::new(),
                script: VecDeque::new(),
                calls: 0,
            })),
        };
        let app = Router::new()
            .route("/", post(handle))
            .with_state(mock.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        mock
    }

    pub fn script(&self, status: u16, body: Value) {
        self.inner.lock().unwrap().script.push_back((status, body));
    }

    pub fn requests(&self) -> Vec<VoiceRequest> {
        self.inner.lock().unwrap().requests.clone()
    }
}

/// `SignedHeaders=a;b;c` out of an Authorization header (both vendors' spellings).
fn signed_headers(auth: &str) -> Vec<String> {
    auth.split([',', ' '])
        .find_map(|p| p.trim().strip_prefix("SignedHeaders="))
        .map(|s| s.split(';').map(String::from).collect())
        .unwrap_or_default()
}

async fn handle(State(mock): State<MockVoice>, req: Request) -> Response {
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let query: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect();
    let mut inner = mock.inner.lock().unwrap();
    let auth = headers.get("authorization").cloned().unwrap_or_default();
    let signed: Vec<(String, String)> = signed_headers(&auth)
        .into_iter()
        .map(|h| {
            let v = headers.get(&h).cloned().unwrap_or_default();
            (h, v)
        })
        .collect();
    let expected = match inner.vendor {
        Vendor::Aliyun => {
            let content_ok = headers.get("x-acs-content-sha256").map(String::as_str)
                == Some(sign::sha256_hex(body.as_bytes()).as_str());
            let (_, a) = sign::acs3(
                &sign::AcsRequest {
                    method: "POST",
                    query: &query,
                    headers: &signed,
                    body: body.as_bytes(),
                },
                &inner.key_id,
                &inner.secret,
            );
            content_ok.then_some(a)
        }
        Vendor::Tencent => {
            let ts: i64 = headers
                .get("x-tc-timestamp")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let pairs: Vec<(&str, &str)> = signed
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let (_, a) = sign::tc3(
                &sign::Tc3Request {
                    service: "vms",
                    headers: &pairs,
                    payload: body.as_bytes(),
                    timestamp: ts,
                },
                &inner.key_id,
                &inner.secret,
            );
            Some(a)
        }
    };
    // Every `x-acs-*` header and the host must be signed (Aliyun); content-type and host (Tencent).
    let must_sign: Vec<&str> = match inner.vendor {
        Vendor::Aliyun => vec![
            "host",
            "x-acs-action",
            "x-acs-version",
            "x-acs-date",
            "x-acs-signature-nonce",
            "x-acs-content-sha256",
        ],
        Vendor::Tencent => vec!["content-type", "host"],
    };
    let all_signed = must_sign.iter().all(|h| signed.iter().any(|(k, _)| k == h));
    let signature_ok = all_signed && expected.as_deref() == Some(auth.as_str());
    inner.requests.push(VoiceRequest {
        query,
        headers,
        body,
        signature_ok,
    });
    let vendor = inner.vendor;
    if !signature_ok {
        return match vendor {
            Vendor::Aliyun => (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched with our calculation.", "RequestId": "R-sig"})),
            )
                .into_response(),
            Vendor::Tencent => axum::Json(json!({"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "The provided credentials could not be validated."}, "RequestId": "R-sig"}})).into_response(),
        };
    }
    if let Some((status, body)) = inner.script.pop_front() {
        return (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    }
    inner.calls += 1;
    let n = inner.calls;
    match vendor {
        Vendor::Aliyun => axum::Json(json!({"Code": "OK", "Message": "OK", "RequestId": "R1", "CallId": format!("116012354148^{n}")})).into_response(),
        Vendor::Tencent => axum::Json(json!({"Response": {"SendStatus": {"CallId": format!("tc-call-{n}"), "SessionContext": "x"}, "RequestId": "R1"}})).into_response(),
    }
}
