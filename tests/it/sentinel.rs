//! The shared store on Redis with Sentinel survives its own failover: the real binary is
//! given a stream of distinct notifications, the master is killed with `kill -9` in the
//! middle of it, and every notification answered 200 is delivered at least once. The run
//! prints how long the failover took, how long the webhook answered 503, and how many
//! notifications went out more than once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::support::process::Daemon;
use crate::support::sentinel::{Group, MASTER_NAME};
use crate::support::wxpusher::{MockWxPusher, Recorded};

const BIN: &str = env!("CARGO_BIN_EXE_alertmanager-wechat");

/// Notifications posted in all; the master is killed once a third of them were accepted.
const TOTAL: usize = 90;
const KILL_AFTER: usize = 30;

/// One alert, fingerprint `fp`, shown as `instance=i-<fp>` in the message.
fn one(fp: &str) -> String {
    json!({"receiver": "wechat", "status": "firing",
        "alerts": [{"status": "firing",
            "labels": {"alertname": "HighCPU", "severity": "critical", "instance": format!("i-{fp}"), "group": fp},
            "annotations": {"summary": "cpu"},
            "startsAt": "2026-11-25T08:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph", "fingerprint": fp}],
        "groupLabels": {"group": fp}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "version": "4",
        "groupKey": format!("{{}}:{{group=\"{fp}\"}}"), "truncatedAlerts": 0})
    .to_string()
}

/// How many times each fingerprint was sent.
fn sent(reqs: &[Recorded]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in reqs {
        let content = r.body["content"].as_str().unwrap_or("");
        for word in content.split(|c: char| c.is_whitespace() || c == ',' || c == '`') {
            if let Some(fp) = word.strip_prefix("instance=i-") {
                *out.entry(fp.to_string()).or_default() += 1;
            }
        }
    }
    out
}

async fn service(group: &Group, mock: &MockWxPusher) -> Daemon {
    let sentinels = group
        .sentinel_addresses()
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!(
        r#"
global: {{ wxpusher_api_url: "{}" }}
storage:
  path: $DIR/data
  redis_sentinel:
    master_name: {MASTER_NAME}
    sentinels: [ {sentinels} ]
  redis_prefix: "sentinel-test:"
  redis_visibility_timeout: 2s
  redis_wait_replicas: 1
  redis_wait_timeout: 500ms
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs:
      - {{ app_token: AT_shared_token, uids: [UID_a], rate_limit: {{ rate: 1000, burst: 1000 }} }}
"#,
        mock.url
    );
    Daemon::start(
        "service",
        Path::new(BIN),
        &[("config.yml", config)],
        &[
            "--config.file=$DIR/config.yml",
            "--web.listen-address=127.0.0.1:$PORT",
            "--log.level=info",
        ],
    )
    .await
}

/// One POST as Alertmanager makes it: the status (0 when no answer came) and how long it took.
async fn post(client: &reqwest::Client, url: &str, body: String) -> (u16, Duration) {
    let start = Instant::now();
    let status = client
        .post(format!("{url}/webhook"))
        .header("content-type", "application/json")
        .body(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    (status, start.elapsed())
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    match client
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_loses_nothing_accepted() {
    alertmanager_wechat::runtime::install_tls_provider();
    let Some(mut group) = Group::start().await else {
        return;
    };
    let mock = MockWxPusher::start().await;
    let svc = service(&group, &mock).await;
    let client = reqwest::Client::new();
    let first_master = group.data[0].address();
    let (status, text) = get(&client, &format!("{}/-/ready", svc.url)).await;
    assert_eq!(
        (status, text.as_str()),
        (
            200,
            format!("ready: redis master {first_master}\n").as_str()
        )
    );

    // The promotion is known from the sentinels' own announcement.
    let announcer = group.sentinels[1].address();
    let switch = redis::Client::open(format!("redis://{announcer}"))
        .unwrap()
        .get_async_pubsub()
        .await;
    let mut pubsub = switch.unwrap_or_else(|e| panic!("subscribing to a sentinel: {e}"));
    pubsub.subscribe("+switch-master").await.unwrap();
    let promoted = tokio::spawn(async move {
        let mut messages = pubsub.on_message();
        while let Some(m) = messages.next().await {
            let payload: String = m.get_payload().unwrap_or_default();
            if payload.starts_with(MASTER_NAME) {
                return Some((Instant::now(), payload));
            }
        }
        None
    });

    let mut accepted = BTreeSet::new();
    let mut killed_at = None;
    let mut first_refusal_after_kill: Option<Instant> = None;
    let mut first_accept_after_kill: Option<Instant> = None;
    let mut refusals = 0usize;
    let mut slowest_refusal = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..TOTAL {
        let fp = format!("n{i:03}");
        // Retried until accepted, as Alertmanager retries a 5xx.
        loop {
            assert!(
                Instant::now() < deadline,
                "{fp} never accepted\n{}\n{}",
                svc.log(),
                group.logs()
            );
            let (status, took) = post(&client, &svc.url, one(&fp)).await;
            match status {
                200 => {
                    if killed_at.is_some() && first_accept_after_kill.is_none() {
                        first_accept_after_kill = Some(Instant::now());
                    }
                    accepted.insert(fp.clone());
                    break;
                }
                503 | 0 => {
                    refusals += 1;
                    slowest_refusal = slowest_refusal.max(took);
                    if killed_at.is_some() && first_refusal_after_kill.is_none() {
                        first_refusal_after_kill = Some(Instant::now() - took);
                    }
                    // Alertmanager's pace between retries, not a synchronisation.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!("{fp}: unexpected {other}\n{}", svc.log()),
            }
        }
        if accepted.len() == KILL_AFTER {
            group.data[0].kill();
            killed_at = Some(Instant::now());
        }
    }
    let killed_at = killed_at.expect("the master was killed");
    let first_accept = first_accept_after_kill.expect("accepted again after the kill");

    let (promoted_at, announcement) = tokio::time::timeout(Duration::from_secs(60), promoted)
        .await
        .expect("no +switch-master within 60s")
        .expect("the subscription task")
        .expect("the subscription ended without a +switch-master");
    let new_master = group.master().await.expect("the sentinels name a master");
    assert_ne!(new_master, first_master, "{announcement}");

    // Accepting again within 10 s of the promotion (it may even come before the
    // announcement reaches this test).
    assert!(
        first_accept <= promoted_at + Duration::from_secs(10),
        "accepting again {:?} after the promotion\n{}",
        first_accept - promoted_at,
        svc.log()
    );
    // No answer hung beyond the operation timeout (5 s plus the 500 ms WAIT).
    assert!(
        slowest_refusal < Duration::from_secs(10),
        "a refusal took {slowest_refusal:?}"
    );

    // Every notification answered 200 is delivered at least once.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let counts = sent(&mock.requests());
        let missing: Vec<&String> = accepted
            .iter()
            .filter(|fp| !counts.contains_key(*fp))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "accepted but never delivered: {missing:?}\n{}\n{}",
            svc.log(),
            group.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The ready page names the new master, and the failover was counted.
    let (status, text) = get(&client, &format!("{}/-/ready", svc.url)).await;
    assert_eq!(
        (status, text.as_str()),
        (200, format!("ready: redis master {new_master}\n").as_str())
    );
    let (_, metrics) = get(&client, &format!("{}/metrics", svc.url)).await;
    assert!(
        metrics.contains("alertmanager_wechat_redis_failovers_total 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("alertmanager_wechat_redis_wait_timeouts_total "));

    let counts = sent(&mock.requests());
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    let twice: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(f, _)| f)
        .collect();
    let window = first_refusal_after_kill.map(|r| first_accept - r);
    println!(
        "sentinel failover: promotion {:.2?} after kill -9; accepting again {:.2?} after the kill \
         ({:.2?} after the promotion was announced); 503 window {:.2?} ({refusals} refused posts, \
         slowest {:.2?}); {} accepted, all delivered; {duplicates} duplicate sends {twice:?}",
        promoted_at - killed_at,
        first_accept - killed_at,
        first_accept.saturating_duration_since(promoted_at),
        window.unwrap_or_default(),
        slowest_refusal,
        accepted.len(),
    );
}
