//! Several replicas of the real binary on one `redis-server`: a replica killed with
//! `kill -9` loses nothing (another takes its deliveries over), and a rate limit holds for
//! all replicas together.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::process::Daemon;
use crate::support::redis::RedisServer;
use crate::support::wxpusher::{MockWxPusher, Recorded};

const BIN: &str = env!("CARGO_BIN_EXE_alertmanager-wechat");

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

/// Fingerprints named in the requests' contents.
fn fingerprints(reqs: &[Recorded]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for r in reqs {
        let content = r.body["content"].as_str().unwrap_or("");
        for word in content.split(|c: char| c.is_whitespace() || c == ',' || c == '`') {
            if let Some(fp) = word.strip_prefix("instance=i-") {
                out.insert(fp.to_string());
            }
        }
    }
    out
}

/// A replica sending to `mock` with the shared Redis as its store.
async fn replica(name: &'static str, redis: &RedisServer, mock: &MockWxPusher, wx: &str) -> Daemon {
    replica_with(name, redis, mock, wx, "").await
}

async fn replica_with(
    name: &'static str,
    redis: &RedisServer,
    mock: &MockWxPusher,
    wx: &str,
    dedupe: &str,
) -> Daemon {
    let config = format!(
        r#"
global: {{ wxpusher_api_url: "{}" }}
dedupe: {{ {dedupe} }}
storage:
  path: $DIR/data
  redis_url: "{}"
  redis_prefix: "ha-test:"
  redis_visibility_timeout: 2s
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs:
      - {{ app_token: AT_shared_token, uids: [UID_a]{wx} }}
"#,
        mock.url, redis.url
    );
    Daemon::start(
        name,
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

async fn post(url: &str, body: String) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/webhook"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_killed_replicas_deliveries_are_taken_over_by_another() {
    alertmanager_wechat::runtime::install_tls_provider();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // Each replica has its own upstream so that the test sees who delivered: A's hangs.
    let upstream_a = MockWxPusher::start().await;
    upstream_a.hold();
    let upstream_b = MockWxPusher::start().await;
    let fast = ", rate_limit: { rate: 1000, burst: 1000 }";
    let a = replica("replica-a", &redis, &upstream_a, fast).await;
    let b = replica("replica-b", &redis, &upstream_b, fast).await;
    let mut accepted = BTreeSet::new();
    for i in 0..30 {
        let fp = format!("k{i:02}");
        assert_eq!(post(&a.url, one(&fp)).await, 200, "{}", a.log());
        accepted.insert(fp);
    }
    // A claims what it accepted at once (B looks every second): its deliveries hang.
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream_a.requests().len() < 10 {
        assert!(Instant::now() < deadline, "A sends nothing\n{}", a.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let in_flight_at_a = upstream_a.requests();
    drop(a); // kill -9
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fingerprints(&upstream_b.requests()).is_superset(&accepted) {
        assert!(
            Instant::now() < deadline,
            "not taken over: B delivered {:?} of {accepted:?}\n{}",
            fingerprints(&upstream_b.requests()),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Including everything A had in flight when it died.
    assert!(fingerprints(&in_flight_at_a).is_subset(&fingerprints(&upstream_b.requests())));
    assert!(!in_flight_at_a.is_empty());
}

#[tokio::test]
async fn two_replicas_together_keep_one_rate_limit() {
    alertmanager_wechat::runtime::install_tls_provider();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let upstream_a = MockWxPusher::start().await;
    let upstream_b = MockWxPusher::start().await;
    // Coalescing off, so every notification is its own request.
    let limited = ", rate_limit: { rate: 5, burst: 2 }, coalesce_after: 1h";
    let a = replica("replica-a", &redis, &upstream_a, limited).await;
    let b = replica("replica-b", &redis, &upstream_b, limited).await;
    let n = 30;
    let posts = (0..n).map(|i| {
        let url = if i % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        async move { post(&url, one(&format!("r{i:02}"))).await }
    });
    for status in futures_util::future::join_all(posts).await {
        assert_eq!(status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while upstream_a.requests().len() + upstream_b.requests().len() < n {
        assert!(Instant::now() < deadline, "not all delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ra, rb) = (upstream_a.requests(), upstream_b.requests());
    // Both replicas sent: the limit was shared, not one replica doing all the work.
    assert!(
        !ra.is_empty() && !rb.is_empty(),
        "{} / {}",
        ra.len(),
        rb.len()
    );
    let mut times: Vec<Instant> = ra.iter().chain(&rb).map(|r| r.at).collect();
    times.sort();
    // In any window of T seconds at most burst + rate·T requests, plus arrival jitter.
    const JITTER: f64 = 0.1;
    for i in 0..times.len() {
        for j in i..times.len() {
            let window = times[j].duration_since(times[i]).as_secs_f64() + JITTER;
            assert!(
                (j - i + 1) as f64 <= 2.0 + 5.0 * window,
                "{} requests within {window}s",
                j - i + 1
            );
        }
    }
    let mut all = ra.clone();
    all.extend(rb);
    assert_eq!(fingerprints(&all).len(), n);
    // Together they took about (n - burst) / rate seconds, not half of it.
    let span = times[n - 1].duration_since(times[0]).as_secs_f64();
    assert!(span >= (n as f64 - 2.0) / 5.0 - JITTER, "{span}s");
}

/// Polls `GET /-/ready` until it answers `status` (readiness follows a ping every second).
async fn ready_becomes(srv: &crate::support::TestServer, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = srv.get("/-/ready").await.0;
        if got == status {
            return;
        }
        assert!(Instant::now() < deadline, "/-/ready stays {got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_down_is_503_and_not_ready_until_it_is_back() {
    alertmanager_wechat::runtime::install_tls_provider();
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let mock = MockWxPusher::start().await;
    let srv = crate::support::TestServer::start(&crate::support::one_receiver(
        &mock,
        &format!("storage: {{ path: $DATA, redis_url: \"{}\" }}", redis.url),
    ))
    .await;
    ready_becomes(&srv, 200).await;
    assert_eq!(srv.post("/webhook", one("up1")).await.0, 200);
    mock.wait_for(1, Duration::from_secs(10)).await;
    redis.kill();
    // Not stored, so not accepted: Alertmanager keeps it and retries.
    let (status, body) = srv.post("/webhook", one("down1")).await;
    assert_eq!(
        (status, body.as_str()),
        (503, "cannot store the notification, retry later\n")
    );
    ready_becomes(&srv, 503).await;
    assert_eq!(srv.get("/-/ready").await.1, "store unavailable\n");
    redis.restart().await;
    ready_becomes(&srv, 200).await;
    assert_eq!(srv.post("/webhook", one("up2")).await.0, 200);
    let reqs = mock.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(
        fingerprints(&reqs),
        ["up1", "up2"].iter().map(|s| s.to_string()).collect()
    );
}

/// Waits until nothing is queued or in flight on the shared store.
async fn drained(redis: &RedisServer) {
    let storage = alertmanager_wechat::config::StorageConfig {
        redis_url: Some(alertmanager_wechat::secret::Secret::new(redis.url.clone())),
        redis_prefix: "ha-test:".into(),
        ..Default::default()
    };
    let store = alertmanager_wechat::store::Store::admin_from_config(&storage).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !store.depth().await.unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "still queued: {:?}",
            store.depth().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn summaries(reqs: &[Recorded]) -> Vec<String> {
    reqs.iter()
        .map(|r| r.body["summary"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn the_same_payload_posted_to_two_replicas_at_once_is_sent_once() {
    alertmanager_wechat::runtime::install_tls_provider();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let upstream = MockWxPusher::start().await;
    let opts = ", rate_limit: { rate: 1000, burst: 1000 }";
    let a = replica("replica-a", &redis, &upstream, opts).await;
    let b = replica("replica-b", &redis, &upstream, opts).await;
    for round in 0..5 {
        // As two clustered Alertmanagers would: one payload to each replica, at the same time.
        let body = one(&format!("same{round}"));
        let (sa, sb) = tokio::join!(post(&a.url, body.clone()), post(&b.url, body));
        assert_eq!((sa, sb), (200, 200));
    }
    drained(&redis).await;
    let reqs = upstream.requests();
    assert_eq!(reqs.len(), 5, "{:?}", summaries(&reqs));
    assert_eq!(fingerprints(&reqs).len(), 5);
}

#[tokio::test]
async fn resolved_alerts_accepted_by_two_replicas_go_out_as_one_message() {
    alertmanager_wechat::runtime::install_tls_provider();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let upstream = MockWxPusher::start().await;
    let resolved = |fp: &str| {
        one(fp)
            .replace("\"status\":\"firing\"", "\"status\":\"resolved\"")
            .replace("0001-01-01T00:00:00Z", "2026-11-25T08:42:00Z")
    };
    let opts = ", rate_limit: { rate: 1000, burst: 1000 }";
    let a = replica_with(
        "replica-a",
        &redis,
        &upstream,
        opts,
        "resolved_group_wait: 2s",
    )
    .await;
    let b = replica_with(
        "replica-b",
        &redis,
        &upstream,
        opts,
        "resolved_group_wait: 2s",
    )
    .await;
    assert_eq!(post(&a.url, resolved("ra")).await, 200);
    assert_eq!(post(&b.url, resolved("rb")).await, 200);
    assert_eq!(post(&a.url, resolved("rc")).await, 200);
    drained(&redis).await;
    let reqs = upstream.requests();
    assert_eq!(reqs.len(), 1, "{:?}", summaries(&reqs));
    assert_eq!(
        fingerprints(&reqs),
        ["ra", "rb", "rc"].iter().map(|s| s.to_string()).collect()
    );
}
