//! The exact requests a weixin-gateway receives, how its failures are handled, the fallback
//! to WxPusher, and the health metric.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use alertmanager_wechat::cli;
use alertmanager_wechat::config::Config;
use alertmanager_wechat::runtime::Runtime;
use serde_json::json;

use crate::support::weixin_gateway::{MockGateway, Reply};
use crate::support::wxpusher::MockWxPusher;
use crate::support::{TestServer, example, metric};

const WAIT: Duration = Duration::from_secs(5);

/// A receiver `dba` with one gateway integration (`gw` is the inside of its `{…}`), and, when
/// given, a receiver `oncall` on a mock WxPusher.
fn config(gw: &str, wxpusher: Option<&MockWxPusher>) -> String {
    let mut cfg = format!(
        r#"
global: {{ timezone: Asia/Shanghai, wxpusher_api_url: "{}" }}
route: {{ receiver: dba }}
receivers:
  - name: dba
    weixin_gateway_configs:
      - {{ {gw} }}
"#,
        wxpusher.map_or("http://127.0.0.1:1", |w| w.url.as_str())
    );
    if wxpusher.is_some() {
        cfg.push_str("  - name: oncall\n    wxpusher_configs: [{ app_token: AT_test_token, uids: [UID_a] }]\n");
    }
    cfg
}

/// Polls `cond` until it holds (the metric is set by a background task; no event to wait on).
async fn eventually<F: Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The durations in a message depend on the clock; everything else must match exactly.
fn without_durations(text: &str) -> String {
    regex::Regex::new(r"（已持续 [^）\n]+）")
        .unwrap()
        .replace_all(text, "（已持续 …）")
        .into_owned()
}

#[tokio::test]
async fn text_alert_is_one_request_per_user_with_the_exact_body() {
    let gw = MockGateway::start("wx-account-1").await;
    let srv = TestServer::start(&config(
        &format!(
            "url: '{}', account_id: wx-account-1, to_user_ids: [a@im.wechat, b@im.wechat], context_token: ctx-1, bearer_token: gw-proxy-token",
            gw.url
        ),
        None,
    ))
    .await;
    let (code, _) = srv
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!(code, 200);
    gw.wait_for(2, WAIT).await;
    let app = srv.app.clone();
    srv.stop().await;
    let sends = gw.sends();
    assert_eq!(sends.len(), 2);
    let expected_text = "🔥【告警中 2 条】\n\n▶ HighCPU [critical]\nCPU 使用率超过 90%\nnode-1 的 CPU 使用率已持续 10 分钟高于 90%。\n开始：2026-11-25 16:00:00（已持续 …）\n标签：instance=node-1:9100, job=node\n来源：http://prometheus:9090/graph?g0.expr=cpu_usage+%3E+0.9\n\n▶ HighCPU [critical]\nCPU 使用率超过 90%\n开始：2026-11-25 16:05:00（已持续 …）\n标签：instance=node-2:9100, job=node\n来源：http://prometheus:9090/graph?g0.expr=cpu_usage+%3E+0.9";
    let mut users = Vec::new();
    for s in &sends {
        let mut body = s.body.clone();
        let text = without_durations(body["items"][0]["text"].as_str().unwrap());
        body["items"][0]["text"] = json!(text);
        let user = s.body["to_user_id"].as_str().unwrap().to_string();
        assert_eq!(
            body,
            json!({"account_id": "wx-account-1", "to_user_id": user, "context_token": "ctx-1",
                "chat_type": "c2c", "items": [{"type": "text", "text": expected_text}]})
        );
        assert_eq!(s.headers["authorization"], "Bearer gw-proxy-token");
        assert_eq!(s.headers["content-type"], "application/json");
        users.push(user);
    }
    users.sort();
    assert_eq!(users, ["a@im.wechat", "b@im.wechat"]);
    assert_eq!(
        metric(
            &app.metrics.encode(),
            r#"alertmanager_wechat_notifications_total{receiver="dba",integration="weixin_gateway",result="success"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn long_text_is_split_into_numbered_parts_sent_in_order() {
    let gw = MockGateway::start("wx-account-1").await;
    let srv = TestServer::start(&config(
        &format!(
            "url: '{}', account_id: wx-account-1, to_user_ids: [a@im.wechat]",
            gw.url
        ),
        None,
    ))
    .await;
    // 10 alerts with 300-character descriptions: about 4700 characters of text.
    let mut payload: serde_json::Value =
        serde_json::from_str(&example("alertmanager-firing.json")).unwrap();
    let template = payload["alerts"][0].clone();
    let alerts: Vec<serde_json::Value> = (0..10)
        .map(|i| {
            let mut a = template.clone();
            a["labels"]["instance"] = json!(format!("node-{i}"));
            a["annotations"]["description"] = json!(format!("告{i:02}-{}", "警".repeat(300)));
            a
        })
        .collect();
    payload["alerts"] = json!(alerts);
    srv.post("/webhook", payload.to_string()).await;
    gw.wait_for(3, WAIT).await;
    srv.stop().await;
    let sends = gw.sends();
    assert_eq!(sends.len(), 3, "three parts for ~4700 characters");
    let mut seen = Vec::new();
    for (i, s) in sends.iter().enumerate() {
        let items = s.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "exactly one text item");
        let text = items[0]["text"].as_str().unwrap();
        assert!(text.encode_utf16().count() <= 2000, "part {i} too long");
        assert!(
            text.starts_with(&format!("（第 {}/3 部分）\n", i + 1)),
            "part {i} out of order: {}",
            text.chars().take(20).collect::<String>()
        );
        for n in 0..10 {
            if text.contains(&format!("告{n:02}-")) {
                seen.push(n);
            }
        }
    }
    assert_eq!(
        seen,
        (0..10).collect::<Vec<_>>(),
        "every alert once, in order"
    );
}

#[tokio::test]
async fn refused_user_goes_to_the_fallback_once_and_is_not_retried_before_the_back_off() {
    let wx = MockWxPusher::start().await;
    let gw = MockGateway::start("wx-account-1").await;
    gw.set_quota(0); // outside the 24-hour window: every send is refused with ret=-2
    let srv = TestServer::start(&config(
        &format!(
            "url: '{}', account_id: wx-account-1, to_user_ids: [a@im.wechat], fallback_receiver: oncall",
            gw.url
        ),
        Some(&wx),
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    let pushed = wx.wait_for(1, WAIT).await;
    assert_eq!(pushed[0].body["uids"], json!(["UID_a"]));
    assert!(
        pushed[0].body["content"]
            .as_str()
            .unwrap()
            .contains("HighCPU")
    );
    assert_eq!(gw.sends().len(), 1);
    // A second notification while the user is backed off: straight to the fallback, no
    // request to the gateway.
    srv.post("/webhook", example("alertmanager-resolved.json"))
        .await;
    wx.wait_for(2, WAIT).await;
    let app = srv.app.clone();
    srv.stop().await;
    assert_eq!(gw.sends().len(), 1, "the refused user was not tried again");
    assert_eq!(wx.requests().len(), 2, "the fallback got each alert once");
    let text = app.metrics.encode();
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_deliveries_failed_total{integration="weixin_gateway",reason="recipient_window"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_deliveries_retried_total{integration="weixin_gateway"}"#
        ),
        0.0
    );
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_notifications_total{receiver="oncall",integration="wxpusher",result="success"}"#
        ),
        2.0
    );
}

#[tokio::test]
async fn refused_user_is_tried_again_after_the_back_off() {
    let gw = MockGateway::start("wx-account-1").await;
    gw.set_quota(1);
    let srv = TestServer::start(&config(
        &format!(
            "url: '{}', account_id: wx-account-1, to_user_ids: [a@im.wechat], user_backoff: 300ms",
            gw.url
        ),
        None,
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    gw.wait_for(1, WAIT).await;
    srv.post("/webhook", example("alertmanager-resolved.json"))
        .await;
    let refused_at = gw.wait_for(2, WAIT).await[1].at;
    // The back-off is what is under test: time has to pass.
    tokio::time::sleep(Duration::from_millis(400)).await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    let sends = gw.wait_for(3, WAIT).await;
    assert!(sends[2].at.duration_since(refused_at) >= Duration::from_millis(300));
    srv.stop().await;
    assert_eq!(gw.sends().len(), 3);
}

#[tokio::test]
async fn unknown_account_is_permanent_and_not_retried() {
    let gw = MockGateway::start("wx-account-1").await;
    let srv = TestServer::start(&config(
        &format!(
            "url: '{}', account_id: wx-not-logged-in, to_user_ids: [a@im.wechat]",
            gw.url
        ),
        None,
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    gw.wait_for(1, WAIT).await;
    let app = srv.app.clone();
    srv.stop().await;
    assert_eq!(gw.sends().len(), 1);
    // Kept as a dead letter with the gateway's own words.
    let dead = app.queue.store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    let last_error = dead[0].last_error.as_deref().unwrap_or("");
    assert!(
        last_error.contains("unknown account: wx-not-logged-in"),
        "{last_error}"
    );
    let text = app.metrics.encode();
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_deliveries_failed_total{integration="weixin_gateway",reason="bad_credentials"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_notifications_total{receiver="dba",integration="weixin_gateway",result="failed"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn bad_gateway_and_transient_errors_are_retried_and_only_the_failed_user_is_resent() {
    let gw = MockGateway::start("wx-account-1").await;
    // a: 502 from a proxy; b: ok; then a: an iLink errmsg; then a: ok.
    gw.script([Reply::Http(502), Reply::Pass, Reply::Error("errcode=-1")]);
    let srv = TestServer::start(&config(
        &format!(
            "url: '{}', account_id: wx-account-1, to_user_ids: [a@im.wechat, b@im.wechat]",
            gw.url
        ),
        None,
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    gw.wait_for(4, WAIT).await;
    let app = srv.app.clone();
    srv.stop().await;
    let sends = gw.sends();
    let users: Vec<&str> = sends
        .iter()
        .map(|s| s.body["to_user_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        users,
        ["a@im.wechat", "b@im.wechat", "a@im.wechat", "a@im.wechat"]
    );
    let text = app.metrics.encode();
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_deliveries_retried_total{integration="weixin_gateway"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_notifications_total{receiver="dba",integration="weixin_gateway",result="success"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn gateway_down_at_start_keeps_ready_and_shows_up_when_it_comes() {
    // An address where nothing listens yet.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let srv = TestServer::start(&config(
        &format!(
            "url: 'http://{addr}', account_id: wx-account-1, to_user_ids: [a@im.wechat], health_interval: 100ms"
        ),
        None,
    ))
    .await;
    let series =
        r#"alertmanager_wechat_integration_up{receiver="dba",integration="weixin_gateway"}"#;
    eventually("integration_up 0 while the gateway is down", || async {
        srv.get("/metrics").await.1.contains(&format!("{series} 0"))
    })
    .await;
    assert_eq!(srv.get("/-/ready").await.0, 200);
    let gw = MockGateway::start_on(addr, "wx-account-1").await;
    eventually("integration_up 1 once the gateway answers", || async {
        srv.get("/metrics").await.1.contains(&format!("{series} 1"))
    })
    .await;
    assert!(gw.health_checks() >= 1);
    assert_eq!(srv.get("/-/ready").await.0, 200);
    srv.stop().await;
}

#[test]
fn bearer_token_is_masked_in_render_and_never_in_the_body() {
    let cfg = "route: {receiver: dba}\nreceivers:\n  - name: dba\n    weixin_gateway_configs: [{url: 'http://gw:8787', account_id: wx-1, to_user_ids: [a@im.wechat], bearer_token: gw-proxy-token}]\n";
    let rt = Runtime::build(Config::parse(cfg, "t.yml", Path::new(".")).unwrap()).unwrap();
    let now = "2026-11-25T08:30:00Z".parse().unwrap();
    let out = cli::render(
        &rt,
        example("alertmanager-firing.json").as_bytes(),
        None,
        now,
    )
    .unwrap();
    let text = cli::format_rendered(&out);
    assert!(!text.contains("gw-proxy-token"));
    assert_eq!(out[0].requests[0].url, "http://gw:8787/send");
    insta::assert_snapshot!(
        out[0].requests[0].body["items"][0]["text"]
            .as_str()
            .unwrap()
    );
}

#[tokio::test]
async fn sends_never_exceed_the_configured_rate_limit() {
    let gw = MockGateway::start("wx-account-1").await;
    let users: Vec<String> = (0..6).map(|i| format!("u{i}@im.wechat")).collect();
    let srv = TestServer::start(&config(
        &format!(
            "url: '{}', account_id: wx-account-1, to_user_ids: [{}], rate_limit: {{ rate: 4, burst: 1 }}",
            gw.url,
            users.join(", ")
        ),
        None,
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    gw.wait_for(6, WAIT).await;
    srv.stop().await;
    let times: Vec<_> = gw.sends().iter().map(|r| r.at).collect();
    assert_eq!(times.len(), 6);
    // In any window of T seconds at most burst + rate·T sends (plus arrival jitter).
    for i in 0..times.len() {
        for j in i..times.len() {
            let window = times[j].duration_since(times[i]).as_secs_f64() + 0.1;
            assert!(
                (j - i + 1) as f64 <= 1.0 + 4.0 * window,
                "{} sends within {window}s",
                j - i + 1
            );
        }
    }
}
