//! What the webhook endpoints answer, and that refused payloads send nothing.

use std::time::Duration;

use crate::support::wxpusher::MockWxPusher;
use crate::support::{TestServer, example, metric, one_receiver as config};

#[tokio::test]
async fn malformed_and_incomplete_payloads_get_400_with_a_reason_and_send_nothing() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "")).await;
    let (code, body) = srv.post("/webhook", "{not json").await;
    assert_eq!(
        (code, body.as_str()),
        (
            400,
            "malformed JSON: key must be a string at line 1 column 2\n"
        )
    );
    let (code, body) = srv.post("/webhook", r#"{"status":"firing"}"#).await;
    assert_eq!(code, 400);
    assert!(body.contains("missing field `alerts`"), "{body}");
    let (code, body) = srv
        .post("/webhook", r#"{"status":"firing","alerts":[]}"#)
        .await;
    assert_eq!((code, body.as_str()), (400, "payload has no alerts\n"));
    let (code, _) = srv
        .post("/webhook", b"{\"status\":\"\xff\"}".to_vec())
        .await;
    assert_eq!(code, 400);
    // A good one afterwards is the only thing the mock ever sees.
    let (code, _) = srv
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!(code, 200);
    let reqs = mock.wait_for(1, Duration::from_secs(5)).await;
    srv.stop().await;
    assert_eq!(mock.requests().len(), 1, "{reqs:?}");
}

#[tokio::test]
async fn unknown_receiver_is_404_and_named_receiver_is_used() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "")).await;
    let (code, body) = srv
        .post("/webhook/nobody", example("alertmanager-firing.json"))
        .await;
    assert_eq!(
        (code, body.as_str()),
        (404, "unknown receiver \"nobody\"\n")
    );
    let (code, _) = srv
        .post("/webhook/oncall", example("alertmanager-firing.json"))
        .await;
    assert_eq!(code, 200);
    mock.wait_for(1, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn body_over_the_limit_is_413_even_without_content_length() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "web: { max_body_bytes: 2048 }")).await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(4096));
    let (code, _) = srv.post("/webhook", big.clone()).await;
    assert_eq!(code, 413);
    // Chunked, so the server only learns the size while reading.
    let stream = futures_stream(big.into_bytes());
    let (code, _) = srv
        .post("/webhook", reqwest::Body::wrap_stream(stream))
        .await;
    assert_eq!(code, 413);
    let (code, _) = srv
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!(code, 200);
}

fn futures_stream(
    bytes: Vec<u8>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(512).map(|c| Ok(c.to_vec())).collect();
    tokio_stream::iter(chunks)
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "")).await;
    assert_eq!(srv.get("/-/healthy").await.0, 200);
    assert_eq!(srv.get("/-/ready").await.0, 200);
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    srv.post("/webhook", example("grafana-firing.json")).await;
    srv.post("/webhook", "nope").await;
    mock.wait_for(2, Duration::from_secs(5)).await;
    let (_, text) = srv.get("/metrics").await;
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_webhooks_received_total{source="alertmanager",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_webhooks_received_total{source="grafana",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_webhooks_received_total{source="unknown",status="400"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_alerts_received_total{status="firing"}"#
        ),
        3.0
    );
    assert_eq!(
        metric(&text, "alertmanager_wechat_config_last_reload_successful"),
        1.0
    );
    assert!(text.contains("alertmanager_wechat_build_info{"), "{text}");
}

#[tokio::test]
async fn bearer_token_is_required_when_configured() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "auth: { bearer_token: s3cret-token }")).await;
    let (code, body) = srv
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!((code, body.as_str()), (401, "unauthorized\n"));
    let r = reqwest::Client::new()
        .post(format!("{}/webhook", srv.url))
        .bearer_auth("s3cret-token")
        .body(example("alertmanager-firing.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    mock.wait_for(1, Duration::from_secs(5)).await;
}
