//! WeCom group robots and application messages against the mock qyapi: the exact requests,
//! limits, splitting, mentions, error codes, tokens, per-recipient failures and a storm.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use alertmanager_wechat::cli;
use alertmanager_wechat::config::Config;
use alertmanager_wechat::runtime::Runtime;
use serde_json::json;

use crate::support::wecom::{MockWecom, Reply};
use crate::support::{TestServer, example, metric};

const WAIT: Duration = Duration::from_secs(15);
const KEY: &str = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa";
const CORP: &str = "ww0123456789abcdef";
const SECRET: &str = "wecom_app_secret_0123456789abcdef";

async fn mock() -> MockWecom {
    MockWecom::start(&[KEY], CORP, SECRET).await
}

fn robot_config(mock: &MockWecom, robot: &str) -> String {
    format!(
        r#"
global: {{ wecom_api_url: "{url}", timezone: Asia/Shanghai }}
route: {{ receiver: sre-group }}
receivers:
  - name: sre-group
    wecom_robot_configs:
      - key: {KEY}
{robot}
"#,
        url = mock.url
    )
}

fn app_config(mock: &MockWecom, app: &str) -> String {
    format!(
        r#"
global: {{ wecom_api_url: "{url}", timezone: Asia/Shanghai }}
route: {{ receiver: sre-app }}
receivers:
  - name: sre-app
    wecom_app_configs:
      - corp_id: {CORP}
        agent_id: 1000002
        api_secret: {SECRET}
{app}
"#,
        url = mock.url
    )
}

/// `n` alerts of one group, each with a long Chinese summary.
fn many(n: usize, summary: &str) -> String {
    let alerts: Vec<_> = (0..n)
        .map(|i| {
            json!({"status": "firing",
                "labels": {"alertname": format!("Alert{i:03}"), "severity": "warning", "instance": format!("i-{i:03}")},
                "annotations": {"summary": summary},
                "startsAt": "2026-11-25T08:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph", "fingerprint": format!("fp{i:04}")})
        })
        .collect();
    json!({"receiver": "wechat", "status": "firing", "alerts": alerts,
        "groupLabels": {"alertname": "Many"}, "commonLabels": {"severity": "warning"},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "version": "4",
        "groupKey": "{}:{alertname=\"Many\"}", "truncatedAlerts": 0})
    .to_string()
}

fn load(yaml: &str) -> Result<Runtime, String> {
    Config::parse(yaml, "test.yml", Path::new("."))
        .map_err(|e| e.to_string())
        .and_then(|c| Runtime::build(c).map_err(|e| e.to_string()))
}

fn errors(yaml: &str) -> String {
    match load(yaml) {
        Ok(_) => String::new(),
        Err(e) => e,
    }
}

#[tokio::test]
async fn wecom_robot_markdown_is_the_exact_request_coloured_by_state() {
    let mock = mock().await;
    let srv = TestServer::start(&robot_config(&mock, "")).await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    let reqs = mock.wait_robot(1, WAIT).await;
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/cgi-bin/webhook/send")
    );
    assert_eq!(r.param("key").as_deref(), Some(KEY));
    assert_eq!(r.body["msgtype"], "markdown");
    let content = r.body["markdown"]["content"].as_str().unwrap();
    let first = content.lines().next().unwrap();
    assert!(first.starts_with("<font color=\"warning\">**"), "{content}");
    let preview = first
        .trim_start_matches("<font color=\"warning\">**")
        .trim_end_matches("**</font>");
    assert!(
        alertmanager_wechat::text::visible_len(preview) <= 20,
        "{preview}"
    );
    assert!(content.contains("HighCPU"), "{content}");

    srv.post("/webhook", example("alertmanager-resolved.json"))
        .await;
    let reqs = mock.wait_robot(2, WAIT).await;
    let content = reqs[1].body["markdown"]["content"].as_str().unwrap();
    assert!(content.starts_with("<font color=\"info\">"), "{content}");
    srv.stop().await;
}

#[tokio::test]
async fn wecom_robot_text_with_a_pasted_url_and_templated_mentions() {
    let mock = mock().await;
    let yaml = robot_config(&mock, "").replace(
        &format!("key: {KEY}"),
        &format!(
            "key: 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}'\n        msgtype: text\n        mentioned_list: ['{{{{commonLabels.severity}}}}-oncall', '@all']\n        mentioned_mobiles: ['13800000000']"
        ),
    );
    let srv = TestServer::start(&yaml).await;
    srv.post("/webhook", many(1, "磁盘快满了")).await;
    let reqs = mock.wait_robot(1, WAIT).await;
    srv.stop().await;
    assert_eq!(reqs[0].param("key").as_deref(), Some(KEY));
    assert_eq!(reqs[0].body["msgtype"], "text");
    assert_eq!(
        reqs[0].body["text"]["mentioned_list"],
        json!(["warning-oncall", "@all"])
    );
    assert_eq!(
        reqs[0].body["text"]["mentioned_mobile_list"],
        json!(["13800000000"])
    );
    assert!(reqs[0].content().contains("磁盘快满了"));
}

#[tokio::test]
async fn wecom_robot_markdown_mentions_inline_and_mobiles_in_a_text_message() {
    let mock = mock().await;
    let srv = TestServer::start(&robot_config(
        &mock,
        "        mentioned_list: [zhangsan]\n        mentioned_mobiles: ['13800000000']",
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    let reqs = mock.wait_robot(2, WAIT).await;
    srv.stop().await;
    assert!(
        reqs[0].content().ends_with("<@zhangsan>"),
        "{}",
        reqs[0].content()
    );
    assert_eq!(reqs[1].body["msgtype"], "text");
    assert_eq!(
        reqs[1].body["text"]["mentioned_mobile_list"],
        json!(["13800000000"])
    );
}

#[tokio::test]
async fn wecom_robot_splits_on_alert_boundaries_within_the_byte_limits() {
    for (msgtype, limit) in [("markdown", 4096), ("text", 2048)] {
        let mock = mock().await;
        let srv = TestServer::start(&robot_config(
            &mock,
            &format!("        msgtype: {msgtype}\n        rate_limit: {{ rate: 100, burst: 100 }}"),
        ))
        .await;
        let summary = "数据库主库的磁盘使用率已经超过百分之九十，请尽快清理🔥".repeat(2);
        srv.post("/webhook", many(40, &summary)).await;
        mock.wait(WAIT, "every alert", |r| {
            (0..40).all(|i| {
                r.iter()
                    .any(|r| r.content().contains(&format!("Alert{i:03}")))
            })
        })
        .await;
        let reqs = mock.robot_requests();
        srv.stop().await;
        let n = reqs.len();
        assert!(n > 1, "{msgtype}: {n} parts");
        for (i, r) in reqs.iter().enumerate() {
            let c = r.content();
            assert!(c.len() <= limit, "{msgtype} part {i}: {} bytes", c.len());
            let header = format!("（{}/{n}）", i + 1);
            assert!(c.starts_with(&header), "{msgtype}: {c}");
            // Split between alerts: no alert is in two parts.
        }
        for i in 0..40 {
            let name = format!("Alert{i:03}");
            let parts = reqs.iter().filter(|r| r.content().contains(&name)).count();
            assert_eq!(parts, 1, "{msgtype}: {name} in {parts} parts");
        }
    }
}

#[tokio::test]
async fn wecom_robot_one_huge_alert_is_cut_on_a_character_boundary() {
    let mock = mock().await;
    let srv = TestServer::start(&robot_config(&mock, "        msgtype: text")).await;
    srv.post("/webhook", many(1, &"告警🔥".repeat(1000))).await;
    let reqs = mock.wait_robot(1, WAIT).await;
    srv.stop().await;
    let c = reqs[0].content();
    assert!(c.len() <= 2048, "{}", c.len());
    assert!(c.ends_with('…'), "{c}");
}

#[tokio::test]
async fn wecom_robot_93000_is_permanent_with_a_hint_and_no_key_anywhere() {
    let mock = MockWecom::start(&["another-key"], CORP, SECRET).await;
    let srv = TestServer::start(&robot_config(&mock, "")).await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_robot(1, WAIT).await;
    let mut dead = String::new();
    for _ in 0..100 {
        let (_, m) = srv.get("/metrics").await;
        if metric(&m, "alertmanager_wechat_dead_letters") >= 1.0 {
            dead = m;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!dead.is_empty(), "no dead letter");
    assert!(dead.contains(r#"integration="wecom_robot""#), "{dead}");
    assert!(
        dead.contains(
            r#"deliveries_failed_total{integration="wecom_robot",reason="bad_credentials"} 1"#
        ),
        "{dead}"
    );
    let store = srv.app.queue.store.clone();
    let (out, _) = cli::deadletters(&store, cli::DeadLetterAction::List).await;
    srv.stop().await;
    assert_eq!(mock.robot_requests().len(), 1, "not retried");
    assert!(out.contains("robot was removed"), "{out}");
    assert!(!out.contains(KEY), "{out}");
}

#[tokio::test]
async fn wecom_robot_minus_one_is_retried_and_45009_waits_for_the_minute() {
    let mock = mock().await;
    mock.script_robot([Reply::Err(-1, "system busy")]);
    let srv = TestServer::start(&robot_config(&mock, "")).await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_robot(2, WAIT).await;
    srv.stop().await;

    let mock = crate::support::wecom::MockWecom::start(&[KEY], CORP, SECRET).await;
    mock.script_robot([Reply::Err(45009, "api freq out of limit")]);
    let srv = TestServer::start(&robot_config(&mock, "")).await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_robot(1, WAIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, m) = srv.get("/metrics").await;
    srv.stop().await;
    // Retried (counted), but not within the minute.
    assert_eq!(mock.robot_requests().len(), 1);
    assert_eq!(
        metric(
            &m,
            r#"alertmanager_wechat_deliveries_retried_total{integration="wecom_robot"}"#
        ),
        1.0,
        "{m}"
    );
}

/// Posts `n` one-alert notifications, each its own group (`{prefix}000`, …), one after the
/// other; returns the group names.
async fn post_storm(srv: &TestServer, prefix: &str, n: usize, severity: &str) -> BTreeSet<String> {
    let mut groups = BTreeSet::new();
    for g in 0..n {
        let name = format!("{prefix}{g:03}");
        groups.insert(name.clone());
        let body = json!({"receiver": "wechat", "status": "firing",
            "alerts": [{"status": "firing", "labels": {"alertname": name, "severity": severity},
                "annotations": {"summary": "储存节点离线"}, "startsAt": "2026-11-25T08:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": format!("{prefix}{g:04}")}],
            "groupLabels": {"alertname": name}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "version": "4",
            "groupKey": format!("{{}}:{{alertname=\"{name}\"}}"), "truncatedAlerts": 0});
        assert_eq!(srv.post("/webhook", body.to_string()).await.0, 200);
    }
    groups
}

/// Posts a storm of `n` distinct one-alert groups, thirty at a time, so that the whole storm is
/// stored within moments even on a loaded machine (the webhook's commits are shared by the
/// requests in flight): the backlog then outgrows a slow rate limit whatever the load.
async fn post_storm_at_once(srv: &TestServer, prefix: &str, n: usize) -> BTreeSet<String> {
    let mut groups = BTreeSet::new();
    let bodies: Vec<(String, String)> = (0..n)
        .map(|g| {
            let name = format!("{prefix}{g:03}");
            let body = json!({"receiver": "wechat", "status": "firing",
                "alerts": [{"status": "firing", "labels": {"alertname": name, "severity": "warning"},
                    "annotations": {"summary": "储存节点离线"}, "startsAt": "2026-11-25T08:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": format!("{prefix}{g:04}")}],
                "groupLabels": {"alertname": name}, "commonLabels": {}, "commonAnnotations": {},
                "externalURL": "http://alertmanager:9093", "version": "4",
                "groupKey": format!("{{}}:{{alertname=\"{name}\"}}"), "truncatedAlerts": 0});
            (name, body.to_string())
        })
        .collect();
    for chunk in bodies.chunks(30) {
        let answers = futures_util::future::join_all(
            chunk.iter().map(|(_, b)| srv.post("/webhook", b.clone())),
        )
        .await;
        for ((name, _), (status, _)) in chunk.iter().zip(answers) {
            assert_eq!(status, 200, "{name}");
            groups.insert(name.clone());
        }
    }
    groups
}

/// Waits until every group is named in some message the robot got.
async fn wait_every_group(mock: &MockWecom, groups: &BTreeSet<String>, timeout: Duration) {
    mock.wait(timeout, "every group", |r| {
        groups
            .iter()
            .all(|g| r.iter().any(|r| r.content().contains(g.as_str())))
    })
    .await;
}

#[tokio::test]
async fn wecom_robot_storm_never_exceeds_the_window_and_keeps_every_group() {
    let mock = mock().await;
    // 9.5 a second stands for 20 a minute at 1/30 of the time scale: the window is 2 s and
    // the spacing keeps a 21st message out of it even with network jitter.
    // A held request must not time out and be sent again while the storm is posted.
    let srv = TestServer::start(
        &robot_config(
            &mock,
            "        msgtype: text\n        rate_limit: { rate: 9.5, burst: 1 }\n        coalesce_after: 1s",
        )
        .replace("global: { ", "global: { http_timeout: 5m, "),
    )
    .await;
    // The robot answers nothing until the storm is stored, so the backlog builds up behind it
    // whatever the machine's speed.
    mock.hold_robot();
    let groups = post_storm(&srv, "Storm", 150, "critical").await;
    mock.release_robot();
    wait_every_group(&mock, &groups, Duration::from_secs(60)).await;
    let reqs = mock.robot_requests();
    srv.stop().await;
    assert!(reqs.len() < 150, "coalesced: {} messages", reqs.len());
    let window = Duration::from_secs(2);
    for i in 0..reqs.len() {
        let within = reqs[i..]
            .iter()
            .take_while(|r| r.at.duration_since(reqs[i].at) < window)
            .count();
        assert!(
            within <= 20,
            "{within} messages within 2 s from message {i}"
        );
    }
}

/// A storm digest names every group in its line; hundreds of groups outgrow a 2048-byte text
/// message on their own. The line is paged onto parts of its own at item boundaries: every
/// group is named, no part is over the limit, nothing is cut.
#[tokio::test]
async fn wecom_robot_digest_of_300_groups_names_every_group_in_whole_parts() {
    let mock = mock().await;
    // A held request must not time out and be sent again while the storm is posted.
    let srv = TestServer::start(
        &robot_config(
            &mock,
            "        msgtype: text\n        rate_limit: { rate: 2, burst: 1 }\n        coalesce_after: 1s",
        )
        .replace("global: { ", "global: { http_timeout: 5m, "),
    )
    .await;
    // The robot answers nothing until the whole storm is stored: the backlog behind it is then
    // nearly every group, a digest far over 2048 bytes with these long names, whatever the
    // machine's speed.
    mock.hold_robot();
    let groups = post_storm_at_once(&srv, "FloodOfStorageNodesOffline", 300).await;
    mock.release_robot();
    wait_every_group(&mock, &groups, Duration::from_secs(90)).await;
    let reqs = mock.robot_requests();
    srv.stop().await;
    assert!(reqs.len() < 100, "coalesced: {} messages", reqs.len());
    let paged: Vec<String> = reqs
        .iter()
        .map(|r| r.content())
        .filter(|c| c.starts_with("（") && c.contains("groups from"))
        .collect();
    assert!(!paged.is_empty(), "no digest was paged: {reqs:#?}");
    for r in &reqs {
        let c = r.content();
        assert!(c.len() <= 2048, "{} bytes: {c}", c.len());
        assert!(!c.ends_with('…'), "cut: {c}");
        // Every part carries the whole digest's title, firing.
        assert!(c.contains("🔥"), "{c}");
    }
}

#[tokio::test]
async fn wecom_app_text_token_cache_duplicate_check_and_refresh() {
    let mock = mock().await;
    let srv = TestServer::start(&app_config(
        &mock,
        "        to_user: 'zhangsan|lisi'\n        to_party: '{{commonLabels.severity}}'",
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    let reqs = mock.wait_app(1, WAIT).await;
    let b = &reqs[0].body;
    assert_eq!(b["touser"], "zhangsan|lisi");
    assert_eq!(b["msgtype"], "text");
    assert_eq!(b["agentid"], 1000002);
    assert_eq!(b["enable_duplicate_check"], 1);
    assert_eq!(b["duplicate_check_interval"], 1800);
    assert_eq!(b["safe"], 0);
    assert!(b["text"]["content"].as_str().unwrap().contains("HighCPU"));
    assert_eq!(reqs[0].param("access_token").as_deref(), Some("WT_1"));
    let tokens = mock.token_requests();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].param("corpid").as_deref(), Some(CORP));
    assert_eq!(tokens[0].param("corpsecret").as_deref(), Some(SECRET));

    // Cached for the next message; refreshed once when it expires (42001).
    srv.post("/webhook", example("alertmanager-resolved.json"))
        .await;
    mock.wait_app(2, WAIT).await;
    assert_eq!(mock.token_requests().len(), 1);
    mock.expire_token();
    srv.post("/webhook", example("grafana-firing.json")).await;
    mock.wait(WAIT, "a send with WT_2", |r| {
        r.iter().any(|r| r.query.contains("access_token=WT_2"))
    })
    .await;
    srv.stop().await;
    assert_eq!(mock.token_requests().len(), 2);
}

#[tokio::test]
async fn wecom_app_invaliduser_retries_only_the_missing() {
    let mock = mock().await;
    mock.script_send([Reply::Invalid("lisi", "")]);
    let srv = TestServer::start(&app_config(
        &mock,
        "        to_user: 'zhangsan|lisi|wangwu'",
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    let reqs = mock.wait_app(2, WAIT).await;
    srv.stop().await;
    assert_eq!(reqs[0].body["touser"], "zhangsan|lisi|wangwu");
    assert_eq!(reqs[1].body["touser"], "lisi");
}

#[tokio::test]
async fn wecom_app_60020_is_permanent_and_81013_a_recipient_error() {
    for (code, reason, hint) in [
        (60020, "bad_credentials", "trusted IPs"),
        (81013, "recipient", "all invalid"),
    ] {
        let mock = mock().await;
        mock.script_send([Reply::Err(code, "not allowed, hint: [x]")]);
        let srv = TestServer::start(&app_config(&mock, "        to_user: zhangsan")).await;
        srv.post("/webhook", example("alertmanager-firing.json"))
            .await;
        mock.wait_app(1, WAIT).await;
        let mut m = String::new();
        for _ in 0..100 {
            m = srv.get("/metrics").await.1;
            if metric(&m, "alertmanager_wechat_dead_letters") >= 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let series = format!(
            r#"alertmanager_wechat_deliveries_failed_total{{integration="wecom_app",reason="{reason}"}}"#
        );
        assert_eq!(metric(&m, &series), 1.0, "{code}: {m}");
        let store = srv.app.queue.store.clone();
        let (out, _) = cli::deadletters(&store, cli::DeadLetterAction::List).await;
        srv.stop().await;
        assert_eq!(mock.app_requests().len(), 1, "{code}: not retried");
        assert!(out.contains(hint), "{code}: {out}");
        assert!(!out.contains(SECRET) && !out.contains("WT_1"), "{out}");
    }
}

#[tokio::test]
async fn wecom_app_textcard_fits_the_limits() {
    let mock = mock().await;
    let srv = TestServer::start(&app_config(
        &mock,
        "        to_tag: '1'\n        msgtype: textcard\n        btntxt: 详情",
    ))
    .await;
    srv.post("/webhook", many(30, &"很长的描述".repeat(50)))
        .await;
    let reqs = mock.wait_app(1, WAIT).await;
    srv.stop().await;
    let card = &reqs[0].body["textcard"];
    let title = card["title"].as_str().unwrap();
    assert!(
        alertmanager_wechat::text::visible_len(title) <= 20,
        "{title}"
    );
    assert!(title.len() <= 128);
    assert!(card["description"].as_str().unwrap().len() <= 512);
    assert_eq!(card["url"], "http://alertmanager:9093");
    assert_eq!(card["btntxt"], "详情");
    assert_eq!(reqs[0].body["totag"], "1");
}

#[tokio::test]
async fn wecom_check_config_errors_are_exact() {
    let e = errors(
        "route: {receiver: a}\nreceivers:\n  - name: a\n    wecom_robot_configs: [{key: abcd, msgtype: html}]\n",
    );
    assert!(
        e.starts_with("test.yml: receivers[0].wecom_robot_configs[0].msgtype: unknown variant, expected one of `markdown`, `markdown_v2`, `text`"),
        "{e}"
    );
    let e = errors(
        "route: {receiver: a}\nreceivers:\n  - name: a\n    wecom_robot_configs: [{key: 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send', mentioned_list: ['']}, {}]\n",
    );
    assert_eq!(
        e.lines().collect::<Vec<_>>(),
        [
            "test.yml: receivers[0].wecom_robot_configs[0].key: is a URL without key=: paste the robot's whole webhook URL or only its key",
            "test.yml: receivers[0].wecom_robot_configs[0].mentioned_list[0]: must not be empty",
            "test.yml: receivers[0].wecom_robot_configs[1]: one of key and key_file is required",
        ]
    );
    let e = errors(
        "route: {receiver: a}\nreceivers:\n  - name: a\n    wecom_app_configs: [{corp_id: '', agent_id: 0, msgtype: text, btntxt: 查看详情啊, duplicate_check_interval: 5h, fallback_receiver: zz}]\n",
    );
    assert_eq!(
        e.lines().collect::<Vec<_>>(),
        [
            "test.yml: receivers[0].wecom_app_configs[0]: one of api_secret and api_secret_file is required",
            "test.yml: receivers[0].wecom_app_configs[0].corp_id: must not be empty",
            "test.yml: receivers[0].wecom_app_configs[0].agent_id: must be the application's AgentId (a positive number)",
            "test.yml: receivers[0].wecom_app_configs[0]: needs at least one of to_user, to_party and to_tag",
            "test.yml: receivers[0].wecom_app_configs[0].btntxt: must be 1 to 4 characters",
            "test.yml: receivers[0].wecom_app_configs[0].btntxt: only applies to msgtype: textcard",
            "test.yml: receivers[0].wecom_app_configs[0].duplicate_check_interval: must be between 1s and 4h",
            "test.yml: receivers[0].wecom_app_configs[0].fallback_receiver: unknown receiver \"zz\"",
        ]
    );
}

#[tokio::test]
async fn wecom_render_masks_the_key_and_the_secret() {
    let yaml = format!(
        "route: {{receiver: a}}\nreceivers:\n  - name: a\n    wecom_robot_configs: [{{key: {KEY}}}]\n    wecom_app_configs: [{{corp_id: {CORP}, agent_id: 1000002, api_secret: {SECRET}, to_user: zhangsan, msgtype: textcard}}]\n"
    );
    let rt = load(&yaml).unwrap();
    let now = "2026-11-25T08:30:00Z".parse().unwrap();
    let out = cli::render(
        &rt,
        example("alertmanager-firing.json").as_bytes(),
        None,
        now,
    )
    .unwrap();
    let text = cli::format_rendered(&out);
    assert!(!text.contains(KEY) && !text.contains(SECRET), "{text}");
    assert!(
        text.contains("POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=<secret>"),
        "{text}"
    );
    assert!(
        text.contains(
            "POST https://qyapi.weixin.qq.com/cgi-bin/message/send?access_token=ACCESS_TOKEN"
        ),
        "{text}"
    );
    assert_eq!(out[0].integration, "wecom_robot[0]");
    assert_eq!(out[1].integration, "wecom_app[1]");
    println!("{text}");
}

#[tokio::test]
async fn wecom_send_test_reaches_both_and_reports_a_wrong_key() {
    let mock = mock().await;
    let yaml = format!(
        "global: {{wecom_api_url: '{url}'}}\nroute: {{receiver: a}}\nreceivers:\n  - name: a\n    wecom_robot_configs: [{{key: {KEY}}}, {{key: wrong-key-0000}}]\n    wecom_app_configs: [{{corp_id: {CORP}, agent_id: 1000002, api_secret: {SECRET}, to_user: zhangsan}}]\n",
        url = mock.url
    );
    let rt = load(&yaml).unwrap();
    let (out, ok) = cli::send_test(&rt, "a").await;
    assert!(!ok);
    assert_eq!(
        out.lines().collect::<Vec<_>>()[..2],
        [
            "wecom_robot[0]: sent",
            "wecom_robot[1]: failed (permanent): wecom_robot: error 93000: invalid webhook url: the robot's key is wrong or the robot was removed from the group; put the key of a robot in the group in key/key_file (invalid webhook url, hint: [1733000000_1_abc], from ip: 10.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e=93000)"
        ]
    );
    assert_eq!(out.lines().nth(2), Some("wecom_app[2]: sent"));
    assert!(!out.contains("wrong-key-0000"));
    assert_eq!(mock.robot_requests().len(), 2);
    assert_eq!(mock.app_requests().len(), 1);
}
