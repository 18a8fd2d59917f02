//! WxPusher's per-UID daily budget (`daily_budget_per_uid`), counted in the store: a UID over
//! it is left out of the call, the rest still get the message, and what a UID could not get
//! is a dead letter that goes to the fallback receiver; restarts do not reset the count.

use std::time::Duration;

use alertmanager_wechat::cli::{DeadLetterAction, deadletters};
use serde_json::json;

use crate::support::redis::RedisServer;
use crate::support::wxpusher::{MockWxPusher, Reply};
use crate::support::{TestServer, metric};

const WAIT: Duration = Duration::from_secs(10);

/// A firing notification whose message shows `instance=i-<fp>`.
fn one(fp: &str) -> String {
    json!({
        "version": "4",
        "status": "firing",
        "receiver": "oncall",
        "groupKey": format!("{{}}:{{alertname=\"HighCPU\",fp=\"{fp}\"}}"),
        "groupLabels": {"alertname": "HighCPU"},
        "commonLabels": {"alertname": "HighCPU"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "HighCPU", "severity": "critical", "instance": format!("i-{fp}")},
            "annotations": {"summary": "CPU high"},
            "startsAt": "2026-11-25T08:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": fp,
        }],
    })
    .to_string()
}

fn content(body: &serde_json::Value) -> &str {
    body["content"].as_str().unwrap_or_default()
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dead_letters(srv: &TestServer) -> f64 {
    metric(
        &srv.app.metrics.encode(),
        "alertmanager_wechat_dead_letters",
    )
}

const QUOTA_FAILURES: &str =
    r#"alertmanager_wechat_deliveries_failed_total{integration="wxpusher",reason="quota"}"#;

#[tokio::test]
async fn uid_over_budget_is_left_out_and_the_others_still_get_it() {
    let mock = MockWxPusher::start().await;
    // Both integrations use one app token: UID_a's count is shared between them.
    let srv = TestServer::start(&format!(
        r#"
global: {{ wxpusher_api_url: "{}" }}
route: {{ receiver: solo }}
receivers:
  - name: solo
    wxpusher_configs: [{{ app_token: AT_test_token, uids: [UID_a], daily_budget_per_uid: 2 }}]
  - name: both
    wxpusher_configs:
      - {{ app_token: AT_test_token, uids: [UID_a, UID_b], daily_budget_per_uid: 2, fallback_receiver: backup }}
  - name: backup
    wxpusher_configs: [{{ app_token: AT_backup, uids: [UID_backup] }}]
"#,
        mock.url
    ))
    .await;
    assert_eq!(srv.post("/webhook/solo", one("n1")).await.0, 200);
    mock.wait_for(1, WAIT).await;
    assert_eq!(srv.post("/webhook/solo", one("n2")).await.0, 200);
    mock.wait_for(2, WAIT).await;
    // UID_a has had its two messages today; UID_b none.
    assert_eq!(srv.post("/webhook/both", one("n3")).await.0, 200);
    let reqs = mock.wait_for(4, WAIT).await;
    wait_until("a dead letter", || dead_letters(&srv) == 1.0).await;
    let metrics = srv.app.metrics.encode();
    let store = srv.app.queue.store.clone();
    srv.stop().await;
    let reqs_after = mock.requests();
    assert_eq!(reqs_after.len(), 4, "{reqs_after:#?}");
    for r in &reqs[..2] {
        assert_eq!(r.body["uids"], json!(["UID_a"]));
    }
    assert_eq!(reqs[2].body["appToken"], "AT_test_token");
    assert_eq!(reqs[2].body["uids"], json!(["UID_b"]));
    assert!(content(&reqs[2].body).contains("i-n3"));
    // What UID_a could not get goes, once, to the fallback receiver.
    assert_eq!(reqs[3].body["appToken"], "AT_backup");
    assert_eq!(reqs[3].body["uids"], json!(["UID_backup"]));
    assert!(content(&reqs[3].body).contains("i-n3"));
    assert_eq!(metric(&metrics, QUOTA_FAILURES), 1.0);
    let (list, ok) = deadletters(&store, DeadLetterAction::List).await;
    assert!(ok);
    assert!(list.contains("both/wxpusher "), "{list}");
    assert!(
        list.contains("1 recipient(s) over the daily budget of 2 messages"),
        "{list}"
    );
    assert!(!list.contains("UID_a"), "UIDs are not listed: {list}");
}

#[tokio::test]
async fn all_uids_over_budget_is_a_dead_letter_sent_once_to_the_fallback() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&format!(
        r#"
global: {{ wxpusher_api_url: "{}" }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs:
      - {{ app_token: AT_primary, uids: [UID_a, UID_b], daily_budget_per_uid: 1, fallback_receiver: backup }}
  - name: backup
    wxpusher_configs: [{{ app_token: AT_backup, uids: [UID_backup] }}]
"#,
        mock.url
    ))
    .await;
    assert_eq!(srv.post("/webhook", one("m1")).await.0, 200);
    mock.wait_for(1, WAIT).await;
    assert_eq!(srv.post("/webhook", one("m2")).await.0, 200);
    let reqs = mock.wait_for(2, WAIT).await;
    wait_until("a dead letter", || dead_letters(&srv) == 1.0).await;
    let metrics = srv.app.metrics.encode();
    let store = srv.app.queue.store.clone();
    srv.stop().await;
    assert_eq!(mock.requests().len(), 2, "{:#?}", mock.requests());
    assert_eq!(reqs[0].body["uids"], json!(["UID_a", "UID_b"]));
    assert!(content(&reqs[0].body).contains("i-m1"));
    assert_eq!(reqs[1].body["appToken"], "AT_backup");
    assert_eq!(reqs[1].body["uids"], json!(["UID_backup"]));
    assert!(content(&reqs[1].body).contains("i-m2"));
    assert_eq!(metric(&metrics, QUOTA_FAILURES), 1.0);
    assert_eq!(
        metric(
            &metrics,
            r#"alertmanager_wechat_notifications_total{receiver="oncall",integration="wxpusher",result="failed"}"#
        ),
        1.0
    );
    let (list, ok) = deadletters(&store, DeadLetterAction::List).await;
    assert!(ok);
    let id: i64 = list
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (shown, ok) = deadletters(&store, DeadLetterAction::Show(id)).await;
    assert!(ok, "{shown}");
    assert!(shown.contains("attempts: 1"), "{shown}");
    assert!(shown.contains("reason: quota"), "{shown}");
    assert!(
        shown.contains("2 recipient(s) over the daily budget of 1 messages"),
        "{shown}"
    );
}

/// Sends `m1` through a server on `storage`, stops it, starts another on the same store and
/// sends `m2`: with a budget of 1, the second never reaches UID_a.
async fn budget_survives_a_restart(storage: &str) {
    let mock = MockWxPusher::start().await;
    let yaml = format!(
        r#"
global: {{ wxpusher_api_url: "{}" }}
{storage}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs: [{{ app_token: AT_primary, uids: [UID_a], daily_budget_per_uid: 1 }}]
"#,
        mock.url
    );
    let first = TestServer::start(&yaml).await;
    assert_eq!(first.post("/webhook", one("r1")).await.0, 200);
    mock.wait_for(1, WAIT).await;
    first.stop().await;
    let second = TestServer::start(&yaml).await;
    assert_eq!(second.post("/webhook", one("r2")).await.0, 200);
    wait_until("a dead letter", || dead_letters(&second) == 1.0).await;
    let metrics = second.app.metrics.encode();
    second.stop().await;
    assert_eq!(mock.requests().len(), 1, "{:#?}", mock.requests());
    assert!(content(&mock.requests()[0].body).contains("i-r1"));
    assert_eq!(metric(&metrics, QUOTA_FAILURES), 1.0);
}

#[tokio::test]
async fn budget_count_survives_a_restart_on_the_same_sqlite_store() {
    let data = tempfile::tempdir().unwrap();
    budget_survives_a_restart(&format!(
        "storage: {{ path: \"{}\" }}",
        data.path().display()
    ))
    .await;
}

#[tokio::test]
async fn budget_count_survives_a_restart_on_the_same_redis_store() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    budget_survives_a_restart(&format!(
        "storage: {{ path: $DATA, redis_url: \"{}\" }}",
        redis.url
    ))
    .await;
}

#[tokio::test]
async fn a_uid_the_call_did_not_deliver_to_keeps_its_budget() {
    let mock = MockWxPusher::start().await;
    // The first call fails for UID_a (per-recipient code), which is retried: had the failed
    // call been counted, the budget of 1 would leave UID_a out of the retry.
    mock.script([Reply::FailUids(vec!["UID_a".into()])]);
    let srv = TestServer::start(&format!(
        r#"
global: {{ wxpusher_api_url: "{}" }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs: [{{ app_token: AT_primary, uids: [UID_a], daily_budget_per_uid: 1 }}]
"#,
        mock.url
    ))
    .await;
    assert_eq!(srv.post("/webhook", one("f1")).await.0, 200);
    let reqs = mock.wait_for(2, WAIT).await;
    wait_until("the job to finish", || {
        metric(
            &srv.app.metrics.encode(),
            r#"alertmanager_wechat_notifications_total{receiver="oncall",integration="wxpusher",result="success"}"#,
        ) == 1.0
    })
    .await;
    // Now the one message of the day is spent.
    assert_eq!(srv.post("/webhook", one("f2")).await.0, 200);
    wait_until("a dead letter", || dead_letters(&srv) == 1.0).await;
    srv.stop().await;
    assert_eq!(mock.requests().len(), 2, "{:#?}", mock.requests());
    for r in &reqs {
        assert_eq!(r.body["uids"], json!(["UID_a"]));
        assert!(content(&r.body).contains("i-f1"));
    }
}
