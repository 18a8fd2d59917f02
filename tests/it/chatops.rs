//! Replies from WeChat: commands arrive through the WxPusher and weixin-gateway callbacks,
//! silences land in Debian's real Alertmanager, replies go back through the mocks.

use std::time::Duration;

use serde_json::{Value, json};

use crate::alertmanager::{TOKEN, WAIT, eventually, post_alerts, start_alertmanager};
use crate::support::process::Daemon;
use crate::support::weixin_gateway::MockGateway;
use crate::support::wxpusher::{MockWxPusher, Recorded};
use crate::support::{TestServer, example, metric};

const CALLBACK: &str = "wxpusher-callback-secret-0123";
const GATEWAY_SECRET: &str = "gateway-shared-secret-0123";
const SHORT: Duration = Duration::from_secs(10);

fn chatops_config(mock: &MockWxPusher, alertmanager: &str) -> String {
    format!(
        r#"
global: {{ wxpusher_api_url: "{}", timezone: Asia/Shanghai }}
auth: {{ bearer_token: {TOKEN} }}
chatops:
  alertmanager_url: {alertmanager}
  wxpusher_callback_secret: {CALLBACK}
  allowed: [ UID_e2e ]
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs:
      - {{ app_token: AT_e2e, uids: [UID_e2e] }}
"#,
        mock.url
    )
}

/// The reference at the end of a message: `编号 #K7Q2` / `Ref #K7Q2`.
fn reference(text: &str) -> String {
    let at = text
        .rfind("编号 #")
        .map(|i| i + "编号 #".len())
        .or_else(|| text.rfind("Ref #").map(|i| i + "Ref #".len()))
        .unwrap_or_else(|| panic!("no reference in {text}"));
    let r: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    assert_eq!(r.len(), 4, "{text}");
    r
}

fn content(r: &Recorded) -> &str {
    r.body["content"].as_str().unwrap_or_default()
}

/// Each command callback its own `time`, as WxPusher sends them: a callback with the same
/// uid, time and text is a replay and is not run again.
fn next_time() -> i64 {
    static T: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1603002697386);
    T.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

async fn up_command(srv: &TestServer, secret: &str, uid: &str, text: &str) -> u16 {
    let body = json!({"action": "send_up_cmd", "data": {"uid": uid, "appId": 97, "appKey": null,
        "appName": "告警", "userName": "", "userHeadImg": "", "time": next_time(), "content": text}});
    srv.post(&format!("/callback/wxpusher/{secret}"), body.to_string())
        .await
        .0
}

async fn silences(am: &Daemon) -> Vec<Value> {
    reqwest::get(format!("{}/api/v2/silences", am.url))
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap()
}

fn active(list: &[Value]) -> Vec<&Value> {
    list.iter()
        .filter(|s| s["status"]["state"] == "active")
        .collect()
}

fn disk_alert(instance: &str) -> Value {
    json!({"labels": {"alertname": "DiskFull", "severity": "critical", "instance": instance, "team": "storage"},
           "annotations": {"summary": "磁盘空间不足 5%"}})
}

#[tokio::test]
async fn wxpusher_replies_ack_silence_and_unsilence_through_the_real_alertmanager() {
    let mock = MockWxPusher::start().await;
    // Alertmanager needs the receiver's URL and the receiver Alertmanager's: start with a
    // placeholder, then reload once Alertmanager listens.
    let srv = TestServer::start(&chatops_config(&mock, "http://127.0.0.1:9")).await;
    let Some(am) = start_alertmanager(&srv.url).await else {
        return;
    };
    std::fs::write(
        srv.dir.path().join("config.yml"),
        chatops_config(&mock, &am.url),
    )
    .unwrap();
    srv.app.reload().unwrap();

    post_alerts(
        &am,
        json!([disk_alert("node-1:9100"), disk_alert("node-2:9100")]),
    )
    .await;
    let reqs = mock.wait_for(1, WAIT).await;
    let first = content(&reqs[0]);
    let r = reference(first);
    assert!(first.ends_with(&format!("\n\n编号 #{r}")), "{first}");

    // ack: recorded, answered, and shown in the group's next message.
    assert_eq!(
        up_command(&srv, CALLBACK, "UID_e2e", &format!("ack #{r}")).await,
        200
    );
    let reqs = mock.wait_for(2, SHORT).await;
    assert_eq!(reqs[1].body["uids"], json!(["UID_e2e"]));
    assert_eq!(reqs[1].body["appToken"], "AT_e2e");
    assert_eq!(reqs[1].body["contentType"], 1);
    assert_eq!(
        content(&reqs[1]),
        format!("Acknowledged #{r} (DiskFull ×2); later messages show it.")
    );
    post_alerts(&am, json!([disk_alert("node-3:9100")])).await;
    let reqs = mock.wait_for(3, WAIT).await;
    let update = content(&reqs[2]);
    assert!(update.contains("node-3:9100"), "{update}");
    assert!(
        update.contains(&format!("编号 #{r} · UID_e2e 已确认（")),
        "the same reference, with who acknowledged: {update}"
    );

    // silence from an allowed UID: a silence on the group's common labels.
    assert_eq!(
        up_command(
            &srv,
            CALLBACK,
            "UID_e2e",
            &format!("silence {r} 1h maintenance")
        )
        .await,
        200
    );
    let reqs = mock.wait_for(4, SHORT).await;
    let reply = content(&reqs[3]);
    assert!(
        reply.starts_with(&format!("Silenced #{r} for 1h (until ")),
        "{reply}"
    );
    assert_eq!(reqs[3].body["uids"], json!(["UID_e2e"]));
    let all = silences(&am).await;
    let on = active(&all);
    assert_eq!(on.len(), 1, "{all:#?}");
    let s = on[0];
    let mut matchers = s["matchers"].as_array().unwrap().clone();
    matchers.sort_by_key(|m| m["name"].as_str().unwrap().to_string());
    assert_eq!(
        Value::Array(matchers),
        json!([
            {"name": "alertname", "value": "DiskFull", "isRegex": false, "isEqual": true},
            {"name": "severity", "value": "critical", "isRegex": false, "isEqual": true},
            {"name": "team", "value": "storage", "isRegex": false, "isEqual": true},
        ])
    );
    assert_eq!(s["createdBy"], "UID_e2e");
    assert_eq!(s["comment"], "maintenance");
    let start = chrono::DateTime::parse_from_rfc3339(s["startsAt"].as_str().unwrap()).unwrap();
    let end = chrono::DateTime::parse_from_rfc3339(s["endsAt"].as_str().unwrap()).unwrap();
    // Alertmanager moves a past startsAt to its own now: a hair under the hour.
    let secs = (end - start).num_seconds();
    assert!((3590..=3600).contains(&secs), "{secs}");
    let id = s["id"].as_str().unwrap().to_string();
    assert!(reply.contains(&format!("Silence ID: {id}")), "{reply}");

    // The same from a UID not allowed: refused, nothing changes.
    assert_eq!(
        up_command(&srv, CALLBACK, "UID_stranger", &format!("静默 {r} 2h 随便")).await,
        200
    );
    let reqs = mock.wait_for(5, SHORT).await;
    assert_eq!(reqs[4].body["uids"], json!(["UID_stranger"]));
    assert!(
        content(&reqs[4]).starts_with("无权操作"),
        "{}",
        content(&reqs[4])
    );
    assert_eq!(silences(&am).await, all);
    // A wrong secret: a bare 404, no reply, no silence.
    assert_eq!(
        up_command(
            &srv,
            "not-the-secret-at-all",
            "UID_e2e",
            &format!("silence {r} 1h x")
        )
        .await,
        404
    );
    // An unknown reference is answered as such.
    assert_eq!(up_command(&srv, CALLBACK, "UID_e2e", "ack ZZZZ").await, 200);
    let reqs = mock.wait_for(6, SHORT).await;
    assert!(
        content(&reqs[5]).starts_with("Unknown reference #ZZZZ"),
        "{}",
        content(&reqs[5])
    );
    assert_eq!(silences(&am).await, all);

    // unsilence expires it.
    assert_eq!(
        up_command(&srv, CALLBACK, "UID_e2e", &format!("取消静默 {id}")).await,
        200
    );
    let reqs = mock.wait_for(7, SHORT).await;
    assert_eq!(content(&reqs[6]), format!("已取消静默 {id}"));
    eventually("the silence to expire", SHORT, || async {
        active(&silences(&am).await).is_empty()
    })
    .await;

    let (_, m) = srv.get("/metrics").await;
    let count = |c: &str, r: &str| {
        metric(
            &m,
            &format!(r#"alertmanager_wechat_chatops_commands_total{{command="{c}",result="{r}"}}"#),
        )
    };
    assert_eq!(count("ack", "ok"), 1.0, "{m}");
    assert_eq!(count("silence", "ok"), 1.0, "{m}");
    assert_eq!(count("silence", "denied"), 1.0, "{m}");
    assert_eq!(count("ack", "unknown_ref"), 1.0, "{m}");
    assert_eq!(count("unsilence", "ok"), 1.0, "{m}");
    assert_eq!(mock.requests().len(), 7);
    // No secret in anything sent back.
    for r in mock.requests() {
        assert!(!r.body.to_string().contains(CALLBACK));
    }
}

fn gateway_config(gw: &MockGateway, alertmanager: &str) -> String {
    format!(
        r#"
chatops:
  alertmanager_url: {alertmanager}
  weixin_gateway_secret: {GATEWAY_SECRET}
  allowed: [ "ops@im.wechat" ]
route: {{ receiver: dba }}
receivers:
  - name: dba
    weixin_gateway_configs:
      - {{ url: "{}", account_id: wx-account-1, to_user_ids: [ "ops@im.wechat" ] }}
"#,
        gw.url
    )
}

async fn gateway_event(srv: &TestServer, auth: Option<&str>, user: &str, text: &str) -> u16 {
    let body = json!({"type": "message", "account_id": "wx-account-1", "event_id": "evt-1",
        "chat_id": user, "user_id": user, "text": text, "context_token": "ctx-1",
        "chat_type": "c2c", "attachments": [], "raw": {}});
    let mut req = reqwest::Client::new()
        .post(format!("{}/callback/weixin-gateway", srv.url))
        .json(&body);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap().status().as_u16()
}

fn gateway_text(r: &crate::support::weixin_gateway::Recorded) -> &str {
    r.body["items"][0]["text"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn weixin_gateway_commands_are_answered_with_the_context_token() {
    let gw = MockGateway::start("wx-account-1").await;
    // The notification is posted straight to the receiver; Alertmanager only takes silences.
    let am = start_alertmanager("http://127.0.0.1:9").await;
    let am_url = am
        .as_ref()
        .map_or("http://127.0.0.1:9".to_string(), |a| a.url.clone());
    let srv = TestServer::start(&gateway_config(&gw, &am_url)).await;
    assert_eq!(
        srv.post("/webhook", example("alertmanager-firing.json"))
            .await
            .0,
        200
    );
    let sends = gw.wait_for(1, SHORT).await;
    let r = reference(gateway_text(&sends[0]));

    let bearer = format!("Bearer {GATEWAY_SECRET}");
    assert_eq!(
        gateway_event(&srv, None, "ops@im.wechat", "列表").await,
        401
    );
    assert_eq!(
        gateway_event(
            &srv,
            Some("Bearer wrong-secret-0123456789"),
            "ops@im.wechat",
            "列表"
        )
        .await,
        401
    );
    assert_eq!(
        gateway_event(&srv, Some(&bearer), "ops@im.wechat", " 列表 ").await,
        200
    );
    let sends = gw.wait_for(2, SHORT).await;
    let reply = &sends[1].body;
    assert_eq!(reply["account_id"], "wx-account-1");
    assert_eq!(reply["to_user_id"], "ops@im.wechat");
    assert_eq!(reply["context_token"], "ctx-1");
    assert_eq!(reply["chat_type"], "c2c");
    let text = gateway_text(&sends[1]);
    assert!(text.starts_with("正在告警 1 组：\n#"), "{text}");
    assert!(text.contains(&format!("#{r} ")), "{text}");

    assert_eq!(
        gateway_event(
            &srv,
            Some(&bearer),
            "stranger@im.wechat",
            &format!("确认 {r}")
        )
        .await,
        200
    );
    let sends = gw.wait_for(3, SHORT).await;
    assert_eq!(sends[2].body["to_user_id"], "stranger@im.wechat");
    assert!(gateway_text(&sends[2]).starts_with("无权操作"));

    assert_eq!(
        gateway_event(&srv, Some(&bearer), "ops@im.wechat", "help").await,
        200
    );
    let sends = gw.wait_for(4, SHORT).await;
    assert!(
        gateway_text(&sends[3]).starts_with("Commands"),
        "{}",
        gateway_text(&sends[3])
    );

    let Some(am) = am else {
        return;
    };
    assert_eq!(
        gateway_event(
            &srv,
            Some(&bearer),
            "ops@im.wechat",
            &format!("静默#{r}　2小时 换盘")
        )
        .await,
        200
    );
    let sends = gw.wait_for(5, SHORT).await;
    let text = gateway_text(&sends[4]);
    assert!(
        text.starts_with(&format!("已静默 #{r} 2小时（至 ")),
        "{text}"
    );
    assert_eq!(sends[4].body["context_token"], "ctx-1");
    let all = silences(&am).await;
    let on = active(&all);
    assert_eq!(on.len(), 1, "{all:#?}");
    assert_eq!(on[0]["createdBy"], "ops@im.wechat");
    assert_eq!(on[0]["comment"], "换盘");
}

fn subscriber_config(mock: &MockWxPusher, data: &std::path::Path) -> String {
    format!(
        r#"
global: {{ wxpusher_api_url: "{}" }}
storage: {{ path: "{}" }}
chatops:
  alertmanager_url: http://127.0.0.1:9
  wxpusher_callback_secret: {CALLBACK}
  allowed: [ UID_db1 ]
route: {{ receiver: dba }}
receivers:
  - name: dba
    wxpusher_configs:
      - {{ app_token: AT_test_token, subscriber_tags: [ team-db ] }}
"#,
        mock.url,
        data.display()
    )
}

async fn subscribe(srv: &TestServer, secret: &str, uid: &str, extra: &str) -> u16 {
    let body = json!({"action": "app_subscribe", "data": {"appId": 97, "appKey": "AK_x",
        "appName": "告警", "source": "scan", "userName": "", "userHeadImg": "",
        "time": 1569416451573i64, "uid": uid, "extra": extra}});
    srv.post(&format!("/callback/wxpusher/{secret}"), body.to_string())
        .await
        .0
}

#[tokio::test]
async fn subscriber_tags_route_to_uids_learned_from_callbacks_across_a_restart() {
    let mock = MockWxPusher::start().await;
    let data = tempfile::tempdir().unwrap();
    let config = subscriber_config(&mock, data.path());
    let srv = TestServer::start(&config).await;
    assert_eq!(subscribe(&srv, CALLBACK, "UID_db1", "team-db").await, 200);
    assert_eq!(subscribe(&srv, CALLBACK, "UID_web", "team-web").await, 200);
    assert_eq!(subscribe(&srv, CALLBACK, "UID_plain", "").await, 200);
    assert_eq!(
        subscribe(&srv, "wrong-secret-0123456789", "UID_evil", "team-db").await,
        404
    );
    assert_eq!(
        srv.post(
            &format!("/callback/wxpusher/{CALLBACK}"),
            r#"{"action":"order_pay","data":{}}"#
        )
        .await,
        (200, "ignored\n".to_string())
    );
    assert_eq!(
        srv.post("/webhook", example("alertmanager-firing.json"))
            .await
            .0,
        200
    );
    let reqs = mock.wait_for(1, SHORT).await;
    assert_eq!(reqs[0].body["uids"], json!(["UID_db1"]));
    srv.stop().await;

    // A new process on the same store still knows the subscriber.
    let srv = TestServer::start(&config).await;
    assert_eq!(subscribe(&srv, CALLBACK, "UID_db2", "team-db").await, 200);
    assert_eq!(
        srv.post("/webhook", example("alertmanager-resolved.json"))
            .await
            .0,
        200
    );
    let reqs = mock.wait_for(2, SHORT).await;
    assert_eq!(reqs[1].body["uids"], json!(["UID_db1", "UID_db2"]));
    srv.stop().await;
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn qrcode_command_creates_a_code_for_the_receivers_app() {
    let mock = MockWxPusher::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    std::fs::write(&path, subscriber_config(&mock, &dir.path().join("data"))).unwrap();
    let run = |args: Vec<String>| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_alertmanager-wechat"))
            .args(args)
            .output()
            .await
            .unwrap()
    };
    let config = format!("--config.file={}", path.display());
    let out = run(vec![
        "qrcode".into(),
        config.clone(),
        "--receiver=dba".into(),
        "--extra=team-db".into(),
        "--valid=7d".into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=QR_team-db\n"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("short URL: https://wxpusher.example/s/QR_team-db"),
        "{stderr}"
    );
    assert_eq!(
        mock.qrcode_requests(),
        [json!({"appToken": "AT_test_token", "extra": "team-db", "validTime": 604800})]
    );

    // Refused before any request: an unknown receiver, a validity over WxPusher's 30 days.
    let out = run(vec![
        "qrcode".into(),
        config.clone(),
        "--receiver=nope".into(),
        "--extra=x".into(),
    ])
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown receiver \"nope\""));
    let out = run(vec![
        "qrcode".into(),
        config,
        "--receiver=dba".into(),
        "--extra=team-db".into(),
        "--valid=31d".into(),
    ])
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--valid must be between 1s and 30d"));
    assert_eq!(mock.qrcode_requests().len(), 1);
}

/// The README's chatops example, between its markers, passes `check-config`.
#[test]
fn readme_chatops_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = "<!-- chatops example: checked by tests -->\n```yaml\n";
    let from = readme.find(start).expect("README has the example marker") + start.len();
    let yaml = &readme[from..from + readme[from..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chatops.yml");
    std::fs::write(&path, yaml).unwrap();
    let (out, ok) = alertmanager_wechat::cli::check_config(&[path]);
    assert!(ok, "{out}\n{yaml}");
    assert!(out.contains("OK (1 receivers, 2 integrations)"), "{out}");
}

#[tokio::test]
async fn callbacks_do_not_exist_without_their_secret_and_refuse_malformed_bodies() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&crate::support::one_receiver(&mock, "")).await;
    assert_eq!(up_command(&srv, CALLBACK, "UID_a", "help").await, 404);
    let bearer = format!("Bearer {GATEWAY_SECRET}");
    assert_eq!(
        gateway_event(&srv, Some(&bearer), "u@im.wechat", "help").await,
        404
    );
    srv.stop().await;

    // Only the WxPusher callback configured: the gateway's stays absent.
    let data = tempfile::tempdir().unwrap();
    let srv = TestServer::start(&subscriber_config(&mock, data.path())).await;
    assert_eq!(
        gateway_event(&srv, Some(&bearer), "u@im.wechat", "help").await,
        404
    );
    let (status, body) = srv
        .post(&format!("/callback/wxpusher/{CALLBACK}"), "{not json")
        .await;
    assert_eq!(status, 400);
    assert!(body.starts_with("malformed callback: "), "{body}");
    assert!(!body.contains(CALLBACK));
    let (status, _) = srv
        .post(
            &format!("/callback/wxpusher/{CALLBACK}"),
            r#"{"action":"send_up_cmd","data":{"content":"help"}}"#,
        )
        .await;
    assert_eq!(status, 400, "a command without a uid");
    srv.stop().await;
    assert!(mock.requests().is_empty());
}

/// A payload whose `commonLabels` claims a label its only alert does not carry: the silence
/// is scoped to what the alert has, not to `severity="critical"` (which would mute every
/// critical alert).
#[tokio::test]
async fn a_silence_is_scoped_to_the_labels_the_alerts_share_not_the_claimed_common_labels() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&chatops_config(&mock, "http://127.0.0.1:9")).await;
    let Some(am) = start_alertmanager(&srv.url).await else {
        return;
    };
    std::fs::write(
        srv.dir.path().join("config.yml"),
        chatops_config(&mock, &am.url),
    )
    .unwrap();
    srv.app.reload().unwrap();
    let payload = json!({
        "version": "4", "receiver": "oncall", "status": "firing", "groupKey": "{}:{alertname=\"DiskA\"}",
        "groupLabels": {}, "commonAnnotations": {}, "externalURL": "http://am.example",
        "commonLabels": {"alertname": "DiskA", "severity": "critical"},
        "alerts": [{"status": "firing", "labels": {"alertname": "DiskA"}, "annotations": {},
                    "startsAt": "2026-11-25T08:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "", "fingerprint": "a1"}]
    });
    let r = reqwest::Client::new()
        .post(format!("{}/webhook", srv.url))
        .bearer_auth(TOKEN)
        .json(&payload)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let reqs = mock.wait_for(1, SHORT).await;
    let r = reference(content(&reqs[0]));
    assert_eq!(
        up_command(&srv, CALLBACK, "UID_e2e", &format!("silence {r} 1h disk")).await,
        200
    );
    let reqs = mock.wait_for(2, SHORT).await;
    assert!(
        content(&reqs[1]).starts_with("Silenced"),
        "{}",
        content(&reqs[1])
    );
    let all = silences(&am).await;
    let on = active(&all);
    assert_eq!(on.len(), 1, "{all:#?}");
    assert_eq!(
        on[0]["matchers"],
        json!([{"name": "alertname", "value": "DiskA", "isRegex": false, "isEqual": true}])
    );
}

fn both_channels_config(mock: &MockWxPusher, gw: &MockGateway, allowed: &str) -> String {
    format!(
        r#"
global: {{ wxpusher_api_url: "{}" }}
chatops:
  alertmanager_url: http://127.0.0.1:9
  wxpusher_callback_secret: {CALLBACK}
  weixin_gateway_secret: {GATEWAY_SECRET}
  allowed: {allowed}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs: [{{ app_token: AT_e2e, uids: [UID_e2e] }}]
    weixin_gateway_configs:
      - {{ url: "{}", account_id: wx-account-1, to_user_ids: [ "ops@im.wechat" ] }}
"#,
        mock.url, gw.url
    )
}

/// An id is allowed on its own channel only: a gateway id through the WxPusher callback, or a
/// UID through the gateway, is refused — in the list form (by the id's shape) and in the map
/// form (by the key it is listed under).
#[tokio::test]
async fn allowed_ids_work_only_through_their_own_channel() {
    for allowed in [
        "[ UID_e2e, ops@im.wechat ]",
        "{ wxpusher: [ UID_e2e ], weixin_gateway: [ ops@im.wechat ] }",
    ] {
        let mock = MockWxPusher::start().await;
        let gw = MockGateway::start("wx-account-1").await;
        let srv = TestServer::start(&both_channels_config(&mock, &gw, allowed)).await;
        let bearer = format!("Bearer {GATEWAY_SECRET}");
        // The wrong channel for each id: refused.
        assert_eq!(
            up_command(&srv, CALLBACK, "ops@im.wechat", "list").await,
            200
        );
        let reqs = mock.wait_for(1, SHORT).await;
        assert!(
            content(&reqs[0]).starts_with("Not allowed"),
            "{allowed}: {}",
            content(&reqs[0])
        );
        assert_eq!(
            gateway_event(&srv, Some(&bearer), "UID_e2e", "list").await,
            200
        );
        let sends = gw.wait_for(1, SHORT).await;
        assert!(
            gateway_text(&sends[0]).starts_with("Not allowed"),
            "{allowed}: {}",
            gateway_text(&sends[0])
        );
        // The right channel: answered.
        assert_eq!(up_command(&srv, CALLBACK, "UID_e2e", "list").await, 200);
        let reqs = mock.wait_for(2, SHORT).await;
        assert!(
            !content(&reqs[1]).starts_with("Not allowed"),
            "{allowed}: {}",
            content(&reqs[1])
        );
        assert_eq!(
            gateway_event(&srv, Some(&bearer), "ops@im.wechat", "list").await,
            200
        );
        let sends = gw.wait_for(2, SHORT).await;
        assert!(
            !gateway_text(&sends[1]).starts_with("Not allowed"),
            "{allowed}: {}",
            gateway_text(&sends[1])
        );
        let (_, m) = srv.get("/metrics").await;
        let denied = metric(
            &m,
            r#"alertmanager_wechat_chatops_commands_total{command="list",result="denied"}"#,
        );
        assert_eq!(denied, 2.0, "{allowed}: {m}");
    }
}

/// Enrolments past `chatops.max_subscribers_per_hour` are refused and counted; the CLI lists
/// the subscribers that got in and removes one, which the next alert then skips.
#[tokio::test]
async fn subscriber_enrolment_is_capped_per_hour_and_listed_and_removed_from_the_cli() {
    let mock = MockWxPusher::start().await;
    let data = tempfile::tempdir().unwrap();
    let config = subscriber_config(&mock, data.path()).replace(
        "  allowed: [ UID_db1 ]\n",
        "  allowed: [ UID_db1 ]\n  max_subscribers_per_hour: 3\n",
    );
    let file = data.path().join("config.yml");
    std::fs::write(&file, &config).unwrap();
    let srv = TestServer::start(&config).await;
    let mut codes = Vec::new();
    for uid in ["UID_s1", "UID_s2", "UID_s3", "UID_s4", "UID_s5"] {
        codes.push(subscribe(&srv, CALLBACK, uid, "team-db").await);
    }
    assert_eq!(codes, [200, 200, 200, 429, 429]);
    let (_, m) = srv.get("/metrics").await;
    let count = |r: &str| {
        metric(
            &m,
            &format!(
                r#"alertmanager_wechat_chatops_commands_total{{command="subscribe",result="{r}"}}"#
            ),
        )
    };
    assert_eq!(count("ok"), 3.0, "{m}");
    assert_eq!(count("capped"), 2.0, "{m}");
    assert_eq!(
        srv.post("/webhook", example("alertmanager-firing.json"))
            .await
            .0,
        200
    );
    let reqs = mock.wait_for(1, SHORT).await;
    assert_eq!(reqs[0].body["uids"], json!(["UID_s1", "UID_s2", "UID_s3"]));
    srv.stop().await;

    let bin = env!("CARGO_BIN_EXE_alertmanager-wechat");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .arg(format!("--config.file={}", file.display()))
            .arg("subscribers")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (ok, list) = cli(&["list"]);
    assert!(ok, "{list}");
    let uids: Vec<&str> = list
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(uids, ["UID_s1", "UID_s2", "UID_s3"], "{list}");
    assert!(
        list.lines().skip(1).all(|l| l.ends_with(" team-db")),
        "{list}"
    );
    let (ok, out) = cli(&["remove", "UID_s2"]);
    assert!(ok, "{out}");
    assert_eq!(out, "removed UID_s2 (1 subscriptions)\n");
    let (ok, out) = cli(&["remove", "UID_s2"]);
    assert!(!ok);
    assert_eq!(out, "no subscriber UID_s2\n");

    // The next alert skips the removed UID.
    let srv = TestServer::start(&config).await;
    assert_eq!(
        srv.post("/webhook", example("alertmanager-resolved.json"))
            .await
            .0,
        200
    );
    let reqs = mock.wait_for(2, SHORT).await;
    assert_eq!(reqs[1].body["uids"], json!(["UID_s1", "UID_s3"]));
    srv.stop().await;
}

/// A replayed `send_up_cmd` (same uid, time and text) is not run again; a group whose only
/// common label is `severity` is silenced only with `force` after the duration.
#[tokio::test]
async fn replayed_commands_run_once_and_broad_silences_need_force() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&chatops_config(&mock, "http://127.0.0.1:9")).await;
    let Some(am) = start_alertmanager(&srv.url).await else {
        return;
    };
    std::fs::write(
        srv.dir.path().join("config.yml"),
        chatops_config(&mock, &am.url),
    )
    .unwrap();
    srv.app.reload().unwrap();
    post_alerts(
        &am,
        json!([
            {"labels": {"severity": "warning", "instance": "a", "job": "disk"}},
            {"labels": {"severity": "warning", "instance": "b", "job": "cpu"}}
        ]),
    )
    .await;
    let reqs = mock.wait_for(1, WAIT).await;
    let r = reference(content(&reqs[0]));

    // Only `severity` in common: refused, nothing silenced.
    assert_eq!(
        up_command(&srv, CALLBACK, "UID_e2e", &format!("silence {r} 1h")).await,
        200
    );
    let reqs = mock.wait_for(2, SHORT).await;
    assert!(
        content(&reqs[1]).contains("share only broad labels (severity=\"warning\")"),
        "{}",
        content(&reqs[1])
    );
    assert!(active(&silences(&am).await).is_empty());

    // Forced, and the callback then replayed as it was: one silence, one reply.
    let body = json!({"action": "send_up_cmd", "data": {"uid": "UID_e2e", "appId": 97,
        "time": next_time(), "content": format!("silence {r} 1h force")}})
    .to_string();
    let path = format!("/callback/wxpusher/{CALLBACK}");
    assert_eq!(srv.post(&path, body.clone()).await.0, 200);
    let reqs = mock.wait_for(3, SHORT).await;
    assert!(
        content(&reqs[2]).starts_with(&format!("Silenced #{r} for 1h")),
        "{}",
        content(&reqs[2])
    );
    assert_eq!(srv.post(&path, body).await.0, 200);
    let all = silences(&am).await;
    assert_eq!(active(&all).len(), 1, "{all:#?}");
    // The replay was answered before the callback returned: no second reply is coming.
    assert_eq!(mock.requests().len(), 3);
}

/// On call by reply: `值班` lists who is on call per schedule; `值班 NAME 2h` from the person on
/// call makes NAME cover their shifts (an override replacing them, seen by the API), replies in
/// the command's language; someone who is no person cannot hand over a shift or ask without
/// `chatops.allowed`.
#[tokio::test]
async fn oncall_replies_list_who_is_on_call_and_hand_over_the_callers_shift() {
    use crate::console::{ADMIN_PASSWORD, ADMIN_USER, basic};
    let mock = MockWxPusher::start().await;
    let cfg = format!(
        r#"
global: {{ wxpusher_api_url: "{}", timezone: Asia/Shanghai }}
auth:
  bearer_token: {TOKEN}
  admin:
    basic_auth: {{ username: {ADMIN_USER}, password: {ADMIN_PASSWORD} }}
chatops:
  alertmanager_url: http://127.0.0.1:9
  wxpusher_callback_secret: {CALLBACK}
  allowed: [ UID_ops ]
oncall:
  channels:
    wxpusher: {{ app_token: AT_e2e }}
people:
  - {{ name: zhangsan, display_name: 张三, contacts: {{ wxpusher: {{ uid: UID_zs }} }} }}
  - {{ name: lisi, display_name: 李四, contacts: {{ wxpusher: {{ uid: UID_ls }} }} }}
  - {{ name: wangwu, display_name: 王五, contacts: {{ wxpusher: {{ uid: UID_ww }} }} }}
schedules:
  - name: sre-primary
    time_zone: Asia/Shanghai
    rotation: {{ every: 1w, handoff: "2026-01-05T10:00:00+08:00", people: [zhangsan, lisi] }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs:
      - {{ app_token: AT_e2e, uids: [UID_ops] }}
"#,
        mock.url
    );
    let srv = TestServer::start(&cfg).await;
    let now_on_call = || async {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1/oncall", srv.url))
            .header("authorization", basic())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["items"][0].clone()
    };
    let item = now_on_call().await;
    let (on, off) = match item["person"].as_str().unwrap() {
        "zhangsan" => (("UID_zs", "张三"), ("UID_ls", "李四")),
        _ => (("UID_ls", "李四"), ("UID_zs", "张三")),
    };
    let mut n = 0;
    let mut ask = async |uid: &str, text: &str| {
        assert_eq!(up_command(&srv, CALLBACK, uid, text).await, 200);
        n += 1;
        let r = mock.wait_for(n, SHORT).await.remove(n - 1);
        assert_eq!(r.body["uids"], json!([uid]), "{}", r.body);
        content(&r).to_string()
    };

    // Who is on call: the person, until the handoff, who is next.
    let reply = ask(off.0, "值班").await;
    assert!(
        reply.starts_with(&format!("当前值班：\nsre-primary：{}，至 ", on.1)),
        "{reply}"
    );
    assert!(reply.ends_with(&format!("，下一位 {}", off.1)), "{reply}");
    let reply = ask("UID_ops", "oncall").await;
    assert!(
        reply.starts_with(&format!("On call now:\nsre-primary: {} until ", on.1)),
        "{reply}"
    );
    // Not a person and not allowed: refused.
    let reply = ask("UID_stranger", "oncall").await;
    assert!(reply.starts_with("Not allowed"), "{reply}");
    let reply = ask("UID_ops", "oncall wangwu 2h").await;
    assert!(reply.starts_with("Cannot cover"), "{reply}");
    // The person off call has no shift to hand over; nobody by that name; bad duration.
    let reply = ask(off.0, "值班 王五 2h").await;
    assert!(reply.starts_with("你当前不在任何排班上值班"), "{reply}");
    let reply = ask(on.0, "值班 zhaoliu 2h").await;
    assert!(reply.starts_with("people 中没有“zhaoliu”"), "{reply}");
    let reply = ask(on.0, "值班 wangwu 2x").await;
    assert!(reply.starts_with("“2x”不是时长"), "{reply}");
    assert_eq!(
        now_on_call().await["person"],
        item["person"],
        "nothing changed"
    );

    // The person on call hands over: wangwu covers from now for 2 hours.
    let reply = ask(on.0, "值班 wangwu 2h").await;
    assert!(
        reply.starts_with("已安排 王五 替你值班（sre-primary），至 "),
        "{reply}"
    );
    let covered = now_on_call().await;
    assert_eq!(covered["person"], "wangwu", "{covered}");
    let until: chrono::DateTime<chrono::Utc> = covered["until"].as_str().unwrap().parse().unwrap();
    // The cover replaces the caller only: it ends after 2 hours or with their shift.
    let shift_end: chrono::DateTime<chrono::Utc> = item["until"].as_str().unwrap().parse().unwrap();
    let expected = shift_end.min(chrono::Utc::now() + chrono::Duration::hours(2));
    assert!(
        (until - expected).num_seconds().abs() < 600,
        "{covered}, expected about {expected}"
    );
    let r = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/schedules/sre-primary/overrides",
            srv.url
        ))
        .header("authorization", basic())
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let text = v.to_string();
    assert!(
        text.contains(r#""person":"wangwu""#)
            && text.contains(&format!(
                r#""replaces":"{}""#,
                item["person"].as_str().unwrap()
            )),
        "{text}"
    );
    let reply = ask(off.0, "值班").await;
    assert!(
        reply.starts_with("当前值班：\nsre-primary：王五，至 "),
        "{reply}"
    );
}
