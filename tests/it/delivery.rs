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

/// Alerts shown in full in these requests.
fn delivered_since_of(reqs: &[crate::support::wxpusher::Recorded]) -> usize {
    reqs.iter()
        .map(|r| {
            r.body["content"]
                .as_str()
                .unwrap_or("")
                .matches("instance=i-")
                .count()
        })
        .sum()
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
    // The tests' HTTP clients need the process's TLS provider; a test that starts only the
    // binary installs nothing else that would set it.
    alertmanager_wechat::runtime::install_tls_provider();
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
    kill_9_case("").await;
}

/// The same with every webhook appended before its answer and routed after it: the kill lands
/// with some routed and delivering, others maybe still appended; all are sent after the start.
#[tokio::test]
async fn kill_9_loses_no_appended_webhook_that_was_answered_200() {
    kill_9_case(", accept_inline: 0").await;
}

async fn kill_9_case(storage: &str) {
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
storage: {{ path: "{}"{storage} }}
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
            let text = r.text().await.unwrap();
            if !storage.is_empty() {
                assert_eq!(text, "accepted; routed after this answer\n", "appended");
            }
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
async fn storm_is_merged_into_bounded_digests_that_count_every_alert_critical_first() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start_with(
        // A held request must not time out and be sent again while the storm is posted.
        &wx_config(
            &mock,
            ", rate_limit: { rate: 5, burst: 1 }, coalesce_after: 1s",
        )
        .replace("global: { ", "global: { http_timeout: 5m, "),
        fast_retries(),
    )
    .await;
    // 2000 alerts in 300 groups, posted as fast as the server takes them, while WxPusher
    // answers nothing: the backlog builds up behind it whatever the machine's speed.
    mock.hold();
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
    mock.release();
    // Each alert is sent in full or counted in a digest's line ("N alerts in …").
    let accounted = |reqs: &[crate::support::wxpusher::Recorded]| -> u64 {
        let mut n = 0;
        for r in reqs {
            let c = r.body["content"].as_str().unwrap_or("");
            match c.lines().find(|l| l.contains(" alerts in ")) {
                Some(line) => n += line.split(' ').next().unwrap().parse::<u64>().unwrap(),
                None => n += delivered_since_of(std::slice::from_ref(r)) as u64,
            }
        }
        n
    };
    wait_until("every alert accounted for", || {
        accounted(&mock.requests()) >= 2000
    })
    .await;
    let reqs = mock.requests();
    assert_eq!(accounted(&reqs), 2000, "an alert counted twice");
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
    // A digest says what it holds, keeps a bounded number of alerts in full and lists
    // critical firing alerts first.
    let digest = reqs
        .iter()
        .filter_map(|r| r.body["content"].as_str())
        .filter(|c| c.contains(" alerts in "))
        .max_by_key(|c| c.len())
        .expect("a digest message");
    let line = digest
        .lines()
        .find(|l| l.contains(" alerts in "))
        .expect("the digest line");
    assert!(
        line.contains("firing,") && line.contains("resolved · ") && line.contains("groups: "),
        "{line}"
    );
    let full = digest.matches("instance=i-").count();
    assert!(full <= 20, "{full} alerts in full in one digest");
    let crit = digest.find("`critical`").expect("a critical alert");
    let warn = digest.find("`warning`").expect("a warning alert");
    assert!(crit < warn, "critical after warning in the digest");
}

/// One notification the process dies on, again and again (the upstream hangs and the process
/// is killed while it waits, as it would be by the OOM killer): after three runs that never
/// ended it is a dead letter, without another send, and the queue moves on.
#[tokio::test]
async fn a_notification_the_process_dies_on_three_times_is_a_dead_letter() {
    let mock = MockWxPusher::start().await;
    mock.set_default(Reply::Slow(Duration::from_secs(60)));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            r#"
global: {{ wxpusher_api_url: "{}" }}
storage: {{ path: "{}" }}
dedupe: {{ window: 0s, resolved_group_wait: 0s }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs: [ {{ app_token: AT_poison, uids: [UID_a] }} ]
"#,
            mock.url,
            data.display()
        ),
    )
    .unwrap();
    let mut bin = start_binary(&config).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/webhook", bin.url))
        .body(one("poison"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for run in 1..=3 {
        wait_until("the attempt at the mock", || mock.requests().len() >= run).await;
        bin.child.kill().unwrap(); // SIGKILL, mid-attempt
        bin.child.wait().unwrap();
        if run < 3 {
            bin = start_binary(&config).await;
        }
    }
    mock.set_default(Reply::Success);
    let mut bin = start_binary(&config).await;
    let store = alertmanager_wechat::store::Store::open_admin(&data).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let dead = store.dead_letters().await.unwrap();
        if !dead.is_empty() {
            break dead;
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason.as_deref(), Some("crashed"));
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("stopped 3 times"),
        "{:?}",
        dead[0].last_error
    );
    assert_eq!(
        mock.requests().len(),
        3,
        "sent again after three runs died on it"
    );
    // The queue moves on.
    let r = client
        .post(format!("{}/webhook", bin.url))
        .body(one("next"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_until("the next notification", || {
        delivered(&mock).contains("next")
    })
    .await;
    let _ = bin.child.kill();
    let _ = bin.child.wait();
}

/// While the store refuses every write (a full disk): what is due is still delivered, nothing
/// is delivered twice, readiness and webhooks answer 503; when writes work again, the
/// outcomes are recorded and readiness comes back, without a restart.
#[tokio::test]
async fn a_store_that_refuses_writes_is_recovered_from_without_a_restart() {
    let mock = MockWxPusher::start().await;
    mock.set_default(Reply::Http(500));
    let srv = TestServer::start(&format!(
        r#"
global: {{ wxpusher_api_url: "{}" }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs: [ {{ app_token: AT_disk, uids: [UID_a], max_attempts: 100000 }} ]
"#,
        mock.url
    ))
    .await;
    let fps = ["d1", "d2", "d3"];
    for fp in fps {
        assert_eq!(srv.post("/webhook", one(fp)).await.0, 200);
    }
    wait_until("failed attempts", || mock.requests().len() >= 6).await;
    let alertmanager_wechat::store::Store::Sqlite(sqlite) = &srv.app.queue.store else {
        panic!("this test runs on SQLite");
    };
    // Park the next attempt of every job at the mock, so that none is between its answer and
    // its record when writes start to fail (that one would wait, claimed, for the store).
    mock.hold();
    let before = mock.requests().len();
    wait_until("every job's next attempt", || {
        delivered_since(&mock, before).len() == fps.len()
    })
    .await;
    alertmanager_wechat::store::sqlite::testing::refuse_writes(sqlite, true)
        .await
        .unwrap();
    mock.set_default(Reply::Success);
    mock.release();
    // Delivered although nothing can be written: the parked attempts are answered 200.
    mock.wait_for(before + fps.len(), Duration::from_secs(30))
        .await;
    let (status, _) = srv.post("/webhook", one("d4")).await;
    assert_eq!(status, 503);
    assert_eq!(srv.get("/-/ready").await.0, 503);
    // Not handed out again while their outcome waits to be recorded.
    let sent = mock.requests().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        mock.requests().len(),
        sent,
        "delivered again while writes were refused"
    );
    alertmanager_wechat::store::sqlite::testing::refuse_writes(sqlite, false)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let depth = srv.app.queue.store.depth().await.unwrap();
        if depth.is_empty() && srv.get("/-/ready").await.0 == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not recovered: {depth:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each was delivered exactly once.
    let successes: Vec<String> = mock.requests()[before..]
        .iter()
        .filter_map(|r| r.body["content"].as_str().map(String::from))
        .collect();
    for fp in fps {
        let n = successes
            .iter()
            .filter(|c| c.contains(&format!("instance=i-{fp}")))
            .count();
        assert_eq!(n, 1, "{fp} was sent {n} times");
    }
    srv.stop().await;
}
