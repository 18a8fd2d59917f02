//! `/metrics` after a scripted scenario: every counter moved exactly as the scenario says.

use std::time::{Duration, Instant};

use crate::support::wxpusher::{MockWxPusher, Reply};
use crate::support::{TestServer, example, metric, one_receiver as config};

/// Polls `/metrics` until `done` holds for it (deliveries finish after the mock answers).
async fn scrape_until(srv: &TestServer, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, text) = srv.get("/metrics").await;
        assert_eq!(code, 200);
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "metrics never settled:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post_auth(srv: &TestServer, token: Option<&str>, body: impl Into<reqwest::Body>) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("{}/webhook", srv.url))
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().status().as_u16()
}

const TOKEN: &str = "metrics-token";

#[tokio::test]
async fn counters_after_a_scripted_scenario_are_exact() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(
        &mock,
        &format!("auth: {{ bearer_token: {TOKEN} }}"),
    ))
    .await;
    let firing = example("alertmanager-firing.json");
    let grafana = example("grafana-firing.json");

    // 1. Accepted; the first attempt meets a 500, the retry succeeds.
    mock.script([Reply::Http(500)]);
    assert_eq!(post_auth(&srv, Some(TOKEN), firing.clone()).await, 200);
    mock.wait_for(2, Duration::from_secs(10)).await;
    scrape_until(&srv, |m| {
        metric(
            m,
            r#"alertmanager_wechat_notifications_total{receiver="oncall",integration="wxpusher",result="success"}"#,
        ) == 1.0
    })
    .await;
    // 2. Accepted; a bad app token is permanent: given up after one attempt, a dead letter.
    mock.script([Reply::Code(1001, "appToken不正确")]);
    assert_eq!(post_auth(&srv, Some(TOKEN), grafana).await, 200);
    mock.wait_for(3, Duration::from_secs(10)).await;
    // 3. Refused: malformed, no alerts, no token, wrong token.
    assert_eq!(post_auth(&srv, Some(TOKEN), "{not json").await, 400);
    assert_eq!(
        post_auth(&srv, Some(TOKEN), r#"{"status":"firing","alerts":[]}"#).await,
        400
    );
    assert_eq!(post_auth(&srv, None, firing.clone()).await, 401);
    assert_eq!(post_auth(&srv, Some("wrong"), firing.clone()).await, 401);

    let m = scrape_until(&srv, |m| {
        metric(m, "alertmanager_wechat_dead_letters") == 1.0
            && metric(
                m,
                r#"alertmanager_wechat_queue_depth{integration="wxpusher"}"#,
            ) == 0.0
    })
    .await;
    let expect = [
        (
            r#"webhooks_received_total{source="alertmanager",status="200"}"#,
            1.0,
        ),
        (
            r#"webhooks_received_total{source="grafana",status="200"}"#,
            1.0,
        ),
        (
            r#"webhooks_received_total{source="unknown",status="400"}"#,
            2.0,
        ),
        (
            r#"webhooks_received_total{source="unknown",status="401"}"#,
            2.0,
        ),
        // Two alerts in the Alertmanager example, one in Grafana's.
        (r#"alerts_received_total{status="firing"}"#, 3.0),
        (
            r#"notifications_total{receiver="oncall",integration="wxpusher",result="success"}"#,
            1.0,
        ),
        (
            r#"notifications_total{receiver="oncall",integration="wxpusher",result="failed"}"#,
            1.0,
        ),
        (
            r#"deliveries_failed_total{integration="wxpusher",reason="http_5xx"}"#,
            1.0,
        ),
        (
            r#"deliveries_failed_total{integration="wxpusher",reason="bad_credentials"}"#,
            1.0,
        ),
        (r#"deliveries_retried_total{integration="wxpusher"}"#, 1.0),
        (
            r#"notification_latency_seconds_count{integration="wxpusher"}"#,
            1.0,
        ),
        (r#"queue_depth{integration="wxpusher"}"#, 0.0),
        ("dead_letters", 1.0),
        ("config_last_reload_successful", 1.0),
    ];
    for (series, want) in expect {
        let name = format!("alertmanager_wechat_{series}");
        assert!(
            m.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} missing:\n{m}"
        );
        assert_eq!(metric(&m, &name), want, "{name}\n{m}");
    }
    // Nothing else was counted: every webhook, notification and failure series is listed above.
    for family in [
        "webhooks_received_total{",
        "notifications_total{",
        "deliveries_failed_total{",
        "deliveries_retried_total{",
        "alerts_received_total{",
    ] {
        let series: Vec<&str> = m
            .lines()
            .filter(|l| l.starts_with(&format!("alertmanager_wechat_{family}")))
            .collect();
        for s in &series {
            assert!(
                expect
                    .iter()
                    .any(|(e, _)| s.starts_with(&format!("alertmanager_wechat_{e} "))),
                "unexpected series {s}"
            );
        }
    }
    let build = format!(
        r#"alertmanager_wechat_build_info{{version="{}",revision="{}"}}"#,
        env!("CARGO_PKG_VERSION"),
        env!("AMW_GIT_REVISION")
    );
    assert_eq!(metric(&m, &build), 1.0, "{build}\n{m}");
    assert!(!env!("AMW_GIT_REVISION").is_empty());
    let reload_ts = metric(
        &m,
        "alertmanager_wechat_config_last_reload_success_timestamp_seconds",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        reload_ts > now - 600.0 && reload_ts <= now + 1.0,
        "{reload_ts}"
    );
    // Every family the scenario touched is exposed with HELP and TYPE (a labelled family
    // shows up once it has a series: `dedupe_suppressed`, `integration_up` had none here).
    for family in [
        "webhooks_received",
        "alerts_received",
        "notifications",
        "notification_latency_seconds",
        "deliveries_failed",
        "deliveries_retried",
        "queue_depth",
        "dead_letters",
        "config_last_reload_successful",
        "config_last_reload_success_timestamp_seconds",
        "build_info",
    ] {
        assert!(
            m.contains(&format!("# TYPE alertmanager_wechat_{family} ")),
            "{family} not exposed:\n{m}"
        );
        assert!(
            m.contains(&format!("# HELP alertmanager_wechat_{family} ")),
            "{family} has no help:\n{m}"
        );
    }
    // The process metrics a Prometheus user expects, unprefixed, for this (test) process.
    assert!(metric(&m, "process_resident_memory_bytes") > 1e6, "{m}");
    assert!(metric(&m, "process_virtual_memory_bytes") > 1e6, "{m}");
    assert!(metric(&m, "process_open_fds") >= 3.0, "{m}");
    assert!(
        metric(&m, "process_max_fds") >= metric(&m, "process_open_fds"),
        "{m}"
    );
    assert!(metric(&m, "process_cpu_seconds_total") > 0.0, "{m}");
    let start = metric(&m, "process_start_time_seconds");
    assert!(
        start > now - 3600.0 && start <= now + 1.0,
        "{start} vs {now}"
    );
    assert!(m.contains("# TYPE process_cpu_seconds counter"), "{m}");
    assert_eq!(mock.requests().len(), 3);
}

/// A kind's `queue_depth` falls to 0 once its last delivery has left the queue, even when no
/// integration of that kind is configured any more: the gauge does not keep its last count.
#[tokio::test]
async fn queue_depth_of_a_kind_no_longer_configured_falls_to_zero() {
    let mock = MockWxPusher::start().await;
    mock.set_default(Reply::Http(500));
    let srv = TestServer::start(&config(&mock, "")).await;
    assert_eq!(
        post_auth(&srv, None, example("alertmanager-firing.json")).await,
        200
    );
    mock.wait_for(1, Duration::from_secs(10)).await;
    let wxpusher = r#"alertmanager_wechat_queue_depth{integration="wxpusher"}"#;
    scrape_until(&srv, |m| metric(m, wxpusher) == 1.0).await;
    // The receiver is replaced by one of another kind: the waiting delivery becomes a dead
    // letter (receiver_removed) at its next try.
    std::fs::write(
        srv.dir.path().join("config.yml"),
        "route: { receiver: desk }\nreceivers:\n  - name: desk\n    console_configs: [ {} ]\n",
    )
    .unwrap();
    let (status, body) = srv.post("/-/reload", "").await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, m) = srv.get("/metrics").await;
        if metric(&m, "alertmanager_wechat_dead_letters") == 1.0 && metric(&m, wxpusher) == 0.0 {
            assert!(
                m.lines().any(|l| l.starts_with(&format!("{wxpusher} "))),
                "{m}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "queue_depth never fell:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    srv.stop().await;
}
