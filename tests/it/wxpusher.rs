//! The exact requests WxPusher receives.

use std::time::Duration;

use serde_json::json;

use crate::support::wxpusher::{MockWxPusher, Reply};
use crate::support::{TestServer, example, metric};

const WAIT: Duration = Duration::from_secs(5);

fn receiver(mock: &MockWxPusher, wx: &str) -> String {
    format!(
        r#"
global: {{ wxpusher_api_url: "{}", timezone: Asia/Shanghai }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs:
      - {wx}
"#,
        mock.url
    )
}

#[tokio::test]
async fn firing_alertmanager_payload_becomes_one_markdown_message() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&receiver(
        &mock,
        "{app_token: AT_test_token, uids: [UID_a, UID_b], topic_ids: [42]}",
    ))
    .await;
    let (code, _) = srv
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!(code, 200);
    let reqs = mock.wait_for(1, WAIT).await;
    let b = &reqs[0].body;
    assert_eq!(b["appToken"], "AT_test_token");
    assert_eq!(b["contentType"], 3);
    assert_eq!(b["uids"], json!(["UID_a", "UID_b"]));
    assert_eq!(b["topicIds"], json!([42]));
    assert_eq!(b["summary"], "🔥【告警】HighCPU ×2");
    assert_eq!(b["url"], "http://alertmanager:9093");
    let content = b["content"].as_str().unwrap();
    assert!(content.starts_with("## 🔥 告警中 2 条"), "{content}");
    assert!(content.contains("> CPU 使用率超过 90%"), "{content}");
    assert!(content.contains("- 开始：2026-11-25 16:00:00"), "{content}");
    assert!(content.contains("instance=node-2:9100"), "{content}");
    assert!(
        content.contains("[查看来源](http://prometheus:9090/graph?g0.expr=cpu_usage+%3E+0.9)"),
        "{content}"
    );
    assert_eq!(reqs[0].headers["content-type"], "application/json");
    srv.stop().await;
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn resolved_payload_shows_how_long_it_lasted() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&receiver(
        &mock,
        "{app_token: AT_test_token, uids: [UID_a]}",
    ))
    .await;
    srv.post("/webhook", example("alertmanager-resolved.json"))
        .await;
    let reqs = mock.wait_for(1, WAIT).await;
    let b = &reqs[0].body;
    assert_eq!(b["summary"], "✅【已恢复】HighCPU node-…");
    let content = b["content"].as_str().unwrap();
    assert!(content.starts_with("## ✅ 已恢复 1 条"), "{content}");
    assert!(
        content.contains("- 恢复：2026-11-25 16:42:00（持续 42分钟）"),
        "{content}"
    );
    assert!(!content.contains("告警中"), "{content}");
}

#[tokio::test]
async fn send_resolved_false_drops_resolved_alerts() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&receiver(
        &mock,
        "{app_token: AT_test_token, uids: [UID_a], send_resolved: false}",
    ))
    .await;
    srv.post("/webhook", example("alertmanager-resolved.json"))
        .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    let reqs = mock.wait_for(1, WAIT).await;
    srv.stop().await;
    assert_eq!(mock.requests().len(), 1, "{reqs:?}");
    assert!(reqs[0].body["summary"].as_str().unwrap().starts_with("🔥"));
}

#[tokio::test]
async fn grafana_payload_links_silence_dashboard_and_values() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&receiver(
        &mock,
        "{app_token: AT_test_token, uids: [UID_a]}",
    ))
    .await;
    let (code, _) = srv.post("/webhook", example("grafana-firing.json")).await;
    assert_eq!(code, 200);
    let reqs = mock.wait_for(1, WAIT).await;
    let b = &reqs[0].body;
    assert_eq!(b["summary"], "🔥【告警】High memory us…");
    assert_eq!(b["url"], "https://grafana.example.com/");
    let content = b["content"].as_str().unwrap();
    assert!(
        content.contains("[静默](https://grafana.example.com/alerting/silence/new?"),
        "{content}"
    );
    assert!(
        content.contains("[仪表盘](https://grafana.example.com/d/node)"),
        "{content}"
    );
    assert!(content.contains("- 数值：B=93.5, C=1"), "{content}");
    assert!(content.contains("- 开始：2026-11-25 09:51:03"), "{content}");
}

#[tokio::test]
async fn routing_with_continue_sends_each_receiver_its_alerts() {
    let mock = MockWxPusher::start().await;
    let cfg = format!(
        r#"
global: {{ wxpusher_api_url: "{}" }}
route:
  receiver: oncall
  routes:
    - matchers: ['instance="node-1:9100"']
      receiver: managers
      continue: true
    - matchers: ['severity=~"critical|page"', 'job!="db"']
      receiver: sre
receivers:
  - name: oncall
    wxpusher_configs: [{{ app_token: AT_test_token, uids: [UID_oncall] }}]
  - name: managers
    wxpusher_configs: [{{ app_token: AT_test_token, uids: [UID_manager] }}]
  - name: sre
    wxpusher_configs: [{{ app_token: AT_test_token, uids: [UID_sre] }}]
"#,
        mock.url
    );
    let srv = TestServer::start(&cfg).await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for(2, WAIT).await;
    srv.stop().await;
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    let to = |uid: &str| {
        reqs.iter()
            .find(|r| r.body["uids"] == json!([uid]))
            .map(|r| r.body.clone())
    };
    let manager = to("UID_manager").expect("managers got node-1");
    assert!(manager["content"].as_str().unwrap().contains("node-1:9100"));
    assert!(!manager["content"].as_str().unwrap().contains("node-2:9100"));
    let sre = to("UID_sre").expect("sre got both critical alerts");
    assert!(sre["content"].as_str().unwrap().contains("node-2:9100"));
    assert!(sre["content"].as_str().unwrap().contains("node-1:9100"));
    assert!(
        to("UID_oncall").is_none(),
        "the default route matched nothing here"
    );
}

#[tokio::test]
async fn uids_over_2000_are_split_into_calls() {
    let mock = MockWxPusher::start().await;
    let uids: Vec<String> = (0..4500).map(|i| format!("UID_{i:05}")).collect();
    let wx = format!("{{app_token: AT_test_token, uids: [{}]}}", uids.join(", "));
    let srv = TestServer::start(&receiver(&mock, &wx)).await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for(3, WAIT).await;
    srv.stop().await;
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 3);
    let mut sizes: Vec<usize> = reqs
        .iter()
        .map(|r| r.body["uids"].as_array().unwrap().len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, [500, 2000, 2000]);
    let mut all: Vec<String> = reqs
        .iter()
        .flat_map(|r| {
            r.body["uids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap().to_string())
        })
        .collect();
    all.sort();
    assert_eq!(all, uids);
}

#[tokio::test]
async fn topics_over_5_are_split_into_calls() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&receiver(
        &mock,
        "{app_token: AT_test_token, topic_ids: [1, 2, 3, 4, 5, 6, 7]}",
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for(2, WAIT).await;
    srv.stop().await;
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    let mut topics: Vec<Vec<i64>> = reqs
        .iter()
        .map(|r| serde_json::from_value(r.body["topicIds"].clone()).unwrap())
        .collect();
    topics.sort_by_key(|t| t.len());
    assert_eq!(topics, vec![vec![6, 7], vec![1, 2, 3, 4, 5]]);
    assert!(reqs.iter().all(|r| r.body.get("uids").is_none()));
}

#[tokio::test]
async fn over_long_content_is_split_on_alert_boundaries_into_numbered_parts() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&receiver(
        &mock,
        "{app_token: AT_test_token, uids: [UID_a]}",
    ))
    .await;
    // 30 alerts with 2000-character descriptions: about 60000 characters of markdown.
    let mut payload: serde_json::Value =
        serde_json::from_str(&example("alertmanager-firing.json")).unwrap();
    let template = payload["alerts"][0].clone();
    let alerts: Vec<serde_json::Value> = (0..30)
        .map(|i| {
            let mut a = template.clone();
            a["labels"]["instance"] = json!(format!("node-{i}"));
            a["annotations"]["description"] = json!(format!("告{i:02}-{}", "警".repeat(2000)));
            a
        })
        .collect();
    payload["alerts"] = json!(alerts);
    srv.post("/webhook", payload.to_string()).await;
    mock.wait_for(2, WAIT).await;
    srv.stop().await;
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2, "two parts are enough for ~60000 characters");
    let mut seen = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let c = r.body["content"].as_str().unwrap();
        assert!(c.encode_utf16().count() <= 40_000);
        let summary = r.body["summary"].as_str().unwrap();
        let part = if summary.starts_with("[1/2]") { 1 } else { 2 };
        assert!(
            c.starts_with(&format!("（第 {part}/2 部分）")),
            "part {i}: {}",
            &c[..40]
        );
        for n in 0..30 {
            if c.contains(&format!("告{n:02}-")) {
                seen.push(n);
            }
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..30).collect::<Vec<_>>(),
        "every alert in exactly one part"
    );
}

#[tokio::test]
async fn a_10000_alert_group_is_split_into_parts_representing_every_alert() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&receiver(
        &mock,
        "{app_token: AT_test_token, uids: [UID_a], rate_limit: {rate: 1000, burst: 1000}}",
    ))
    .await;
    // The poison payload of issue 19: the largest group accepted, rendered block by block.
    let mut payload: serde_json::Value =
        serde_json::from_str(&example("alertmanager-firing.json")).unwrap();
    let template = payload["alerts"][0].clone();
    let alerts: Vec<serde_json::Value> = (0..10_000)
        .map(|i| {
            let mut a = template.clone();
            a["labels"]["instance"] = json!(format!("node-{i:05}"));
            a["fingerprint"] = json!(format!("fp{i:05}"));
            a
        })
        .collect();
    payload["alerts"] = json!(alerts);
    let (code, _) = srv.post("/webhook", payload.to_string()).await;
    assert_eq!(code, 200);
    let mut seen = vec![0u32; 10_000];
    let mut parts = 0;
    // Bounded: until every alert is seen or the deadline passes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.contains(&0) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let reqs = mock.requests();
        parts = reqs.len();
        seen = vec![0u32; 10_000];
        for r in &reqs {
            let c = r.body["content"].as_str().unwrap();
            assert!(c.encode_utf16().count() <= 40_000);
            for (at, _) in c.match_indices("node-") {
                if let Some(Ok(i)) = c.get(at + 5..at + 10).map(str::parse::<usize>) {
                    seen[i] += 1;
                }
            }
        }
    }
    srv.stop().await;
    assert!(parts > 1, "split into several parts");
    let missing: Vec<usize> = (0..10_000).filter(|i| seen[*i] == 0).collect();
    assert!(
        missing.is_empty(),
        "{} alerts missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let summary = mock.requests()[0].body["summary"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        summary.starts_with(&format!("[1/{parts}]")) || summary.contains(&format!("/{parts}]")),
        "{summary}"
    );
}

#[tokio::test]
async fn over_long_url_is_omitted() {
    let mock = MockWxPusher::start().await;
    let long = format!("https://example.com/{}", "a".repeat(1100));
    let srv = TestServer::start(&receiver(
        &mock,
        &format!("{{app_token: AT_test_token, uids: [UID_a], url: '{long}'}}"),
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    let reqs = mock.wait_for(1, WAIT).await;
    assert!(reqs[0].body.get("url").is_none(), "{}", reqs[0].body);
}

#[tokio::test]
async fn bad_token_is_not_retried() {
    let mock = MockWxPusher::start().await;
    mock.set_default(Reply::Code(1001, "appToken不正确"));
    let srv = TestServer::start(&receiver(
        &mock,
        "{app_token: AT_wrong_token, uids: [UID_a]}",
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for(1, WAIT).await;
    let app = srv.app.clone();
    srv.stop().await;
    assert_eq!(mock.requests().len(), 1);
    let text = app.metrics.encode();
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_deliveries_failed_total{integration="wxpusher",reason="bad_credentials"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_notifications_total{receiver="oncall",integration="wxpusher",result="failed"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn server_errors_are_retried_until_delivered() {
    let mock = MockWxPusher::start().await;
    mock.script([
        Reply::Http(502),
        Reply::Code(1005, "系统异常"),
        Reply::Success,
    ]);
    let srv = TestServer::start(&receiver(
        &mock,
        "{app_token: AT_test_token, uids: [UID_a]}",
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for(3, WAIT).await;
    let app = srv.app.clone();
    srv.stop().await;
    assert_eq!(mock.requests().len(), 3);
    let text = app.metrics.encode();
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_deliveries_retried_total{integration="wxpusher"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_notifications_total{receiver="oncall",integration="wxpusher",result="success"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn retry_after_partial_failure_goes_only_to_the_failed_uids() {
    let mock = MockWxPusher::start().await;
    mock.script([Reply::FailUids(vec!["UID_b".into()]), Reply::Success]);
    let srv = TestServer::start(&receiver(
        &mock,
        "{app_token: AT_test_token, uids: [UID_a, UID_b, UID_c]}",
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    let reqs = mock.wait_for(2, WAIT).await;
    assert_eq!(reqs[0].body["uids"], json!(["UID_a", "UID_b", "UID_c"]));
    assert_eq!(reqs[1].body["uids"], json!(["UID_b"]));
}
