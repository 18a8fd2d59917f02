//! The shared store on Redis with Sentinel survives its own failover: the real binary is
//! given a stream of distinct notifications, the master is killed with `kill -9` in the
//! middle of it, and every notification answered 200 is delivered at least once. Deliveries
//! in flight when the master dies (claimed on it, held by the upstream, then failed) are
//! delivered again after the failover. The run prints how long the failover took, how long
//! the webhook answered 503, and how many notifications went out more than once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::support::process::Daemon;
use crate::support::sentinel::{Group, MASTER_NAME};
use crate::support::wxpusher::{MockWxPusher, Recorded, Reply};

const BIN: &str = env!("CARGO_BIN_EXE_alertmanager-wechat");

/// Notifications posted in all; the master is killed once a third of them were accepted.
const TOTAL: usize = 90;
const KILL_AFTER: usize = 30;
/// Notifications accepted just before the kill while the upstream holds every request.
const IN_FLIGHT: usize = 5;

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

/// How many times each fingerprint was sent successfully: every request outside the time
/// `failing` during which the upstream answered 500.
fn sent(reqs: &[Recorded], failing: (Instant, Instant)) -> BTreeMap<String, usize> {
    let ok: Vec<&Recorded> = reqs
        .iter()
        .filter(|r| r.at < failing.0 || r.at >= failing.1)
        .collect();
    mentioned(ok)
}

/// How many requests name each fingerprint.
fn mentioned<'a>(reqs: impl IntoIterator<Item = &'a Recorded>) -> BTreeMap<String, usize> {
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

    // The promotion is known from the sentinels' own announcement: the first of the three to
    // publish it (the others learn it from the leader a little later).
    let (announced, mut promoted) = tokio::sync::mpsc::unbounded_channel();
    for s in &group.sentinels {
        let client = redis::Client::open(format!("redis://{}", s.address())).unwrap();
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .unwrap_or_else(|e| panic!("subscribing to {}: {e}", s.name));
        pubsub.subscribe("+switch-master").await.unwrap();
        let announced = announced.clone();
        tokio::spawn(async move {
            let mut messages = pubsub.on_message();
            while let Some(m) = messages.next().await {
                let payload: String = m.get_payload().unwrap_or_default();
                if payload.starts_with(MASTER_NAME) {
                    let _ = announced.send((Instant::now(), payload));
                    return;
                }
            }
        });
    }
    drop(announced);

    let mut accepted = BTreeSet::new();
    let (mut failing_from, mut failing_until, mut held) = (None, None, Vec::new());
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
            // Deliveries in flight on the master that dies: the upstream holds them, and
            // answers 500 once the master is gone, so they must be delivered again.
            mock.set_default(Reply::Http(500));
            mock.hold();
            failing_from = Some(Instant::now());
            let before = mock.requests().len();
            for extra in 0..IN_FLIGHT {
                let fp = format!("held{extra}");
                let (status, _) = post(&client, &svc.url, one(&fp)).await;
                assert_eq!(status, 200, "{}", svc.log());
                accepted.insert(fp);
            }
            let waiting = Instant::now() + Duration::from_secs(30);
            while mock.requests().len() <= before {
                assert!(Instant::now() < waiting, "nothing in flight\n{}", svc.log());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            held = mock.requests()[before..].to_vec();
            group.data[0].kill();
            killed_at = Some(Instant::now());
            mock.release();
        }
        if killed_at.is_some() && first_accept_after_kill.is_some() && failing_until.is_none() {
            // The upstream heals once the service accepts again: requests recorded from now
            // on are answered 200 (the hold makes sure none recorded earlier is).
            mock.hold();
            failing_until = Some(Instant::now());
            mock.set_default(Reply::Success);
            mock.release();
        }
    }
    let failing = (
        failing_from.expect("the upstream failed"),
        failing_until.expect("the upstream healed"),
    );
    assert!(!held.is_empty());
    let killed_at = killed_at.expect("the master was killed");
    let first_accept = first_accept_after_kill.expect("accepted again after the kill");

    let (promoted_at, announcement) =
        tokio::time::timeout(Duration::from_secs(60), promoted.recv())
            .await
            .expect("no +switch-master within 60s")
            .expect("every subscription ended without a +switch-master");
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
        let counts = sent(&mock.requests(), failing);
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

    let counts = sent(&mock.requests(), failing);
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    let twice: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(f, _)| f)
        .collect();
    let held: Vec<String> = mentioned(&held).into_keys().collect();
    let window = first_refusal_after_kill.map(|r| first_accept - r);
    println!(
        "sentinel failover: promotion {:.2?} after kill -9; accepting again {:.2?} after the kill \
         ({:+.0} ms from the first +switch-master); 503 window {:.2?} ({refusals} refused posts, \
         slowest {:.2?}); {} accepted, all delivered; {duplicates} duplicate sends {twice:?}; \
         in flight on the lost master and delivered again: {held:?}",
        promoted_at - killed_at,
        first_accept - killed_at,
        (first_accept - killed_at).as_secs_f64() * 1000.0
            - (promoted_at - killed_at).as_secs_f64() * 1000.0,
        window.unwrap_or_default(),
        slowest_refusal,
        accepted.len(),
    );
}

/// With `redis_wait_replicas`, a notification is answered 200 only once a replica has it:
/// on a Redis without replicas the webhook answers 503 (counted in
/// `redis_wait_timeouts_total`) and nothing is delivered; once a replica is attached, 200.
#[tokio::test]
async fn without_a_replica_to_confirm_nothing_is_accepted() {
    alertmanager_wechat::runtime::install_tls_provider();
    let Some(master) = crate::support::redis::RedisServer::start().await else {
        return;
    };
    let mock = MockWxPusher::start().await;
    let config = format!(
        r#"
global: {{ wxpusher_api_url: "{}" }}
storage:
  path: $DIR/data
  redis_url: "{}"
  redis_prefix: "wait-test:"
  redis_wait_replicas: 1
  redis_wait_timeout: 200ms
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs:
      - {{ app_token: AT_shared_token, uids: [UID_a] }}
"#,
        mock.url, master.url
    );
    let svc = Daemon::start(
        "service",
        Path::new(BIN),
        &[("config.yml", config)],
        &[
            "--config.file=$DIR/config.yml",
            "--web.listen-address=127.0.0.1:$PORT",
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let (status, took) = post(&client, &svc.url, one("w1")).await;
    assert_eq!(status, 503, "{}", svc.log());
    assert!(took < Duration::from_secs(10), "{took:?}");
    // Counted (the delivery's outcome, unconfirmed as well, may count more).
    let (_, metrics) = get(&client, &format!("{}/metrics", svc.url)).await;
    let timeouts: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("alertmanager_wechat_redis_wait_timeouts_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no redis_wait_timeouts_total\n{metrics}"));
    assert!(timeouts >= 1, "{metrics}");

    // A replica attaches: the same notification, sent again, is accepted and delivered.
    let Some(replica) = crate::support::redis::RedisServer::start().await else {
        return;
    };
    let mut conn = redis::Client::open(replica.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(master.port)
        .query_async(&mut conn)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = post(&client, &svc.url, one("w1")).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            Instant::now() < deadline,
            "still refused with a replica\n{}",
            svc.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered = mock.wait_for(1, Duration::from_secs(30)).await;
    assert!(
        delivered[0].body["content"]
            .as_str()
            .is_some_and(|c| c.contains("instance=i-w1"))
    );
}
