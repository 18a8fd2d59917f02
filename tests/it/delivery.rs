//! Delivery guarantees: durability across kill -9, retries, dead letters, fallback, rate
//! limits and storm digests, against the mock WxPusher.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alertmanager_wechat::cli::{DeadLetterAction, deadletters};
use serde_json::json;

use crate::support::wxpusher::{MockWxPusher, Reply};
use crate::support::{TestServer, fast_retries, metric};

const WAIT: Duration = Duration::from_secs(10);
/// Slack, in seconds, between a request leaving the bucket and reaching the mock.
const JITTER: f64 = 0.1;

/// A payload of alerts `(fingerprint, alertname, severity, status)` in group `group`; each
/// alert's `instance` label is `i-<fingerprint>`, which the default message shows.
fn payload(group: &str, alerts: &[(String, &str, &str, &str)]) -> String {
    let alerts: Vec<_> = alerts
        .iter()
        .map(|(fp, name, sev, status)| {
            json!({"status": status,
                "labels": {"alertname": name, "severity": sev, "instance": format!("i-{fp}"), "group": group},
                "annotations": {"summary": format!("{name} on i-{fp}")},
                "startsAt": "2026-11-25T08:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph", "fingerprint": fp})
        })
        .collect();
    json!({"receiver": "wechat", "status": "firing", "alerts": alerts,
        "groupLabels": {"group": group}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "version": "4",
        "groupKey": format!("{{}}:{{group=\"{group}\"}}"), "truncatedAlerts": 0})
    .to_string()
}

fn one(fp: &str) -> String {
    payload(fp, &[(fp.to_string(), "HighCPU", "critical", "firing")])
}

/// Fingerprints (from `i-<fp>`) that appear in any content the mock received.
fn delivered(mock: &MockWxPusher) -> BTreeSet<String> {
    delivered_since(mock, 0)
}

/// As [`delivered`], counting only requests from the `from`-th on.
fn delivered_since(mock: &MockWxPusher, from: usize) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for r in mock.requests().into_iter().skip(from) {
        let content = r.body["content"].as_str().unwrap_or("").to_string();
        for word in content.split(|c: char| c.is_whitespace() || c == ',' || c == '`') {
            if let Some(fp) = word.strip_prefix("instance=i-") {
                out.insert(fp.to_string());
            }
        }
    }
    out
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Binary {
    child: Child,
    url: String,
}

async fn start_binary(config: &std::path::Path) -> Binary {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_alertmanager-wechat"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    // The process has no way to tell us it listens other than answering.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(r) = client.get(format!("{url}/-/ready")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "binary did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Binary { child, url }
}

#[tokio::test]
async fn kill_9_loses_nothing_that_was_answered_200() {
    let mock = MockWxPusher::start().await;
    // Every send hangs long enough for the kill to land while requests are in flight.
    mock.set_default(Reply::Slow(Duration::from_secs(30)));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            r#"
global: {{ wxpusher_api_url: "{}" }}
storage: {{ path: "{}" }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs:
      - {{ app_token: AT_kill_test, uids: [UID_a], rate_limit: {{ rate: 1000, burst: 1000 }} }}
"#,
            mock.url,
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut bin = start_binary(&config).await;
    let client = reqwest::Client::new();
    let mut accepted = BTreeSet::new();
    for i in 0..40 {
        let fp = format!("fp{i:03}");
        let r = client
            .post(format!("{}/webhook", bin.url))
            .body(one(&fp))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            accepted.insert(fp);
        }
    }
    assert_eq!(accepted.len(), 40);
    // Some deliveries are in flight (the mock holds them), none has completed.
    wait_until("requests in flight", || mock.requests().len() >= 16).await;
    bin.child.kill().unwrap(); // SIGKILL
    bin.child.wait().unwrap();
    let before = mock.requests().len();
    mock.set_default(Reply::Success);
    let mut bin = start_binary(&config).await;
    // Nothing was answered before the kill, so the restarted process must send every one.
    wait_until("every accepted notification at the mock", || {
        delivered_since(&mock, before).is_superset(&accepted)
    })
    .await;
    let _ = bin.child.kill();
    let _ = bin.child.wait();
}

fn wx_config(mock: &MockWxPusher, extra: &str) -> String {
    format!(
        r#"
global: {{ wxpusher_api_url: "{}" }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs:
      - {{ app_token: AT_primary, uids: [UID_a]{extra} }}
  - name: backup
    wxpusher_configs:
      - {{ app_token: AT_backup, uids: [UID_backup] }}
"#,
        mock.url
    )
}

#[tokio::test]
async fn upstream_outage_is_retried_until_delivered() {
    let mock = MockWxPusher::start().await;
    mock.script([
        Reply::Http(500),
        Reply::Http(502),
        Reply::Http(503),
        Reply::Code(1005, "内部错误"),
    ]);
    let srv = TestServer::start(&wx_config(&mock, "")).await;
    assert_eq!(srv.post("/webhook", one("aaa")).await.0, 200);
    let reqs = mock.wait_for(5, WAIT).await;
    let app = srv.app.clone();
    srv.stop().await;
    // Four failures then the success; nothing more.
    assert_eq!(mock.requests().len(), 5);
    // Every failed attempt was recorded, with its reason, as a retry (the growing backoff
    // itself is `worker::tests::backoff_is_bounded_grows_and_honours_retry_after`).
    let text = app.metrics.encode();
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_deliveries_retried_total{integration="wxpusher"}"#
        ),
        4.0
    );
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_deliveries_failed_total{integration="wxpusher",reason="http_5xx"}"#
        ),
        3.0
    );
    assert!(reqs.iter().all(|r| r.body["uids"] == json!(["UID_a"])));
    assert_eq!(delivered(&mock), BTreeSet::from(["aaa".to_string()]));
}

#[tokio::test]
async fn bad_token_is_dead_lettered_and_replayed_after_the_fix() {
    let mock = MockWxPusher::start().await;
    mock.set_default(Reply::Code(1001, "appToken不正确"));
    let srv = TestServer::start(&wx_config(&mock, "")).await;
    assert_eq!(srv.post("/webhook", one("bbb")).await.0, 200);
    mock.wait_for(1, WAIT).await;
    let store = srv.app.queue.store.clone();
    wait_until("a dead letter", || {
        metric(
            &srv.app.metrics.encode(),
            "alertmanager_wechat_dead_letters",
        ) == 1.0
    })
    .await;
    // Permanent: exactly one attempt.
    assert_eq!(mock.requests().len(), 1);
    let text = srv.app.metrics.encode();
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_notifications_total{receiver="oncall",integration="wxpusher",result="failed"}"#
        ),
        1.0
    );
    let (list, ok) = deadletters(&store, DeadLetterAction::List).await;
    assert!(ok);
    assert!(list.contains("oncall/wxpusher "), "{list}");
    assert!(
        list.contains("wxpusher: error 1001: appToken不正确"),
        "{list}"
    );
    assert!(!list.contains("AT_primary"), "the token leaked: {list}");
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
    assert!(
        ok && shown.contains("attempts: 1") && shown.contains("reason: bad_credentials"),
        "{shown}"
    );
    // The token is fixed upstream; replay delivers it.
    mock.set_default(Reply::Success);
    let (out, ok) = deadletters(&store, DeadLetterAction::Replay(Some(id))).await;
    assert!(ok, "{out}");
    assert_eq!(out, "re-queued 1 dead letters\n");
    mock.wait_for(2, WAIT).await;
    assert_eq!(delivered(&mock), BTreeSet::from(["bbb".to_string()]));
    assert_eq!(store.dead_letter_count().await.unwrap(), 0);
    let (out, _) = deadletters(&store, DeadLetterAction::Replay(Some(id))).await;
    assert_eq!(out, format!("no dead letter {id}\n"));
    srv.stop().await;
}

#[tokio::test]
async fn permanent_failure_goes_once_to_the_fallback_receiver_marked() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(
        &wx_config(&mock, ", fallback_receiver: backup").replace(
            "      - { app_token: AT_backup, uids: [UID_backup] }",
            "      - { app_token: AT_backup, uids: [UID_backup], content: '{{#if fallback}}FALLBACK {{/if}}{{> wxpusher.content}}' }",
        ),
    )
    .await;
    mock.script([Reply::Code(1001, "appToken不正确")]);
    assert_eq!(srv.post("/webhook", one("ccc")).await.0, 200);
    let reqs = mock.wait_for(2, WAIT).await;
    srv.stop().await;
    assert_eq!(mock.requests().len(), 2);
    assert_eq!(reqs[0].body["appToken"], "AT_primary");
    assert_eq!(reqs[1].body["appToken"], "AT_backup");
    assert_eq!(reqs[1].body["uids"], json!(["UID_backup"]));
    let content = reqs[1].body["content"].as_str().unwrap();
    assert!(content.starts_with("FALLBACK "), "{content}");
    assert!(content.contains("instance=i-ccc"), "{content}");
}

#[tokio::test]
async fn fallback_is_never_chained() {
    let mock = MockWxPusher::start().await;
    mock.set_default(Reply::Code(1001, "appToken不正确"));
    let yaml = wx_config(&mock, ", fallback_receiver: backup").replace(
        "[UID_backup] }",
        "[UID_backup], fallback_receiver: oncall }",
    );
    let srv = TestServer::start(&yaml).await;
    assert_eq!(srv.post("/webhook", one("ddd")).await.0, 200);
    mock.wait_for(2, WAIT).await;
    wait_until("two dead letters", || {
        metric(
            &srv.app.metrics.encode(),
            "alertmanager_wechat_dead_letters",
        ) == 2.0
    })
    .await;
    srv.stop().await;
    // The original, then its one fallback copy; the copy's own fallback is not used.
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn fifty_notifications_to_one_token_never_exceed_its_bucket() {
    let mock = MockWxPusher::start().await;
    // Coalescing off (a long threshold) so that every notification is its own request.
    let srv = TestServer::start(&wx_config(
        &mock,
        ", rate_limit: { rate: 20, burst: 2 }, coalesce_after: 1h",
    ))
    .await;
    for i in 0..50 {
        assert_eq!(srv.post("/webhook", one(&format!("r{i:02}"))).await.0, 200);
    }
    let reqs = mock.wait_for(50, WAIT).await;
    srv.stop().await;
    let times: Vec<_> = reqs.iter().map(|r| r.at).collect();
    // In any window of T seconds at most burst + rate·T requests (plus arrival jitter).
    for i in 0..times.len() {
        for j in i..times.len() {
            let window = times[j].duration_since(times[i]).as_secs_f64() + JITTER;
            assert!(
                (j - i + 1) as f64 <= 2.0 + 20.0 * window,
                "{} requests within {window}s",
                j - i + 1
            );
        }
    }
    assert_eq!(delivered(&mock).len(), 50);
}

#[tokio::test]
async fn storm_is_merged_into_digests_that_keep_every_alert_critical_first() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start_with(
        &wx_config(
            &mock,
            ", rate_limit: { rate: 5, burst: 1 }, coalesce_after: 1s",
        ),
        fast_retries(),
    )
    .await;
    // 2000 alerts in 300 groups, posted as fast as the server takes them.
    let mut all = BTreeSet::new();
    let mut n = 0;
    for g in 0..300 {
        let count = if g < 200 { 7 } else { 6 };
        let alerts: Vec<(String, &str, &str, &str)> = (0..count)
            .map(|k| {
                n += 1;
                let fp = format!("s{n:04}");
                all.insert(fp.clone());
                let (sev, status) = match n % 10 {
                    0 => ("critical", "firing"),
                    1..=6 => ("warning", "firing"),
                    _ => ("info", "resolved"),
                };
                (
                    fp,
                    if k % 2 == 0 { "DiskFull" } else { "HighLoad" },
                    sev,
                    status,
                )
            })
            .collect();
        assert_eq!(
            srv.post("/webhook", payload(&format!("g{g}"), &alerts))
                .await
                .0,
            200
        );
    }
    assert_eq!(all.len(), 2000);
    wait_until("every alert delivered", || {
        delivered(&mock).is_superset(&all)
    })
    .await;
    let reqs = mock.requests();
    srv.stop().await;
    // Far fewer requests than notifications, and never faster than the bucket.
    assert!(reqs.len() < 100, "{} requests", reqs.len());
    let times: Vec<_> = reqs.iter().map(|r| r.at).collect();
    for i in 0..times.len() {
        for j in i..times.len() {
            // Arrival times at the mock carry scheduling jitter on a loaded machine; the exact
            // bound is proven on tokio's paused clock in `delivery::ratelimit`.
            let window = times[j].duration_since(times[i]).as_secs_f64() + JITTER;
            assert!(
                (j - i + 1) as f64 <= 1.0 + 5.0 * window,
                "{} requests within {window}s",
                j - i + 1
            );
        }
    }
    // A digest says what it holds and lists critical firing alerts first.
    let digest = reqs
        .iter()
        .filter_map(|r| r.body["content"].as_str())
        .find(|c| c.contains(" alerts: "))
        .expect("a digest message");
    // A long digest is split into numbered parts; the digest line opens its first part.
    let line = digest
        .lines()
        .find(|l| l.contains(" alerts: "))
        .expect("the digest line");
    assert!(
        line.contains("firing,") && line.contains("resolved · "),
        "{line}"
    );
    let crit = digest.find("`critical`").expect("a critical alert");
    let warn = digest.find("`warning`").expect("a warning alert");
    assert!(crit < warn, "critical after warning in the digest");
}
