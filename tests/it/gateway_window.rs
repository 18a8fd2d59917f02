//! weixin-gateway users' iLink send window, counted in the store since each user last wrote:
//! the reminder from the 8th message, the 11th going to the fallback without a gateway call,
//! a reply resetting the window and lifting the back-off, and the count surviving a restart.

use std::time::Duration;

use alertmanager_wechat::cli::{DeadLetterAction, deadletters};
use serde_json::json;

use crate::support::redis::RedisServer;
use crate::support::weixin_gateway::{MockGateway, Recorded};
use crate::support::wxpusher::MockWxPusher;
use crate::support::{TestServer, metric};

const WAIT: Duration = Duration::from_secs(10);
const SECRET: &str = "gw-callback-secret-0123456789";
const USER: &str = "ops@im.wechat";
const NOTE_ZH: &str = "⚠️ 自您上次发消息以来已发送";

fn one(fp: &str) -> String {
    json!({
        "version": "4", "status": "firing", "receiver": "dba",
        "groupKey": format!("{{}}:{{alertname=\"DiskFull\",fp=\"{fp}\"}}"),
        "groupLabels": {"alertname": "DiskFull"}, "commonLabels": {"alertname": "DiskFull"},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0,
        "alerts": [{"status": "firing",
            "labels": {"alertname": "DiskFull", "severity": "critical", "instance": format!("i-{fp}")},
            "annotations": {"summary": "disk full"},
            "startsAt": "2026-11-25T08:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph", "fingerprint": fp}],
    })
    .to_string()
}

fn config(gw: &MockGateway, wx: &MockWxPusher, storage: &str, extra: &str) -> String {
    format!(
        r#"
global: {{ timezone: Asia/Shanghai, wxpusher_api_url: "{wx}" }}
{storage}
chatops:
  alertmanager_url: http://127.0.0.1:9
  weixin_gateway_secret: {SECRET}
  allowed: [ "{USER}" ]
route: {{ receiver: dba }}
receivers:
  - name: dba
    weixin_gateway_configs:
      - {{ url: "{gw}", account_id: wx-account-1, to_user_ids: [ "{USER}" ], fallback_receiver: oncall, health_interval: 100ms{extra} }}
  - name: oncall
    wxpusher_configs: [{{ app_token: AT_test_token, uids: [UID_a] }}]
"#,
        wx = wx.url,
        gw = gw.url,
    )
}

fn text(r: &Recorded) -> &str {
    r.body["items"][0]["text"].as_str().unwrap_or_default()
}

async fn user_writes(srv: &TestServer, gw: &MockGateway, said: &str) {
    gw.inbound(USER);
    let body = json!({"type": "message", "account_id": "wx-account-1", "event_id": "evt-1",
        "chat_id": USER, "user_id": USER, "text": said, "context_token": "ctx-1",
        "chat_type": "c2c", "attachments": [], "raw": {}});
    let status = reqwest::Client::new()
        .post(format!("{}/callback/weixin-gateway", srv.url))
        .bearer_auth(SECRET)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts `fp` and waits until the gateway has `sends` requests, or WxPusher `fallbacks`.
async fn alert(srv: &TestServer, fp: &str) {
    assert_eq!(srv.post("/webhook", one(fp)).await.0, 200);
}

#[tokio::test]
async fn ten_sends_then_the_eleventh_goes_to_the_fallback_without_a_gateway_call() {
    let gw = MockGateway::start("wx-account-1").await;
    gw.set_quota(10);
    let wx = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&gw, &wx, "", "")).await;
    for k in 1..=10 {
        alert(&srv, &format!("a{k:02}")).await;
        gw.wait_for(k, WAIT).await;
    }
    alert(&srv, "a11").await;
    let fallback = wx.wait_for(1, WAIT).await;
    let store = srv.app.queue.store.clone();
    until("a dead letter", async || {
        store.dead_letter_count().await.unwrap_or(0) == 1
    })
    .await;
    until("the window metrics", async || {
        let m = srv.app.metrics.encode();
        metric(
            &m,
            r#"alertmanager_wechat_weixin_gateway_window_users{receiver="dba",state="spent"}"#,
        ) == 1.0
    })
    .await;
    let metrics = srv.app.metrics.encode();
    srv.stop().await;

    let sends = gw.sends();
    assert_eq!(sends.len(), 10, "no call for the 11th");
    for (k, s) in sends.iter().enumerate() {
        let t = text(s);
        assert!(t.contains(&format!("i-a{:02}", k + 1)), "{t}");
        if k + 1 < 8 {
            assert!(!t.contains(NOTE_ZH), "send {}: {t}", k + 1);
        } else {
            assert!(
                t.ends_with(&format!(
                    "\n\n⚠️ 自您上次发消息以来已发送 {}/10 条。请回复任意消息，以便继续接收告警。",
                    k + 1
                )),
                "send {}: {t}",
                k + 1
            );
        }
    }
    assert_eq!(fallback.len(), 1);
    assert!(
        fallback[0].body["content"]
            .as_str()
            .unwrap()
            .contains("i-a11")
    );
    assert_eq!(
        metric(
            &metrics,
            r#"alertmanager_wechat_deliveries_failed_total{integration="weixin_gateway",reason="recipient_window"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"alertmanager_wechat_weixin_gateway_window_remaining{receiver="dba",integration="weixin_gateway"}"#
        ),
        0.0
    );
    assert!(metrics.contains(
        r#"alertmanager_wechat_weixin_gateway_window_users{receiver="dba",state="open"} 0"#
    ));
    assert!(!metrics.contains(USER), "no user ids in metrics");
    let (list, _) = deadletters(&store, DeadLetterAction::List).await;
    assert!(
        list.contains("send window spent (10 messages since the user last wrote to the bot, or ~24h since then); not sending until they reply"),
        "{list}"
    );
}

#[tokio::test]
async fn a_reply_resets_the_window_and_lifts_the_back_off_at_once() {
    let gw = MockGateway::start("wx-account-1").await;
    // iLink refuses after 2 here (fewer than we count): ret=-2 puts the user in back-off.
    gw.set_quota(2);
    let wx = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&gw, &wx, "", ", window_size: 3, window_warn_at: 3")).await;
    alert(&srv, "b1").await;
    gw.wait_for(1, WAIT).await;
    alert(&srv, "b2").await;
    gw.wait_for(2, WAIT).await;
    alert(&srv, "b3").await;
    // Refused (ret=-2): one call, then the fallback.
    wx.wait_for(1, WAIT).await;
    assert_eq!(gw.sends().len(), 3);
    assert!(text(&gw.sends()[2]).ends_with("已发送 3/3 条。请回复任意消息，以便继续接收告警。"));
    alert(&srv, "b4").await;
    // In back-off: straight to the fallback, no call.
    wx.wait_for(2, WAIT).await;
    assert_eq!(gw.sends().len(), 3);

    // The user writes: the window opens again and the back-off is lifted (the help reply is
    // the first message of the new window).
    user_writes(&srv, &gw, "help").await;
    let sends = gw.wait_for(4, WAIT).await;
    assert_eq!(sends[3].body["context_token"], "ctx-1");
    alert(&srv, "b5").await;
    let sends = gw.wait_for(5, WAIT).await;
    assert!(text(&sends[4]).contains("i-b5"));
    assert!(!text(&sends[4]).contains("已发送"), "{}", text(&sends[4]));
    alert(&srv, "b6").await;
    let sends = gw.wait_for(6, WAIT).await;
    srv.stop().await;
    // The reply and b5 were the two; b6 is the third of three.
    assert!(
        text(&sends[5]).ends_with("已发送 3/3 条。请回复任意消息，以便继续接收告警。"),
        "{}",
        text(&sends[5])
    );
    assert_eq!(wx.requests().len(), 2);
}

async fn the_count_survives_a_restart(storage: &str) {
    let gw = MockGateway::start("wx-account-1").await;
    let wx = MockWxPusher::start().await;
    let yaml = config(&gw, &wx, storage, ", window_size: 4, window_warn_at: 3");
    let first = TestServer::start(&yaml).await;
    alert(&first, "c1").await;
    gw.wait_for(1, WAIT).await;
    alert(&first, "c2").await;
    gw.wait_for(2, WAIT).await;
    first.stop().await;

    let second = TestServer::start(&yaml).await;
    alert(&second, "c3").await;
    let sends = gw.wait_for(3, WAIT).await;
    assert!(
        text(&sends[2]).ends_with("已发送 3/4 条。请回复任意消息，以便继续接收告警。"),
        "{}",
        text(&sends[2])
    );
    until("the window metrics", async || {
        metric(
            &second.app.metrics.encode(),
            r#"alertmanager_wechat_weixin_gateway_window_remaining{receiver="dba",integration="weixin_gateway"}"#,
        ) == 1.0
    })
    .await;
    let m = second.app.metrics.encode();
    assert_eq!(
        metric(
            &m,
            r#"alertmanager_wechat_weixin_gateway_window_users{receiver="dba",state="low"}"#
        ),
        1.0
    );
    alert(&second, "c4").await;
    gw.wait_for(4, WAIT).await;
    alert(&second, "c5").await;
    wx.wait_for(1, WAIT).await;
    second.stop().await;
    assert_eq!(gw.sends().len(), 4);
}

#[tokio::test]
async fn the_window_count_survives_a_restart_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    the_count_survives_a_restart(&format!(
        "storage: {{ path: \"{}\" }}",
        data.path().display()
    ))
    .await;
}

#[tokio::test]
async fn the_window_count_survives_a_restart_on_redis() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    the_count_survives_a_restart(&format!(
        "storage: {{ path: $DATA, redis_url: \"{}\" }}",
        redis.url
    ))
    .await;
}

#[test]
fn window_warn_at_over_window_size_is_refused() {
    let cfg = "route: {receiver: a}\nreceivers:\n  - name: a\n    weixin_gateway_configs: [{url: 'http://gw:8787', account_id: a1, to_user_ids: [u], window_size: 5, window_warn_at: 6}]\n";
    let e = alertmanager_wechat::config::Config::parse(cfg, "t.yml", std::path::Path::new("."))
        .unwrap_err();
    assert_eq!(
        e.to_string().trim(),
        "t.yml: receivers[0].weixin_gateway_configs[0].window_warn_at: must not be more than window_size (5); 0 turns the reminder off"
    );
}

#[tokio::test]
async fn without_the_gateway_callback_a_spent_window_gets_user_backoff_to_reopen() {
    let gw = MockGateway::start("wx-account-1").await;
    let wx = MockWxPusher::start().await;
    // No chatops block: the service never learns that a user wrote.
    let yaml = config(
        &gw,
        &wx,
        "",
        ", window_size: 2, window_warn_at: 2, user_backoff: 1s",
    )
    .replace(
        &format!(
            "chatops:\n  alertmanager_url: http://127.0.0.1:9\n  weixin_gateway_secret: {SECRET}\n  allowed: [ \"{USER}\" ]\n"
        ),
        "",
    );
    assert!(!yaml.contains("chatops"), "{yaml}");
    let srv = TestServer::start(&yaml).await;
    alert(&srv, "d1").await;
    gw.wait_for(1, WAIT).await;
    alert(&srv, "d2").await;
    let sends = gw.wait_for(2, WAIT).await;
    assert!(text(&sends[1]).ends_with("已发送 2/2 条。请回复任意消息，以便继续接收告警。"));
    // Spent: the fallback, no call; the user is given user_backoff (1s) to reopen it.
    alert(&srv, "d3").await;
    wx.wait_for(1, WAIT).await;
    assert_eq!(gw.sends().len(), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    alert(&srv, "d4").await;
    let sends = gw.wait_for(3, WAIT).await;
    let store = srv.app.queue.store.clone();
    srv.stop().await;
    assert!(text(&sends[2]).contains("i-d4"));
    assert!(
        !text(&sends[2]).contains("已发送"),
        "counted afresh: {}",
        text(&sends[2])
    );
    let (list, _) = deadletters(&store, DeadLetterAction::List).await;
    assert!(
        list.contains("send window spent (2 messages); not sending for 1s (without the gateway callback, replies are not seen)"),
        "{list}"
    );
}

#[tokio::test]
async fn a_day_after_the_users_last_message_the_window_is_closed() {
    let gw = MockGateway::start("wx-account-1").await;
    let wx = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&gw, &wx, "", "")).await;
    // The user last wrote 25 hours ago (as the callback would have recorded it).
    let now = chrono::Utc::now();
    srv.app
        .queue
        .store
        .add_counter(
            alertmanager_wechat::channels::weixin_gateway::window::inbound_key(
                "wx-account-1",
                USER,
            ),
            (now - chrono::Duration::hours(25)).timestamp(),
            now + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    alert(&srv, "f1").await;
    wx.wait_for(1, WAIT).await;
    assert!(gw.sends().is_empty(), "no call into a closed window");
    // They write: open again.
    user_writes(&srv, &gw, "hi").await;
    gw.wait_for(1, WAIT).await;
    alert(&srv, "f2").await;
    let sends = gw.wait_for(2, WAIT).await;
    srv.stop().await;
    assert!(text(&sends[1]).contains("i-f2"));
}

#[tokio::test]
async fn a_reply_seen_by_another_replica_lifts_the_back_off_here() {
    let gw = MockGateway::start("wx-account-1").await;
    gw.set_quota(1);
    let wx = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&gw, &wx, "", "")).await;
    alert(&srv, "e1").await;
    gw.wait_for(1, WAIT).await;
    alert(&srv, "e2").await;
    // ret=-2: back-off, fallback.
    wx.wait_for(1, WAIT).await;
    alert(&srv, "e3").await;
    wx.wait_for(2, WAIT).await;
    assert_eq!(gw.sends().len(), 2);
    // The user writes; the callback lands on another replica, which records it in the
    // shared store (what its `window::inbound` does there) but not in this process.
    gw.inbound(USER);
    let store = srv.app.queue.store.clone();
    store
        .add_counter(
            alertmanager_wechat::channels::weixin_gateway::window::inbound_key(
                "wx-account-1",
                USER,
            ),
            // When they wrote (Unix seconds), as `window::inbound` records it.
            chrono::Utc::now().timestamp(),
            chrono::Utc::now() + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    alert(&srv, "e4").await;
    let sends = gw.wait_for(3, WAIT).await;
    srv.stop().await;
    assert!(text(&sends[2]).contains("i-e4"), "{}", text(&sends[2]));
    assert_eq!(wx.requests().len(), 2);
}
