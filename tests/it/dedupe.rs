//! Grouping and dedupe: one message per real event. Duplicates within `dedupe.window` are
//! not sent again, a resolved alert is announced once, resolved alerts arriving within
//! `dedupe.resolved_group_wait` go out as one message while firing ones go at once, and the
//! resolved message says when the firing one went out. Ends with a real clustered
//! Alertmanager pair.

use std::path::Path;
use std::time::{Duration, Instant};

use alertmanager_wechat::config::Config;
use alertmanager_wechat::dedupe;
use alertmanager_wechat::runtime::Runtime;
use alertmanager_wechat::webhook::Notification;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::support::process::{ALERTMANAGER, Daemon, binary, free_port};
use crate::support::wxpusher::{MockWxPusher, Recorded};
use crate::support::{TestServer, metric};

const WAIT: Duration = Duration::from_secs(10);

fn config(mock: &MockWxPusher, dedupe: &str) -> String {
    format!(
        r#"
global: {{ wxpusher_api_url: "{}", timezone: Asia/Shanghai }}
dedupe: {{ {dedupe} }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs: [{{ app_token: AT_test_token, uids: [UID_a] }}]
"#,
        mock.url
    )
}

/// One alert: `(fingerprint, alertname, status)`; all started at 08:00 UTC, resolved ones
/// ended at 08:42.
type A<'a> = (&'a str, &'a str, &'a str);

fn payload(group: &str, alerts: &[A]) -> String {
    let list: Vec<Value> = alerts
        .iter()
        .map(|(fp, name, status)| {
            json!({
                "status": status,
                "labels": {"alertname": name, "instance": fp, "severity": "warning"},
                "annotations": {"summary": format!("{name} on {fp}")},
                "startsAt": "2026-11-25T08:00:00Z",
                "endsAt": if *status == "resolved" { "2026-11-25T08:42:00Z" } else { "0001-01-01T00:00:00Z" },
                "fingerprint": fp,
            })
        })
        .collect();
    let status = if alerts.iter().any(|a| a.2 == "firing") {
        "firing"
    } else {
        "resolved"
    };
    json!({
        "version": "4", "receiver": "wechat", "status": status, "alerts": list,
        "groupLabels": {"alertname": group}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "groupKey": format!("{{}}:{{alertname=\"{group}\"}}"),
        "truncatedAlerts": 0
    })
    .to_string()
}

fn content(r: &Recorded) -> &str {
    r.body["content"].as_str().unwrap_or_default()
}

fn summary(r: &Recorded) -> &str {
    r.body["summary"].as_str().unwrap_or_default()
}

/// Proves nothing else is queued: a distinct marker notification is sent next, and jobs go
/// out in order, so anything queued before it would have reached the mock first.
async fn only_then_marker(srv: &TestServer, mock: &MockWxPusher, before: usize) {
    let (code, _) = srv
        .post("/webhook", payload("Marker", &[("mk", "Marker", "firing")]))
        .await;
    assert_eq!(code, 200);
    let reqs = mock.wait_for(before + 1, WAIT).await;
    assert_eq!(
        summary(&reqs[before]),
        "🔥【告警】Marker",
        "{:#?}",
        reqs.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    assert_eq!(reqs.len(), before + 1);
}

#[tokio::test]
async fn same_payload_posted_twice_at_once_is_sent_once() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "window: 5m, resolved_group_wait: 1s")).await;
    let body = payload("HighCPU", &[("a1", "HighCPU", "firing")]);
    let (one, two) = tokio::join!(
        srv.post("/webhook", body.clone()),
        srv.post("/webhook", body)
    );
    // Both are answered 200: the first was accepted, the second is a duplicate of it.
    assert_eq!((one.0, two.0), (200, 200));
    let mut bodies = [one.1, two.1];
    bodies.sort();
    assert_eq!(
        bodies,
        [
            "accepted 1 deliveries\n".to_string(),
            "duplicate: the same notification was accepted within dedupe.window, not sent again\n"
                .to_string()
        ]
    );
    let reqs = mock.wait_for(1, WAIT).await;
    assert_eq!(summary(&reqs[0]), "🔥【告警】HighCPU");
    only_then_marker(&srv, &mock, 1).await;
    let (_, m) = srv.get("/metrics").await;
    assert_eq!(duplicates_suppressed(&m), 1.0, "{m}");
    // Both were received and counted as accepted.
    assert_eq!(
        metric(
            &m,
            r#"alertmanager_wechat_webhooks_received_total{source="alertmanager",status="200"}"#
        ),
        3.0
    );
}

#[tokio::test]
async fn three_resolved_notifications_become_one_message_and_firing_is_not_delayed() {
    let mock = MockWxPusher::start().await;
    let wait = Duration::from_secs(2);
    let srv = TestServer::start(&config(&mock, "resolved_group_wait: 2s")).await;
    // DiskFull fires first and its message goes out: the resolved message will say so.
    srv.post(
        "/webhook",
        payload("DiskFull", &[("d1", "DiskFull", "firing")]),
    )
    .await;
    mock.wait_for(1, WAIT).await;

    let first_resolved = Instant::now();
    for body in [
        payload("DiskFull", &[("d1", "DiskFull", "resolved")]),
        payload("HighCPU", &[("c1", "HighCPU", "resolved")]),
        // In the middle: a firing notification, which must not wait for the resolved ones.
        payload("NodeDown", &[("n1", "NodeDown", "firing")]),
        payload("MemLow", &[("m1", "MemLow", "resolved")]),
    ] {
        let (code, text) = srv.post("/webhook", body).await;
        assert_eq!((code, text.as_str()), (200, "accepted 1 deliveries\n"));
    }
    let reqs = mock.wait_for(2, WAIT).await;
    assert_eq!(summary(&reqs[1]), "🔥【告警】NodeDown");
    assert!(
        reqs[1].at.duration_since(first_resolved) < wait,
        "the firing message waited for the resolved ones"
    );

    let reqs = mock.wait_for(3, WAIT).await;
    let resolved = &reqs[2];
    assert!(resolved.at.duration_since(first_resolved) >= wait);
    assert!(
        summary(resolved).starts_with("✅【已恢复】DiskFull, "),
        "{}",
        summary(resolved)
    );
    let text = content(resolved);
    assert!(text.starts_with("## ✅ 已恢复 3 条\n"), "{text}");
    for name in ["DiskFull", "HighCPU", "MemLow"] {
        assert_eq!(text.matches(&format!("**{name}**")).count(), 1, "{text}");
    }
    assert_eq!(
        text.matches("- 恢复：2026-11-25 16:42:00（持续 42分钟）")
            .count(),
        3,
        "{text}"
    );
    // Only DiskFull's firing message went out through this receiver.
    assert_eq!(text.matches("- 首次通知：").count(), 1, "{text}");
    assert!(text.contains("；告警消息已于 "), "{text}");
    assert!(!text.contains("告警中"), "{text}");
    only_then_marker(&srv, &mock, 3).await;
}

#[tokio::test]
async fn same_firing_group_after_the_window_is_delivered_again() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "window: 1s")).await;
    let body = payload("HighCPU", &[("a1", "HighCPU", "firing")]);
    let (_, first) = srv.post("/webhook", body.clone()).await;
    assert_eq!(first, "accepted 1 deliveries\n");
    let accepted = Instant::now();
    mock.wait_for(1, WAIT).await;
    let (code, again) = srv.post("/webhook", body.clone()).await;
    assert_eq!(code, 200);
    assert!(again.starts_with("duplicate: "), "{again}");
    // The window is what is under test: time has to pass.
    tokio::time::sleep(
        Duration::from_secs(1).saturating_sub(accepted.elapsed()) + Duration::from_millis(50),
    )
    .await;
    let (_, reminder) = srv.post("/webhook", body).await;
    assert_eq!(reminder, "accepted 1 deliveries\n");
    let reqs = mock.wait_for(2, WAIT).await;
    assert_eq!(summary(&reqs[1]), "🔥【告警】HighCPU");
    only_then_marker(&srv, &mock, 2).await;
}

#[tokio::test]
async fn a_resolved_alert_is_announced_once() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "resolved_group_wait: 0s")).await;
    srv.post(
        "/webhook",
        payload("HighCPU", &[("a1", "HighCPU", "resolved")]),
    )
    .await;
    let reqs = mock.wait_for(1, WAIT).await;
    assert_eq!(summary(&reqs[0]), "✅【已恢复】HighCPU");
    // The same resolution in another group (not a duplicate notification): left out.
    let (code, text) = srv
        .post(
            "/webhook",
            payload("Other", &[("a1", "HighCPU", "resolved")]),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        text,
        "accepted 0 deliveries, 1 resolved alerts already announced left out\n"
    );
    // A firing notification still carrying it: sent at once, without it.
    let (_, text) = srv
        .post(
            "/webhook",
            payload(
                "HighCPU",
                &[("a1", "HighCPU", "resolved"), ("a2", "HighCPU", "firing")],
            ),
        )
        .await;
    assert_eq!(
        text,
        "accepted 1 deliveries, 1 resolved alerts already announced left out\n"
    );
    let reqs = mock.wait_for(2, WAIT).await;
    assert_eq!(summary(&reqs[1]), "🔥【告警】HighCPU a2");
    assert!(
        !content(&reqs[1]).contains("已恢复"),
        "{}",
        content(&reqs[1])
    );
    only_then_marker(&srv, &mock, 2).await;
    let (_, m) = srv.get("/metrics").await;
    assert_eq!(
        metric(
            &m,
            r#"alertmanager_wechat_dedupe_suppressed_total{reason="resolved_again"}"#
        ),
        2.0,
        "{m}"
    );
}

#[tokio::test]
async fn expired_dedupe_state_is_pruned() {
    let mock = MockWxPusher::start().await;
    // Sent as fast as they come: the firing-sent keys are taken within the window.
    let cfg = config(&mock, "window: 3s, resolved_group_wait: 0s").replace(
        "uids: [UID_a] }",
        "uids: [UID_a], rate_limit: { rate: 1000, burst: 1000 } }",
    );
    let srv = TestServer::start(&cfg).await;
    let store = srv.app.queue.store.clone();
    // Each firing notification takes three keys: its identity (for the window), and the
    // alert's first firing time and firing-sent time (for the retention, days).
    for i in 0..10 {
        let fp = format!("p{i}");
        srv.post(
            "/webhook",
            payload(&format!("G{i}"), &[(fp.as_str(), "Flap", "firing")]),
        )
        .await;
    }
    mock.wait_for(10, WAIT).await;
    // 10 identities + 10 first-firing times + 10 firing-sent times (recorded by the worker
    // just after each send: polled).
    state_reaches(&store, 30).await;
    // The identities expire after the window: from the next admission on they count for
    // nothing (the store deletes them with its next compaction). (The window is long enough
    // for the ten posts above and their sends to land inside it on a loaded machine.)
    tokio::time::sleep(Duration::from_millis(3050)).await;
    srv.post("/webhook", payload("Last", &[("last", "Flap", "firing")]))
        .await;
    mock.wait_for(11, WAIT).await;
    state_reaches(&store, 20 + 3).await;
}

async fn state_reaches(store: &alertmanager_wechat::store::Store, n: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let size = store.state_size().await.unwrap();
        if size == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "dedupe state has {size} keys, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn runtime(locale: &str) -> Runtime {
    let cfg = format!(
        "global: {{ locale: {locale}, timezone: Asia/Shanghai }}\nroute: {{ receiver: oncall }}\nreceivers:\n  - name: oncall\n    wxpusher_configs: [{{ app_token: AT_x, uids: [UID_a] }}]\n"
    );
    Runtime::build(Config::parse(&cfg, "t.yml", Path::new(".")).unwrap()).unwrap()
}

/// A merged resolved message as the default templates render it, with pairing.
fn merged(locale: &str) -> String {
    let rt = runtime(locale);
    let parse = |g: &str, a: &[A]| Notification::parse(payload(g, a).as_bytes()).unwrap();
    let mut n = dedupe::merge(vec![
        parse("DiskFull", &[("d1", "DiskFull", "resolved")]),
        parse("HighCPU", &[("c1", "HighCPU", "resolved")]),
        parse("MemLow", &[("m1", "MemLow", "resolved")]),
    ])
    .unwrap();
    let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    n.alerts[0].first_notified_at = Some(at("2026-11-25T08:01:00Z"));
    n.alerts[0].firing_sent_at = Some(at("2026-11-25T08:01:02Z"));
    n.alerts[1].first_notified_at = Some(at("2026-11-25T08:01:00Z"));
    let ctx = rt.templates.context(&n, at("2026-11-25T08:43:00Z"));
    let mut out = String::new();
    for name in [
        "wxpusher.summary",
        "wxpusher.content",
        "wxpusher.text",
        "gateway.text",
    ] {
        out += &format!("--- {name}\n{}\n", rt.templates.render(name, &ctx).unwrap());
    }
    out
}

#[test]
fn snapshot_zh_merged_resolved() {
    insta::assert_snapshot!(merged("zh-CN"));
}

#[test]
fn snapshot_en_merged_resolved() {
    insta::assert_snapshot!(merged("en"));
}

/// Alertmanager's configuration for one peer of the pair.
fn pair_config(receiver_url: &str) -> String {
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
"#
    )
}

async fn start_peer(receiver_url: &str, listen: u16, peer: u16) -> Option<Daemon> {
    let bin = binary(ALERTMANAGER)?;
    let listen = format!("--cluster.listen-address=127.0.0.1:{listen}");
    let peer = format!("--cluster.peer=127.0.0.1:{peer}");
    Some(
        Daemon::start(
            "alertmanager",
            &bin,
            &[("alertmanager.yml", pair_config(receiver_url))],
            &[
                "--config.file=$DIR/alertmanager.yml",
                "--storage.path=$DIR/data",
                "--web.listen-address=127.0.0.1:$PORT",
                &listen,
                &peer,
                "--cluster.gossip-interval=50ms",
                "--cluster.pushpull-interval=1s",
                "--cluster.peer-timeout=1s",
                "--cluster.settle-timeout=5s",
                "--web.external-url=http://alertmanager.e2e.example:9093",
                "--log.level=debug",
            ],
        )
        .await,
    )
}

async fn post_alert(am: &Daemon, alert: &Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&json!([alert]))
        .send()
        .await
        .expect("posting to Alertmanager");
    assert!(
        r.status().is_success(),
        "Alertmanager refused: {}",
        r.status()
    );
}

/// Alertmanager's count of webhook notifications it sent (successfully or not).
async fn am_sent(am: &Daemon) -> f64 {
    let text = reqwest::get(format!("{}/metrics", am.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric(
        &text,
        r#"alertmanager_notifications_total{integration="webhook"}"#,
    )
}

#[tokio::test]
async fn clustered_alertmanager_pair_gives_one_message_for_firing_and_one_for_resolved() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "window: 5m, resolved_group_wait: 1s")).await;
    let (p1, p2) = (free_port(), free_port());
    let Some(am1) = start_peer(&srv.url, p1, p2).await else {
        return;
    };
    let Some(am2) = start_peer(&srv.url, p2, p1).await else {
        return;
    };
    // As Prometheus does: the same alert, with the same start time, to every Alertmanager of
    // the pair (alerts are not gossiped; each peer keeps its own copy).
    let mut alert = json!({
        "labels": {"alertname": "PairTest", "instance": "db-1", "severity": "critical"},
        "annotations": {"summary": "fired into both peers"},
        "startsAt": (Utc::now() - chrono::Duration::seconds(1)).to_rfc3339(),
    });
    post_alert(&am1, &alert).await;
    post_alert(&am2, &alert).await;
    let reqs = mock.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(summary(&reqs[0]), "🔥【告警】PairTest db-1");

    // Resolve it in both, and wait until each peer has done what it was going to do: the
    // second peer waits `peer-timeout` and then sends or skips; give both that and more.
    let sent_before = am_sent(&am1).await + am_sent(&am2).await;
    alert["endsAt"] = json!(Utc::now().to_rfc3339());
    post_alert(&am1, &alert).await;
    post_alert(&am2, &alert).await;
    let reqs = mock.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(summary(&reqs[1]), "✅【已恢复】PairTest db-1");
    let text = content(&reqs[1]);
    assert!(text.contains("；告警消息已于 "), "{text}");
    // Absence has no event: wait out the second peer's turn (peer-timeout 1s, plus
    // group_interval and our resolved_group_wait), then prove nothing else is queued.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let sent_after = am_sent(&am1).await + am_sent(&am2).await;
    assert!(sent_after > sent_before, "the peers sent the resolution");
    // Whatever each peer sent (Alertmanager's own dedupe between peers is best effort), one
    // message per event reached WeChat.
    let (_, m) = srv.get("/metrics").await;
    let received = metric(
        &m,
        r#"alertmanager_wechat_webhooks_received_total{source="alertmanager",status="200"}"#,
    );
    assert!(received >= 2.0, "{m}");
    only_then_marker(&srv, &mock, 2).await;
    drop((am1, am2));
}

fn appending_config(mock: &MockWxPusher, data: &str) -> String {
    crate::support::one_receiver(
        mock,
        &format!(
            "storage: {{ path: \"{data}\", accept_inline: 0 }}\n\
             dedupe: {{ window: 5m, resolved_group_wait: 1s }}"
        ),
    )
}

/// Past `storage.accept_inline` webhooks at once (here 0: always), a webhook is appended and
/// answered before it is routed. It is then routed as any other, in arrival order: sent
/// once, its duplicate suppressed (and counted, as the answer cannot say it), a named
/// receiver kept, and a named receiver that does not exist still refused with 404.
#[tokio::test]
async fn an_appended_webhook_is_answered_then_routed_in_order_with_dedupe() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&appending_config(&mock, "$DATA")).await;
    let body = payload("HighCPU", &[("a1", "HighCPU", "firing")]);
    let (code, text) = srv.post("/webhook", body.clone()).await;
    assert_eq!(
        (code, text.as_str()),
        (200, "accepted; routed after this answer\n")
    );
    let reqs = mock.wait_for(1, WAIT).await;
    assert_eq!(summary(&reqs[0]), "🔥【告警】HighCPU");
    let (code, text) = srv.post("/webhook", body).await;
    assert_eq!(
        (code, text.as_str()),
        (200, "accepted; routed after this answer\n")
    );
    let (code, _) = srv
        .post(
            "/webhook/oncall",
            payload("Named", &[("n1", "Named", "firing")]),
        )
        .await;
    assert_eq!(code, 200);
    let reqs = mock.wait_for(2, WAIT).await;
    assert_eq!(
        summary(&reqs[1]),
        "🔥【告警】Named",
        "the duplicate was not sent"
    );
    let (code, text) = srv
        .post("/webhook/nobody", payload("X", &[("x1", "X", "firing")]))
        .await;
    assert_eq!(
        (code, text.as_str()),
        (404, "unknown receiver \"nobody\"\n")
    );
    only_then_marker(&srv, &mock, 2).await;
    let (_, m) = srv.get("/metrics").await;
    assert_eq!(duplicates_suppressed(&m), 1.0, "{m}");
    assert_eq!(
        metric(&m, "alertmanager_wechat_webhooks_pending"),
        0.0,
        "all routed: {m}"
    );
}

/// Webhooks appended and not yet routed when the service stopped (or was killed) are routed
/// at the next start.
#[tokio::test]
async fn webhooks_appended_before_a_stop_are_routed_at_the_next_start() {
    let mock = MockWxPusher::start().await;
    let data = tempfile::tempdir().unwrap();
    {
        let store = alertmanager_wechat::store::Store::open(data.path(), 100).unwrap();
        for (group, fp) in [("Left1", "l1"), ("Left2", "l2")] {
            let n =
                Notification::parse(payload(group, &[(fp, group, "firing")]).as_bytes()).unwrap();
            store.append(&n, None, Utc::now()).await.unwrap();
        }
        assert_eq!(store.inbox_len().await.unwrap(), 2);
    }
    let srv = TestServer::start(&appending_config(&mock, &data.path().display().to_string())).await;
    let reqs = mock.wait_for(2, WAIT).await;
    let mut got: Vec<&str> = reqs.iter().map(summary).collect();
    got.sort();
    assert_eq!(got, ["🔥【告警】Left1", "🔥【告警】Left2"]);
    only_then_marker(&srv, &mock, 2).await;
}

/// `dedupe_suppressed_total{reason="duplicate"}` in a `/metrics` page.
fn duplicates_suppressed(m: &str) -> f64 {
    metric(
        m,
        r#"alertmanager_wechat_dedupe_suppressed_total{reason="duplicate"}"#,
    )
}
