//! The exact requests the WeChat Official Account API receives: tokens, template messages,
//! subscribe notifications, field limits and error handling.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use alertmanager_wechat::cli;
use alertmanager_wechat::config::Config;
use alertmanager_wechat::runtime::Runtime;
use serde_json::json;

use crate::support::official_account::{MockOfficialAccount, Reply};
use crate::support::{TestServer, example, metric};

const WAIT: Duration = Duration::from_secs(10);
const SECRET: &str = "oa_app_secret_0123456789abcdef";

/// A receiver `oa` with one Official Account integration; `extra` is more YAML keys of it.
fn config(mock: &MockOfficialAccount, openids: &[&str], extra: &str) -> String {
    format!(
        r#"
global: {{ wechat_api_url: "{url}", timezone: Asia/Shanghai }}
route: {{ receiver: oa }}
receivers:
  - name: oa
    official_account_configs:
      - app_id: wx0123456789abcdef
        app_secret: {SECRET}
        template_id: TPL_alert
        to_openids: [{openids}]
        token_min_interval: 0s
{extra}
"#,
        url = mock.url,
        openids = openids.join(", "),
    )
}

/// Sends per openid, in arrival order.
fn sends_by_openid(reqs: &[crate::support::official_account::Recorded]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in reqs.iter().filter(|r| !r.is_token()) {
        *m.entry(r.openid().to_string()).or_insert(0) += 1;
    }
    m
}

#[tokio::test]
async fn token_is_cached_across_sends_and_refreshed_once_under_20_concurrent_sends() {
    let mock = MockOfficialAccount::start().await;
    let openids: Vec<String> = (1..=20).map(|i| format!("o_user_{i:02}")).collect();
    let ids: Vec<&str> = openids.iter().map(String::as_str).collect();
    let srv = TestServer::start(&config(&mock, &ids, "        max_concurrency: 20")).await;

    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for_sends(20, WAIT).await;
    srv.post("/webhook", example("alertmanager-resolved.json"))
        .await;
    mock.wait_for_sends(40, WAIT).await;
    // One token for 40 messages over two notifications.
    let tokens = mock.token_requests();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].method, "POST");
    assert_eq!(tokens[0].path, "/cgi-bin/stable_token");
    assert_eq!(
        tokens[0].body,
        json!({"grant_type": "client_credential", "appid": "wx0123456789abcdef",
               "secret": SECRET, "force_refresh": false})
    );

    // The token expires; 20 sends in flight at once all get 42001.
    mock.expire_token();
    srv.post("/webhook", example("grafana-firing.json")).await;
    mock.wait_for_sends(80, WAIT).await;
    srv.stop().await;

    let all = mock.requests();
    assert_eq!(mock.token_requests().len(), 2, "exactly one refresh");
    let sends = mock.send_requests();
    assert_eq!(sends.len(), 80, "40 + 20 rejected + 20 resent");
    assert!(sends[..40].iter().all(|r| r.token() == Some("TOKEN_1")));
    let third: Vec<_> = sends[40..].iter().collect();
    assert_eq!(
        third
            .iter()
            .filter(|r| r.token() == Some("TOKEN_1"))
            .count(),
        20
    );
    assert_eq!(
        third
            .iter()
            .filter(|r| r.token() == Some("TOKEN_2"))
            .count(),
        20
    );
    for (openid, n) in sends_by_openid(&all) {
        assert_eq!(n, 4, "{openid}: 2 notifications + 1 rejected and resent");
    }
    for r in &sends {
        assert_eq!(r.path, "/cgi-bin/message/template/send");
        assert_eq!(r.query, format!("access_token={}", r.token().unwrap()));
    }
}

#[tokio::test]
async fn expired_token_mid_stream_refreshes_once_and_the_message_is_delivered() {
    let mock = MockOfficialAccount::start().await;
    mock.script_openid("o_b", [Reply::Expire]);
    let srv = TestServer::start(&config(
        &mock,
        &["o_a", "o_b", "o_c"],
        "        max_concurrency: 1",
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for_sends(4, WAIT).await;
    srv.stop().await;
    let seq: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| {
            if r.is_token() {
                "token".to_string()
            } else {
                format!("{} {}", r.openid(), r.token().unwrap())
            }
        })
        .collect();
    assert_eq!(
        seq,
        [
            "token",
            "o_a TOKEN_1",
            "o_b TOKEN_1",
            "token",
            "o_b TOKEN_2",
            "o_c TOKEN_2"
        ]
    );
    let sends = mock.send_requests();
    // The resend is the same message, with the same dedupe id.
    assert_eq!(sends[1].body, sends[2].body);
}

const CJK_PAYLOAD: &str = r#"{
  "receiver": "oa", "status": "firing", "version": "4", "groupKey": "{}:{alertname=\"磁盘空间不足\"}",
  "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0,
  "groupLabels": {"alertname": "磁盘空间不足"},
  "commonLabels": {"alertname": "磁盘空间不足", "instance": "数据库主节点 db-01:9100", "owner": "欧阳娜娜张三李四王五赵六", "severity": "严重告警已触发"},
  "commonAnnotations": {"summary": "生产环境数据库服务器的根分区使用率已经超过百分之九十，请立即处理\n否则会影响写入"},
  "alerts": [{"status": "firing",
    "labels": {"alertname": "磁盘空间不足", "instance": "数据库主节点 db-01:9100", "owner": "欧阳娜娜张三李四王五赵六", "severity": "严重告警已触发"},
    "annotations": {"summary": "生产环境数据库服务器的根分区使用率已经超过百分之九十，请立即处理\n否则会影响写入", "value": "93.75 百分比"},
    "startsAt": "2026-11-25T08:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "http://prometheus:9090/graph", "fingerprint": "aaaabbbbccccdddd"}]
}"#;

#[tokio::test]
async fn fields_are_cut_per_type_on_cjk_text() {
    let mock = MockOfficialAccount::start().await;
    let srv = TestServer::start(&config(
        &mock,
        &["o_a"],
        r#"        url: 'https://grafana.example.com/d/{{commonLabels.alertname}}'
        data:
          thing1: '{{commonAnnotations.summary}}'
          character_string2: '{{commonLabels.instance}}'
          phrase3: '{{commonLabels.severity}}'
          time4: '{{alerts.0.startsAt}}'
          name5: '{{commonLabels.owner}}'
          number6: '{{alerts.0.annotations.value}}'
          thing7: '{{commonLabels.alertname}}'"#,
    ))
    .await;
    let (code, _) = srv.post("/webhook", CJK_PAYLOAD).await;
    assert_eq!(code, 200);
    let sends = mock.wait_for_sends(1, WAIT).await;
    srv.stop().await;
    let b = &sends[0].body;
    assert_eq!(
        b["data"],
        json!({
            "thing1": {"value": "生产环境数据库服务器的根分区使用率已经…"},
            "character_string2": {"value": "db-01:9100"},
            "phrase3": {"value": "严重告警已"},
            "time4": {"value": "2026-11-25 16:00"},
            "name5": {"value": "欧阳娜娜张三李四王五"},
            "number6": {"value": "93.75"},
            "thing7": {"value": "磁盘空间不足"},
        })
    );
    assert_eq!(b["touser"], "o_a");
    assert_eq!(b["template_id"], "TPL_alert");
    assert_eq!(b["url"], "https://grafana.example.com/d/磁盘空间不足");
    assert_eq!(mock.send_requests().len(), 1);
}

#[tokio::test]
async fn one_openid_not_following_does_not_fail_the_others_and_is_not_retried() {
    let mock = MockOfficialAccount::start().await;
    mock.script_openid("o_b", [Reply::Err(43004, "require subscribe rid: 9")]);
    mock.script_openid("o_c", [Reply::Err(-1, "system error rid: 10")]);
    let srv = TestServer::start(&config(&mock, &["o_a", "o_b", "o_c"], "")).await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for_sends(4, WAIT).await;
    let app = srv.app.clone();
    srv.stop().await;
    let by = sends_by_openid(&mock.requests());
    assert_eq!(
        by,
        BTreeMap::from([("o_a".into(), 1), ("o_b".into(), 1), ("o_c".into(), 2)])
    );
    // The retry to o_c carries the same client_msg_id as the first attempt.
    let c: Vec<_> = mock
        .send_requests()
        .into_iter()
        .filter(|r| r.openid() == "o_c")
        .collect();
    assert_eq!(c[0].body["client_msg_id"], c[1].body["client_msg_id"]);
    assert_ne!(
        c[0].body["client_msg_id"],
        mock.send_requests()
            .iter()
            .find(|r| r.openid() == "o_a")
            .unwrap()
            .body["client_msg_id"]
    );
    let text = metrics_text(&app);
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_deliveries_failed_total{integration="official_account",reason="upstream_error"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_deliveries_failed_total{integration="official_account",reason="recipient"}"#
        ),
        1.0
    );
}

fn metrics_text(app: &alertmanager_wechat::server::App) -> String {
    app.metrics.encode()
}

#[tokio::test]
async fn daily_quota_is_a_quota_failure_and_is_not_retried() {
    let mock = MockOfficialAccount::start().await;
    mock.set_send_default(Reply::Err(45009, "reach max api daily quota limit rid: 4"));
    let srv = TestServer::start(&config(
        &mock,
        &["o_a", "o_b"],
        "        max_concurrency: 1",
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for_sends(2, WAIT).await;
    let app = srv.app.clone();
    srv.stop().await;
    assert_eq!(mock.send_requests().len(), 2);
    let text = metrics_text(&app);
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_deliveries_failed_total{integration="official_account",reason="quota"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"alertmanager_wechat_deliveries_retried_total{integration="official_account"}"#
        ),
        0.0
    );
}

#[tokio::test]
async fn daily_quota_without_fallback_waits_for_beijing_midnight() {
    use alertmanager_wechat::channels::official_account::quota_resets_at;
    let mock = MockOfficialAccount::start().await;
    mock.set_send_default(Reply::Err(45009, "reach max api daily quota limit rid: 4"));
    let srv = TestServer::start(&config(&mock, &["o_a"], "")).await;
    let before = quota_resets_at(chrono::Utc::now());
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for_sends(1, WAIT).await;
    let store = &srv.app.queue.store;
    // Parked, not given up: the job is still queued, due when the quota is renewed.
    let deadline = tokio::time::Instant::now() + WAIT;
    let due = loop {
        match store.next_due().await.unwrap() {
            Some(t) if t > chrono::Utc::now() + chrono::Duration::minutes(1) => break t,
            _ if tokio::time::Instant::now() > deadline => panic!("the job was never parked"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let after = quota_resets_at(chrono::Utc::now());
    assert!(
        due == before || due == after,
        "due {due}, expected {before}"
    );
    assert_eq!(store.dead_letter_count().await.unwrap(), 0);
    let app = srv.app.clone();
    srv.stop().await;
    assert_eq!(mock.send_requests().len(), 1);
    assert_eq!(
        metric(
            &metrics_text(&app),
            r#"alertmanager_wechat_deliveries_failed_total{integration="official_account",reason="quota"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn daily_quota_with_a_fallback_goes_there_at_once() {
    let mock = MockOfficialAccount::start().await;
    mock.set_send_default(Reply::Err(45009, "reach max api daily quota limit rid: 4"));
    let wx = crate::support::wxpusher::MockWxPusher::start().await;
    let yaml = format!(
        "{}  - name: backup\n    wxpusher_configs:\n      - {{ app_token: AT_backup, uids: [UID_b], api_url: \"{}\" }}\n",
        config(&mock, &["o_a"], "        fallback_receiver: backup"),
        wx.url
    );
    let srv = TestServer::start(&yaml).await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    let reqs = wx.wait_for(1, WAIT).await;
    assert_eq!(reqs[0].body["uids"], json!(["UID_b"]));
    let store = srv.app.queue.store.clone();
    srv.stop().await;
    assert_eq!(mock.send_requests().len(), 1);
    assert_eq!(wx.requests().len(), 1);
    // The original is kept as a dead letter, so the broken integration stays visible.
    assert_eq!(store.dead_letter_count().await.unwrap(), 1);
}

#[tokio::test]
async fn sends_never_exceed_the_apps_rate_limit() {
    let mock = MockOfficialAccount::start().await;
    let openids: Vec<String> = (0..8).map(|i| format!("o_{i}")).collect();
    let openids: Vec<&str> = openids.iter().map(String::as_str).collect();
    let srv = TestServer::start(&config(
        &mock,
        &openids,
        "        max_concurrency: 8\n        rate_limit: { rate: 4, burst: 2 }",
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for_sends(8, WAIT).await;
    srv.stop().await;
    let times: Vec<_> = mock.send_requests().iter().map(|r| r.at).collect();
    assert_eq!(times.len(), 8);
    // In any window of T seconds at most burst + rate·T sends (plus arrival jitter); without
    // the limit all eight go out at once.
    for i in 0..times.len() {
        for j in i..times.len() {
            let window = times[j].duration_since(times[i]).as_secs_f64() + 0.1;
            assert!(
                (j - i + 1) as f64 <= 2.0 + 4.0 * window,
                "{} sends within {window}s",
                j - i + 1
            );
        }
    }
}

#[tokio::test]
async fn subscribe_notifications_use_bizsend_and_the_classic_token() {
    let mock = MockOfficialAccount::start().await;
    mock.script_openid(
        "o_b",
        [Reply::Err(43101, "user refuse to accept the msg rid: 5")],
    );
    let srv = TestServer::start(&config(
        &mock,
        &["o_a", "o_b"],
        "        kind: subscribe\n        token_endpoint: classic\n        data: { thing1: '{{> official_account.title}}' }",
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for_sends(2, WAIT).await;
    srv.stop().await;
    let tokens = mock.token_requests();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].method, "GET");
    assert_eq!(tokens[0].path, "/cgi-bin/token");
    assert_eq!(
        tokens[0].query,
        format!("grant_type=client_credential&appid=wx0123456789abcdef&secret={SECRET}")
    );
    let sends = mock.send_requests();
    assert_eq!(sends.len(), 2, "43101 is not retried");
    let a = sends.iter().find(|r| r.openid() == "o_a").unwrap();
    assert_eq!(a.path, "/cgi-bin/message/subscribe/bizsend");
    assert_eq!(
        a.body,
        json!({"touser": "o_a", "template_id": "TPL_alert", "page": "http://alertmanager:9093",
               "data": {"thing1": {"value": "HighCPU 共2条"}}})
    );
}

#[tokio::test]
async fn wrong_secret_fails_without_sending_and_secrets_stay_out_of_errors() {
    let mock = MockOfficialAccount::start().await;
    mock.script_token([Reply::Err(40125, "invalid appsecret rid: 6")]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yml");
    std::fs::write(&path, config(&mock, &["o_a"], "")).unwrap();
    let rt = cli::load(&path).unwrap();
    let (out, ok) = cli::send_test(&rt, "oa").await;
    assert!(!ok);
    assert_eq!(
        out,
        "official_account[0]: failed (permanent): official_account: error 40125: invalid appsecret rid: 6 (recipients: o_a)\n"
    );
    assert!(mock.send_requests().is_empty());

    // A send error whose text echoes the token: neither token nor secret reach the output.
    mock.set_send_default(Reply::Err(
        47003,
        "argument invalid! data.thing1.value invalid {token}",
    ));
    let (out, ok) = cli::send_test(&rt, "oa").await;
    assert!(!ok);
    assert!(!out.contains("TOKEN_1") && !out.contains(SECRET), "{out}");
    assert!(
        out.contains("template field thing1 (thing: at most 20 characters) rejected"),
        "{out}"
    );
}

#[test]
fn render_prints_the_exact_json_per_openid_with_the_token_masked() {
    let cfg = r#"
route: { receiver: oa }
receivers:
  - name: oa
    official_account_configs:
      - app_id: wx0123456789abcdef
        app_secret: oa_app_secret_0123456789abcdef
        template_id: TPL_alert
        to_openids: [o_a, o_b]
        miniprogram: { appid: wxmini0001, pagepath: 'pages/alert?id=1' }
"#;
    let rt = Runtime::build(Config::parse(cfg, "t.yml", Path::new(".")).unwrap()).unwrap();
    let now = "2026-11-25T08:30:00Z".parse().unwrap();
    let out = cli::render(
        &rt,
        example("alertmanager-firing.json").as_bytes(),
        None,
        now,
    )
    .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].integration, "official_account[0]");
    let reqs = &out[0].requests;
    assert_eq!(reqs.len(), 2);
    for (req, openid, msg_id) in [
        (&reqs[0], "o_a", "amw-c3ce9c70d1ffaf3c901f5f0bf2e08d2b"),
        (&reqs[1], "o_b", "amw-4e85345708683209657e6085f56b9a40"),
    ] {
        assert_eq!(req.method, "POST");
        assert_eq!(
            req.url,
            "https://api.weixin.qq.com/cgi-bin/message/template/send?access_token=ACCESS_TOKEN"
        );
        assert_eq!(
            req.body,
            json!({
                "touser": openid, "template_id": "TPL_alert", "url": "http://alertmanager:9093",
                "miniprogram": {"appid": "wxmini0001", "pagepath": "pages/alert?id=1"},
                "client_msg_id": msg_id,
                "data": {
                    "thing1": {"value": "HighCPU 共2条"},
                    "time2": {"value": "2026-11-25 16:00"},
                    "phrase3": {"value": "告警"},
                }
            })
        );
    }
    let text = cli::format_rendered(&out);
    assert!(!text.contains("oa_app_secret"), "{text}");
}

#[test]
fn check_config_warns_about_unknown_field_types_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yml");
    std::fs::write(
        &path,
        "route: {receiver: oa}\nreceivers:\n  - name: oa\n    official_account_configs:\n      - {app_id: wx1, app_secret: s3cret, template_id: T, to_openids: [o], data: {keyword1: '{{status}}', thing2: x}}\n",
    )
    .unwrap();
    let (out, ok) = cli::check_config(std::slice::from_ref(&path));
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "{}: receivers[0].official_account_configs[0].data.keyword1: warning: unknown field type; the value is cut to 20 characters like a thing field",
            path.display()
        )),
        "{out}"
    );
    assert!(!out.contains("thing2"), "{out}");
}
