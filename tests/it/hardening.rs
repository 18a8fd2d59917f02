//! Hostile clients on the way in, against the real server on a loopback port, with raw
//! sockets and HTTP/2: silent and idle connections, trickling bodies, unauthenticated
//! uploads, the in-flight body budget; and the smaller items of issue 19 (reload
//! credentials, case-insensitive auth schemes, inert control characters in 400 answers).

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::wxpusher::MockWxPusher;
use crate::support::{TestServer, example, one_receiver as config};

/// Long enough for any of these to happen on a loaded machine; the limits under test are
/// a few hundred milliseconds.
const SOON: Duration = Duration::from_secs(5);

fn addr(srv: &TestServer) -> String {
    srv.url.trim_start_matches("http://").to_string()
}

/// Waits for the server to close the connection (EOF or reset); false if it is still open
/// after `within`. Whatever the server sent before is returned through `seen`.
async fn closed_within(s: &mut TcpStream, within: Duration, seen: &mut Vec<u8>) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads response heads until a final (non-1xx) one; returns everything read, interim
/// responses included. Panics when none comes within [`SOON`].
async fn final_head(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        // The last head in the buffer, complete, and not an interim one.
        if let Some(end) = text.rfind("\r\n\r\n") {
            let start = text[..end].rfind("\r\n\r\n").map_or(0, |i| i + 4);
            if !text[start..].starts_with("HTTP/1.1 1") {
                return text;
            }
        }
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no final response; got {text:?}"))
            .unwrap_or(0);
        if n == 0 {
            return String::from_utf8_lossy(&got).to_string();
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// Reads until `needle` arrives; panics when it does not within [`SOON`].
async fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + SOON;
    while !String::from_utf8_lossy(&got).contains(needle) {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{needle:?} not received; got {:?}",
                    String::from_utf8_lossy(&got)
                )
            })
            .unwrap_or(0);
        assert!(
            n > 0,
            "closed before {needle:?}; got {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).to_string()
}

/// An HTTP/2 connection with prior knowledge; its connection task is returned so a test can
/// wait for the server to end it.
async fn h2_connect(
    addr: &str,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    (client, tokio::spawn(conn))
}

fn h2_request(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> axum::http::Request<()> {
    let mut r = axum::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(()).unwrap()
}

#[tokio::test]
async fn silent_connections_are_closed_within_header_read_timeout_of_accept() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(
        &mock,
        "web: { max_connections: 8, header_read_timeout: 300ms }",
    ))
    .await;
    let addr = addr(&srv);
    let started = Instant::now();
    // Seven TCP connections that never send a byte, and one HTTP/2 connection that sends its
    // preface and settings and nothing more: every slot taken.
    let mut silent = Vec::new();
    for _ in 0..7 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    let (_h2_client, h2_conn) = h2_connect(&addr).await;
    for (i, s) in silent.iter_mut().enumerate() {
        let mut seen = Vec::new();
        assert!(
            closed_within(s, SOON, &mut seen).await,
            "silent connection {i} still open"
        );
        assert!(seen.is_empty(), "{:?}", String::from_utf8_lossy(&seen));
    }
    tokio::time::timeout(SOON, h2_conn)
        .await
        .expect("an HTTP/2 connection with only its preface is still open")
        .unwrap()
        .ok();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "closed before header_read_timeout: {:?}",
        started.elapsed()
    );
    // The slots are free again.
    let (code, body) = tokio::time::timeout(SOON, srv.get("/-/healthy"))
        .await
        .expect("/-/healthy not served");
    assert_eq!((code, body.as_str()), (200, "OK\n"));
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_idle_timeout() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(
        &mock,
        "web: { idle_timeout: 300ms, header_read_timeout: 2s }",
    ))
    .await;
    let addr = addr(&srv);
    // HTTP/1.1: one request answered, then the connection kept alive but unused.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answered = read_until(&mut s, "\r\n\r\nOK\n").await;
    assert!(answered.starts_with("HTTP/1.1 200 OK"), "{answered}");
    let idle_from = Instant::now();
    let mut seen = Vec::new();
    assert!(
        closed_within(&mut s, SOON, &mut seen).await,
        "idle keep-alive connection still open"
    );
    assert!(idle_from.elapsed() >= Duration::from_millis(300));
    // HTTP/2: the same, closed with a GOAWAY the client sees as the connection's end.
    let (mut client, conn) = h2_connect(&addr).await;
    let (response, _) = client
        .send_request(h2_request("GET", &addr, "/-/healthy", &[]), true)
        .unwrap();
    let response = tokio::time::timeout(SOON, response)
        .await
        .expect("no HTTP/2 answer")
        .unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::timeout(SOON, conn)
        .await
        .expect("idle HTTP/2 connection still open")
        .unwrap()
        .ok();
}

#[tokio::test]
async fn a_trickling_body_is_cut_at_body_read_timeout() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "web: { body_read_timeout: 300ms }")).await;
    let s = TcpStream::connect(addr(&srv)).await.unwrap();
    let (mut read, mut write) = s.into_split();
    write
        .write_all(
            b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        )
        .await
        .unwrap();
    let started = Instant::now();
    // A byte every 50 ms: 1000 bytes would take 50 s.
    let trickle = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(50));
        for _ in 0..999 {
            interval.tick().await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut got = Vec::new();
    let closed = tokio::time::timeout(SOON, read.read_to_end(&mut got)).await;
    trickle.abort();
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout"),
        "not cut at body_read_timeout: {text:?}"
    );
    assert!(closed.is_ok(), "connection still open after the 408");
    assert!(started.elapsed() >= Duration::from_millis(290));
    // HTTP/2: a stream whose body stalls is answered 408 too.
    let a = addr(&srv);
    let (mut client, _conn) = h2_connect(&a).await;
    let (response, mut body) = client
        .send_request(
            h2_request("POST", &a, "/webhook", &[("content-length", "1000")]),
            false,
        )
        .unwrap();
    body.send_data(Bytes::from_static(b"{"), false).unwrap();
    let response = tokio::time::timeout(SOON, response)
        .await
        .expect("a stalled HTTP/2 body was not cut")
        .unwrap();
    assert_eq!(response.status(), 408);
    let (_, m) = srv.get("/metrics").await;
    assert_eq!(
        crate::support::metric(
            &m,
            r#"alertmanager_wechat_webhooks_received_total{source="unknown",status="408"}"#
        ),
        2.0,
        "{m}"
    );
    srv.stop().await;
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn unauthenticated_requests_are_refused_before_their_body_and_get_no_100_continue() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "auth: { bearer_token: tok-abc-123 }")).await;
    let addr = addr(&srv);
    let payload = example("alertmanager-firing.json");
    let head = |auth: &str| {
        format!(
            "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n{auth}\r\n",
            payload.len()
        )
    };
    for auth in [
        "",
        "Authorization: Bearer wrong\r\n",
        "Authorization: Basic dG9rLWFiYy0xMjM=\r\n",
    ] {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(head(auth).as_bytes()).await.unwrap();
        // No body is sent: the answer comes from the head alone.
        let text = final_head(&mut s).await;
        assert!(
            text.starts_with("HTTP/1.1 401 Unauthorized"),
            "{auth:?}: {text}"
        );
        assert!(!text.contains("100 Continue"), "{auth:?}: {text}");
    }
    // With the right token the body is asked for, and accepted.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(head("Authorization: bearer tok-abc-123\r\n").as_bytes())
        .await
        .unwrap();
    let interim = read_until(&mut s, "\r\n\r\n").await;
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    s.write_all(payload.as_bytes()).await.unwrap();
    let text = final_head(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    // HTTP/2: the 401 comes while the body has not been sent.
    let (mut client, _conn) = h2_connect(&addr).await;
    let (response, _body) = client
        .send_request(
            h2_request("POST", &addr, "/webhook", &[("content-length", "2000")]),
            false,
        )
        .unwrap();
    let response = tokio::time::timeout(SOON, response)
        .await
        .expect("HTTP/2 upload without credentials not refused before its body")
        .unwrap();
    assert_eq!(response.status(), 401);
    mock.wait_for(1, SOON).await;
    srv.stop().await;
    assert_eq!(mock.requests().len(), 1);

    // HMAC only: neither a signature nor Authorization is refused from the head too.
    let srv = TestServer::start(&config(&mock, "auth: { grafana_hmac_secret: hmac-abc }")).await;
    let mut s = TcpStream::connect(crate::hardening::addr(&srv))
        .await
        .unwrap();
    s.write_all(head("").as_bytes()).await.unwrap();
    let text = final_head(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 401 Unauthorized"), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
}

/// Sends a POST head for a `len`-byte body with `Expect: 100-continue`; returns the first
/// answer's head: `100 Continue` once the server has taken the body's bytes from the
/// in-flight budget (it reserves a declared length before it first reads).
async fn upload_head(addr: &str, len: usize) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_until(&mut s, "\r\n\r\n").await;
    (s, head)
}

#[tokio::test]
async fn stalled_uploads_cannot_hold_more_than_the_inflight_budget() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(
        &mock,
        "web: { max_body_bytes: 40000, max_inflight_body_bytes: 100000 }",
    ))
    .await;
    let addr = addr(&srv);
    // Two uploads of 40,000 bytes, asked for their body, send a little and stall: 80,000
    // of the 100,000 bytes are taken.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let (mut s, head) = upload_head(&addr, 40_000).await;
        assert!(head.starts_with("HTTP/1.1 100 Continue"), "{head}");
        s.write_all(&[b' '; 1000]).await.unwrap();
        stalled.push(s);
    }
    // A third cannot fit: 503 with Retry-After, before its body is asked for.
    let (_third, head) = upload_head(&addr, 40_000).await;
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable"),
        "over the in-flight budget: {head}"
    );
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 5\r\n"),
        "{head}"
    );
    // What still fits is served.
    assert_eq!(
        srv.post("/webhook", example("alertmanager-firing.json"))
            .await
            .0,
        200
    );
    // Once the stalled ones are gone, their bytes are back.
    drop(stalled);
    let deadline = Instant::now() + SOON;
    loop {
        let (_s, head) = upload_head(&addr, 40_000).await;
        if head.starts_with("HTTP/1.1 100 Continue") {
            break;
        }
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(Instant::now() < deadline, "the budget was not given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn http2_streams_share_the_inflight_budget() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(
        &mock,
        "web: { max_body_bytes: 40000, max_inflight_body_bytes: 100000 }",
    ))
    .await;
    let addr = addr(&srv);
    let (mut client, _conn) = h2_connect(&addr).await;
    // Three stalled uploads on one connection: two fit, the third is refused.
    let mut responses = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let (response, mut body) = client
            .send_request(
                h2_request(
                    "POST",
                    &addr,
                    "/webhook",
                    &[
                        ("content-length", "40000"),
                        ("content-type", "application/json"),
                    ],
                ),
                false,
            )
            .unwrap();
        body.send_data(Bytes::from(vec![b' '; 1000]), false)
            .unwrap();
        responses.push(Box::pin(response));
        bodies.push(body);
    }
    let (first, _, pending) =
        tokio::time::timeout(SOON, futures_util::future::select_all(responses))
            .await
            .expect("no stream refused over the in-flight budget");
    let first = first.unwrap();
    assert_eq!(first.status(), 503);
    assert_eq!(first.headers()["retry-after"], "5");
    // The other two are still waiting for their bodies.
    let more = tokio::time::timeout(
        Duration::from_millis(200),
        futures_util::future::select_all(pending),
    )
    .await;
    assert!(more.is_err(), "a stalled upload was answered");
}

/// The server's `SETTINGS_MAX_CONCURRENT_STREAMS`, as an HTTP/2 client sees it.
async fn h2_max_streams(srv: &TestServer) -> usize {
    let addr = addr(srv);
    let (mut client, _conn) = h2_connect(&addr).await;
    let (response, _) = client
        .send_request(h2_request("GET", &addr, "/-/healthy", &[]), true)
        .unwrap();
    // Answered, so the server's settings have arrived.
    let response = tokio::time::timeout(SOON, response)
        .await
        .expect("no HTTP/2 answer")
        .unwrap();
    assert_eq!(response.status(), 200);
    client.current_max_send_streams()
}

#[tokio::test]
async fn http2_concurrent_streams_are_16_by_default_and_configurable() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "")).await;
    // hyper's own default is 200.
    assert_eq!(h2_max_streams(&srv).await, 16);
    srv.stop().await;
    let srv = TestServer::start(&config(&mock, "web: { http2_max_concurrent_streams: 4 }")).await;
    assert_eq!(h2_max_streams(&srv).await, 4);
}

#[tokio::test]
async fn reload_needs_credentials_with_hmac_only_auth() {
    use hmac::{Hmac, Mac};
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(
        &mock,
        "auth: { grafana_hmac_secret: hmac-reload-1 }",
    ))
    .await;
    let http = reqwest::Client::new();
    let reload = |sig: Option<String>, auth: Option<&str>| {
        let mut r = http.post(format!("{}/-/reload", srv.url)).body("");
        if let Some(s) = sig {
            r = r.header("X-Grafana-Alerting-Signature", s);
        }
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(reload(None, None).await.unwrap()), 401);
    assert_eq!(
        status(reload(None, Some("Bearer anything")).await.unwrap()),
        401
    );
    assert_eq!(
        status(reload(Some("00".repeat(32)), None).await.unwrap()),
        401
    );
    // Signed like a Grafana webhook (over the empty body), it reloads.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"hmac-reload-1").unwrap();
    mac.update(b"");
    let good = hex::encode(mac.finalize().into_bytes());
    assert_eq!(status(reload(Some(good), None).await.unwrap()), 200);
}

#[tokio::test]
async fn reload_takes_admin_credentials_as_well_as_the_webhooks() {
    alertmanager_wechat::runtime::install_tls_provider();
    let mock = MockWxPusher::start().await;
    let http = reqwest::Client::new();
    let reload = |url: String, auth: Option<&'static str>| {
        let mut r = http.post(format!("{url}/-/reload"));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    // base64("sre:admin-pw-1")
    const ADMIN: &str = "Basic c3JlOmFkbWluLXB3LTE=";
    // Only auth.admin: the webhook is open, reload is not.
    let srv = TestServer::start(&config(
        &mock,
        "auth: { admin: { basic_auth: { username: sre, password: admin-pw-1 } } }",
    ))
    .await;
    assert_eq!(reload(srv.url.clone(), None).await, 401);
    assert_eq!(
        reload(srv.url.clone(), Some("Basic c3JlOndyb25n")).await,
        401
    );
    assert_eq!(reload(srv.url.clone(), Some(ADMIN)).await, 200);
    assert_eq!(
        srv.post("/webhook", example("alertmanager-firing.json"))
            .await
            .0,
        200
    );
    srv.stop().await;
    // auth.admin and a webhook token: either reloads.
    let srv = TestServer::start(&config(
        &mock,
        "auth: { bearer_token: tok-admin-1, admin: { basic_auth: { username: sre, password: admin-pw-1 } } }",
    ))
    .await;
    assert_eq!(reload(srv.url.clone(), None).await, 401);
    assert_eq!(reload(srv.url.clone(), Some(ADMIN)).await, 200);
    assert_eq!(
        reload(srv.url.clone(), Some("Bearer tok-admin-1")).await,
        200
    );
    assert_eq!(reload(srv.url.clone(), Some("Bearer wrong")).await, 401);
}

/// Starts the binary on a free port with `config` (YAML; the built-in default when `None`),
/// answers one `/-/healthy`, stops it and returns everything it logged up to then.
async fn startup_logs(config: Option<&str>) -> String {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_alertmanager-wechat"));
    if let Some(yaml) = config {
        let path = dir.path().join("config.yml");
        std::fs::write(&path, yaml).unwrap();
        cmd.arg(format!("--config.file={}", path.display()));
    }
    let mut child = cmd
        .arg("--web.listen-address=127.0.0.1:0")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut logs = String::new();
    let addr = loop {
        // A debug binary on a busy machine can take a while to open its store.
        let line = tokio::time::timeout(Duration::from_secs(30), stderr.next_line())
            .await
            .unwrap_or_else(|_| panic!("not listening:\n{logs}"))
            .unwrap()
            .unwrap_or_else(|| panic!("exited:\n{logs}"));
        logs.push_str(&line);
        logs.push('\n');
        if let Some(rest) = line.split("address=").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    };
    alertmanager_wechat::runtime::install_tls_provider();
    // Answered: what start-up logs is written by now.
    let r = reqwest::get(format!("http://{addr}/-/healthy"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    child.start_kill().unwrap();
    while let Ok(Some(line)) = stderr.next_line().await {
        logs.push_str(&line);
        logs.push('\n');
    }
    logs
}

#[tokio::test]
async fn an_open_reload_endpoint_is_warned_at_start_up() {
    let logs = startup_logs(None).await;
    assert!(
        logs.contains("management endpoint is open") && logs.contains("endpoint=/-/reload"),
        "{logs}"
    );
    let logs = startup_logs(Some(
        "auth: { grafana_hmac_secret: hmac-warn-1 }\nroute: { receiver: c }\nreceivers: [ { name: c, console_configs: [ {} ] } ]\n",
    ))
    .await;
    assert!(logs.contains("listening"), "{logs}");
    assert!(!logs.contains("management endpoint is open"), "{logs}");
}

#[tokio::test]
async fn auth_schemes_are_case_insensitive() {
    alertmanager_wechat::runtime::install_tls_provider();
    let mock = MockWxPusher::start().await;
    let http = reqwest::Client::new();
    let srv = TestServer::start(&config(&mock, "auth: { bearer_token: tok-case-1 }")).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        for path in ["/webhook", "/-/reload"] {
            let r = http
                .post(format!("{}{path}", srv.url))
                .header("authorization", format!("{scheme} tok-case-1"))
                .body(example("alertmanager-firing.json"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "{scheme} {path}");
        }
    }
    srv.stop().await;
    // base64("am:pw-case-1")
    let srv = TestServer::start(&config(
        &mock,
        "auth: { basic_auth: { username: am, password: pw-case-1 } }",
    ))
    .await;
    for scheme in ["Basic", "basic", "BASIC"] {
        let r = http
            .post(format!("{}/webhook", srv.url))
            .header("authorization", format!("{scheme} YW06cHctY2FzZS0x"))
            .body(example("alertmanager-firing.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{scheme}");
    }
    srv.stop().await;
    // The weixin-gateway callback's bearer token too.
    let srv = TestServer::start(&config(
        &mock,
        "chatops: { alertmanager_url: 'http://127.0.0.1:9', weixin_gateway_secret: gateway-case-0123456789, allowed: [ops@im.wechat] }",
    ))
    .await;
    let event = serde_json::json!({"type": "typing", "account_id": "wx-account-1", "user_id": "ops@im.wechat"});
    for (auth, want) in [
        ("Bearer gateway-case-0123456789", 200),
        ("bearer gateway-case-0123456789", 200),
        ("BEARER gateway-case-0123456789", 200),
        ("bearer wrong-case-0123456789", 401),
    ] {
        let r = http
            .post(format!("{}/callback/weixin-gateway", srv.url))
            .header("authorization", auth)
            .json(&event)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{auth}");
    }
}

#[tokio::test]
async fn bad_request_answers_show_control_characters_escaped() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "")).await;
    // JSON escapes decode to an ANSI clear-screen, an OSC title, a bell, a bidi override.
    let (code, body) = srv
        .post(
            "/webhook",
            r#"{"status":"\u001b[2J\u001b]0;pwned\u0007\u202e","alerts":[]}"#,
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        !body
            .trim_end_matches('\n')
            .chars()
            .any(|c| c.is_control() || c == '\u{202e}'),
        "raw control characters in the answer: {body:?}"
    );
    assert!(
        body.contains(r"\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202e}"),
        "{body}"
    );
    srv.stop().await;
    assert!(mock.requests().is_empty());
}

/// Chatops on, both callbacks with their secrets; the Alertmanager URL is never called here.
fn callbacks_config(mock: &MockWxPusher) -> String {
    config(
        mock,
        "chatops: { alertmanager_url: 'http://127.0.0.1:1', wxpusher_callback_secret: cb-secret-0123456789, weixin_gateway_secret: gw-secret-0123456789, allowed: [UID_a] }",
    )
}

#[tokio::test]
async fn callbacks_refuse_a_wrong_secret_before_reading_the_body() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&callbacks_config(&mock)).await;
    let addr = addr(&srv);
    let head = |path: &str, auth: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60000\r\nExpect: 100-continue\r\n{auth}\r\n"
        )
    };
    for (path, auth, status) in [
        ("/callback/wxpusher/wrong", "", "404 Not Found"),
        ("/callback/weixin-gateway", "", "401 Unauthorized"),
        (
            "/callback/weixin-gateway",
            "Authorization: Bearer wrong\r\n",
            "401 Unauthorized",
        ),
    ] {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(head(path, auth).as_bytes()).await.unwrap();
        // No body is sent: the answer comes from the head alone, with no `100 Continue`.
        let text = final_head(&mut s).await;
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}")),
            "{path} {auth:?}: {text}"
        );
        assert!(!text.contains("100 Continue"), "{path} {auth:?}: {text}");
    }
    // With the secret the body is asked for, then read.
    let body = r#"{"action":"order_pay","data":{}}"#;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        format!(
            "POST /callback/wxpusher/cb-secret-0123456789 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let interim = read_until(&mut s, "\r\n\r\n").await;
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    s.write_all(body.as_bytes()).await.unwrap();
    let text = final_head(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    // Over 64 KiB, declared: 413 without reading it.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        b"POST /callback/weixin-gateway HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer gw-secret-0123456789\r\nContent-Length: 70000\r\n\r\n",
    )
    .await
    .unwrap();
    let text = final_head(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    srv.stop().await;
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn callback_bad_request_answers_show_control_characters_escaped() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&callbacks_config(&mock)).await;
    let raw = "\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202e}";
    let escaped = r"\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202e}";
    let client = reqwest::Client::new();
    // The first quotes the text in its error; the others name only its place.
    for (quoted, path, body) in [
        (
            true,
            "/callback/wxpusher/cb-secret-0123456789",
            r#"{"action":"app_subscribe","data":{"uid":"UID_x","time":"\u001b[2J\u001b]0;pwned\u0007\u202e"}}"#,
        ),
        (
            false,
            "/callback/wxpusher/cb-secret-0123456789",
            r#"{"action":"\u001b[2J\u001b]0;pwned\u0007\u202e","data":{},"action":1}"#,
        ),
        (
            false,
            "/callback/weixin-gateway",
            r#"{"type":"message","user_id":"u","text":["\u001b[2J\u001b]0;pwned\u0007\u202e"]}"#,
        ),
    ] {
        let r = client
            .post(format!("{}{path}", srv.url))
            .bearer_auth("gw-secret-0123456789")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(code, 400, "{path} {body}: {text}");
        assert!(
            !text
                .trim_end_matches('\n')
                .chars()
                .any(|c| c.is_control() || c == '\u{202e}'),
            "raw control characters in the answer: {text:?}"
        );
        assert!(!text.contains(raw), "{text:?}");
        assert_eq!(text.contains(escaped), quoted, "{text:?}");
    }
    srv.stop().await;
    assert!(mock.requests().is_empty());
}
