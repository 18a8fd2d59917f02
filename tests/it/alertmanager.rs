//! The real clients: Debian's Alertmanager (and Prometheus in front of it) posting to the real
//! receiver, which delivers to the mock WxPusher. Our payload fixtures are ours; these are not.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::process::{ALERTMANAGER, Daemon, PROMETHEUS, binary};
use crate::support::wxpusher::{MockWxPusher, Recorded};
use crate::support::{TestServer, example, metric};

pub(crate) const TOKEN: &str = "e2e-webhook-token";
const EXTERNAL_URL: &str = "http://alertmanager.e2e.example:9093";
/// Alertmanager waits `group_wait` (1s) before the first notification and `group_interval`
/// (1s) between the next ones; Prometheus adds its own evaluation and resend delays.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

fn receiver_config(mock: &MockWxPusher, storage: &str) -> String {
    format!(
        r#"
global: {{ wxpusher_api_url: "{}", timezone: Asia/Shanghai }}
auth: {{ bearer_token: {TOKEN} }}
storage: {{ path: $DATA{storage} }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs:
      - {{ app_token: AT_e2e, uids: [UID_e2e] }}
"#,
        mock.url
    )
}

/// Alertmanager's own configuration: everything to the receiver, with bearer auth.
fn alertmanager_config(receiver_url: &str) -> String {
    format!(
        r#"
route:
  receiver: wechat
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: wechat
    webhook_configs:
      - url: {receiver_url}/webhook
        send_resolved: true
        http_config:
          authorization:
            credentials: {TOKEN}
"#
    )
}

pub(crate) async fn start_alertmanager(receiver_url: &str) -> Option<Daemon> {
    let bin = binary(ALERTMANAGER)?;
    let external = format!("--web.external-url={EXTERNAL_URL}");
    Some(
        Daemon::start(
            "alertmanager",
            &bin,
            &[("alertmanager.yml", alertmanager_config(receiver_url))],
            &[
                "--config.file=$DIR/alertmanager.yml",
                "--storage.path=$DIR/data",
                "--web.listen-address=127.0.0.1:$PORT",
                "--cluster.listen-address=",
                &external,
                "--log.level=debug",
            ],
        )
        .await,
    )
}

/// Posts alerts to Alertmanager's API, as Prometheus would.
pub(crate) async fn post_alerts(am: &Daemon, alerts: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&alerts)
        .send()
        .await
        .expect("posting to Alertmanager");
    let status = r.status();
    assert!(
        status.is_success(),
        "Alertmanager refused the alerts: {status} {}",
        r.text().await.unwrap_or_default()
    );
}

fn disk_alerts(ends_at: Option<String>) -> Value {
    let alerts: Vec<Value> = ["node-1:9100", "node-2:9100"]
        .iter()
        .map(|instance| {
            // No startsAt: Alertmanager stamps it, and group_wait applies.
            let mut a = json!({
                "labels": {"alertname": "DiskFull", "severity": "critical", "instance": instance, "team": "storage"},
                "annotations": {"summary": "磁盘空间不足 5%"},
                "generatorURL": "http://prometheus.e2e.example:9090/graph?g0.expr=disk_free"
            });
            if let Some(e) = &ends_at {
                a["endsAt"] = json!(e);
            }
            a
        })
        .collect();
    Value::Array(alerts)
}

fn content(r: &Recorded) -> &str {
    r.body["content"].as_str().unwrap_or_default()
}

/// Polls `check` until it holds or `timeout` passes; for state that has no event to wait on
/// (another process's behaviour seen through metrics).
pub(crate) async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn alertmanager_firing_then_resolved_reaches_wxpusher() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&receiver_config(&mock, "")).await;
    let Some(am) = start_alertmanager(&srv.url).await else {
        return;
    };

    post_alerts(&am, disk_alerts(None)).await;
    let reqs = mock.wait_for(1, WAIT).await;
    let firing = &reqs[0];
    assert_eq!(firing.body["appToken"], "AT_e2e");
    assert_eq!(firing.body["uids"], json!(["UID_e2e"]));
    assert_eq!(firing.body["summary"], "🔥【告警】DiskFull ×2");
    assert_eq!(firing.body["url"], EXTERNAL_URL);
    let text = content(firing);
    assert!(text.starts_with("## 🔥 告警中 2 条"), "{text}");
    assert!(text.contains("**DiskFull** · `critical`"), "{text}");
    assert!(text.contains("> 磁盘空间不足 5%"), "{text}");
    assert!(text.contains("instance=node-1:9100"), "{text}");
    assert!(text.contains("instance=node-2:9100"), "{text}");
    assert!(text.contains("team=storage"), "{text}");
    assert!(
        text.contains("[查看来源](http://prometheus.e2e.example:9090/graph?g0.expr=disk_free)"),
        "{text}"
    );
    assert!(!text.contains("已恢复"), "{text}");

    // Resolving: the same labels with an end time of now.
    post_alerts(&am, disk_alerts(Some(chrono::Utc::now().to_rfc3339()))).await;
    let reqs = mock.wait_for(2, WAIT).await;
    assert_eq!(reqs.len(), 2, "one firing and one resolved message");
    let resolved = &reqs[1];
    assert_eq!(resolved.body["summary"], "✅【已恢复】DiskFull ×2");
    let text = content(resolved);
    assert!(text.starts_with("## ✅ 已恢复 2 条"), "{text}");
    assert!(text.contains("> 磁盘空间不足 5%"), "{text}");
    assert!(text.contains("instance=node-1:9100"), "{text}");
    assert!(text.contains("instance=node-2:9100"), "{text}");
    assert!(!text.contains("告警中"), "{text}");

    // Both came in authenticated on the first try: no 401, no retry.
    let (_, m) = srv.get("/metrics").await;
    let accepted =
        r#"alertmanager_wechat_webhooks_received_total{source="alertmanager",status="200"}"#;
    assert_eq!(metric(&m, accepted), 2.0, "{m}");
    assert_eq!(
        metric(
            &m,
            r#"alertmanager_wechat_webhooks_received_total{source="unknown",status="401"}"#
        ),
        0.0,
        "{m}"
    );
    srv.stop().await;
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn receiver_503_makes_alertmanager_retry_and_the_alert_arrives_once() {
    let mock = MockWxPusher::start().await;
    // A queue of one: with the upstream hanging, the receiver fills up and answers 503.
    let srv = TestServer::start(&receiver_config(&mock, ", queue_capacity: 1")).await;
    let Some(am) = start_alertmanager(&srv.url).await else {
        return;
    };

    mock.hold();
    let client = reqwest::Client::new();
    let mut blockers = 0;
    loop {
        let r = client
            .post(format!("{}/webhook", srv.url))
            .bearer_auth(TOKEN)
            .body(example("alertmanager-firing.json"))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => blockers += 1,
            503 => break,
            other => panic!("unexpected {other} while filling the queue"),
        }
        assert!(blockers < 500, "the receiver never answered 503");
    }
    let refused =
        r#"alertmanager_wechat_webhooks_received_total{source="alertmanager",status="503"}"#;
    let accepted =
        r#"alertmanager_wechat_webhooks_received_total{source="alertmanager",status="200"}"#;
    let (_, m) = srv.get("/metrics").await;
    assert_eq!(metric(&m, refused), 1.0, "{m}");

    post_alerts(
        &am,
        json!([{"labels": {"alertname": "RetryMe", "instance": "db-1"},
                "annotations": {"summary": "arrives after a 503"}}]),
    )
    .await;
    // Alertmanager's own attempt is refused too: wait until the receiver has said 503 to it.
    eventually("Alertmanager to be refused with 503", WAIT, || async {
        metric(&srv.get("/metrics").await.1, refused) >= 2.0
    })
    .await;
    assert_eq!(
        metric(&srv.get("/metrics").await.1, accepted),
        blockers as f64
    );

    mock.release();
    let mine = |reqs: &[Recorded]| {
        reqs.iter()
            .filter(|r| r.body["summary"] == "🔥【告警】RetryMe db-1")
            .count()
    };
    eventually("the retried alert to reach WxPusher", WAIT, || async {
        mine(&mock.requests()) >= 1
    })
    .await;
    // Alertmanager retried until it got a 200, once.
    assert_eq!(
        metric(&srv.get("/metrics").await.1, accepted),
        blockers as f64 + 1.0
    );
    let am_metrics = reqwest::get(format!("{}/metrics", am.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failed = am_metrics
        .lines()
        .find(|l| {
            l.starts_with("alertmanager_notification_requests_failed_total{integration=\"webhook\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        failed >= 1.0,
        "Alertmanager should count the refused attempt: {am_metrics}"
    );
    srv.stop().await;
    let reqs = mock.requests();
    assert_eq!(mine(&reqs), 1, "the alert must arrive exactly once");
    let text = reqs
        .iter()
        .find(|r| r.body["summary"] == "🔥【告警】RetryMe db-1")
        .map(content)
        .unwrap_or_default();
    assert!(text.contains("> arrives after a 503"), "{text}");
    // Every blocker was delivered too, once each: nothing accepted was lost.
    assert_eq!(reqs.len(), blockers + 1);
}

#[tokio::test]
async fn prometheus_rule_fires_through_alertmanager_to_wxpusher() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&receiver_config(&mock, "")).await;
    let Some(prometheus) = binary(PROMETHEUS) else {
        return;
    };
    let Some(am) = start_alertmanager(&srv.url).await else {
        return;
    };
    let am_target = am.url.trim_start_matches("http://");
    let config = format!(
        r#"
global: {{ scrape_interval: 1s, evaluation_interval: 1s }}
rule_files: [ $DIR/rules.yml ]
alerting:
  alertmanagers:
    - static_configs: [ {{ targets: ["{am_target}"] }} ]
"#
    );
    let rules = r#"
groups:
  - name: e2e
    interval: 1s
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
        labels: { severity: warning, team: e2e }
        annotations: { summary: "The rule always fires" }
"#;
    let _prom = Daemon::start(
        "prometheus",
        &prometheus,
        &[("prometheus.yml", config), ("rules.yml", rules.to_string())],
        &[
            "--config.file=$DIR/prometheus.yml",
            "--storage.tsdb.path=$DIR/data",
            "--web.listen-address=127.0.0.1:$PORT",
            "--rules.alert.resend-delay=1s",
        ],
    )
    .await;

    let reqs = mock.wait_for(1, WAIT).await;
    let b = &reqs[0].body;
    assert_eq!(b["summary"], "🔥【告警】AlwaysFiring");
    assert_eq!(b["url"], EXTERNAL_URL);
    let text = content(&reqs[0]);
    assert!(text.starts_with("## 🔥 告警中 1 条"), "{text}");
    assert!(text.contains("**AlwaysFiring** · `warning`"), "{text}");
    assert!(text.contains("> The rule always fires"), "{text}");
    assert!(text.contains("team=e2e"), "{text}");
    // Prometheus's own link back to the expression.
    assert!(text.contains("/graph?g0.expr=vector%281%29"), "{text}");
}
