//! WxPusher simple push (`spts` / `spts_file`) and WxPusher's generic `1001`: the exact requests
//! the mock receives, what a refusal becomes (dead letter, reason, fallback), and a quota dead
//! letter replayed after the budget was raised.

use std::path::Path;
use std::time::Duration;

use alertmanager_wechat::cli::{self, DeadLetterAction, deadletters};
use alertmanager_wechat::config::Config;
use alertmanager_wechat::runtime::Runtime;
use serde_json::{Value, json};

use crate::support::wxpusher::{MockWxPusher, Recorded, Reply};
use crate::support::{TestServer, example, metric};

const WAIT: Duration = Duration::from_secs(10);
const SIMPLE: &str = "/api/send/message/simple-push";

fn spts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("SPT_secret_{i:02}")).collect()
}

fn yaml_list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dead_letters(srv: &TestServer) -> f64 {
    metric(
        &srv.app.metrics.encode(),
        "alertmanager_wechat_dead_letters",
    )
}

/// Waits until the store holds `n` dead letters.
async fn wait_dead(store: &alertmanager_wechat::store::Store, n: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while store.dead_letter_count().await.unwrap_or(u64::MAX) != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {n} dead letters"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The only dead letter's `show` text.
async fn only_dead_letter(store: &alertmanager_wechat::store::Store) -> String {
    let (list, ok) = deadletters(store, DeadLetterAction::List).await;
    assert!(ok, "{list}");
    let ids: Vec<i64> = list
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(ids.len(), 1, "{list}");
    let (shown, ok) = deadletters(store, DeadLetterAction::Show(ids[0])).await;
    assert!(ok, "{shown}");
    shown
}

fn spt_list(r: &Recorded) -> Vec<String> {
    r.body["sptList"]
        .as_array()
        .unwrap_or_else(|| panic!("no sptList: {}", r.body))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn config(mock: &MockWxPusher, wx: &str) -> String {
    format!(
        r#"
global: {{ wxpusher_api_url: "{}", timezone: Asia/Shanghai }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs:
      - {wx}
  - name: backup
    wxpusher_configs: [{{ app_token: AT_backup, uids: [UID_backup] }}]
"#,
        mock.url
    )
}

#[tokio::test]
async fn twelve_spts_go_out_as_ten_and_two_with_the_app_token_paths_body() {
    let mock = MockWxPusher::start().await;
    let all = spts(12);
    let srv = TestServer::start(&config(&mock, &format!("{{spts: {}}}", yaml_list(&all)))).await;
    assert_eq!(
        srv.post("/webhook", example("alertmanager-firing.json"))
            .await
            .0,
        200
    );
    let reqs = mock.wait_for(2, WAIT).await;
    srv.stop().await;
    assert_eq!(mock.requests().len(), 2);
    for r in &reqs {
        assert_eq!(r.path, SIMPLE);
        let keys: Vec<&str> = r
            .body
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            ["content", "contentType", "sptList", "summary", "url"],
            "{}",
            r.body
        );
        assert_eq!(r.body["contentType"], 3);
        // The same preview as the app-token path: 20 visible characters.
        assert_eq!(r.body["summary"], "🔥【告警】HighCPU ×2");
        assert_eq!(r.body["url"], "http://alertmanager:9093");
        assert!(
            r.body["content"]
                .as_str()
                .unwrap()
                .starts_with("## 🔥 告警中 2 条")
        );
    }
    assert_eq!(spt_list(&reqs[0]), all[..10]);
    assert_eq!(spt_list(&reqs[1]), all[10..]);
}

#[tokio::test]
async fn a_retry_goes_only_to_the_spt_that_failed() {
    let mock = MockWxPusher::start().await;
    let all = spts(3);
    mock.script([Reply::FailSpts(vec![all[1].clone()], "系统繁忙")]);
    let srv = TestServer::start(&config(
        &mock,
        &format!("{{spts: {}, content_type: text}}", yaml_list(&all)),
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    let reqs = mock.wait_for(2, WAIT).await;
    wait_until("success", || {
        metric(
            &srv.app.metrics.encode(),
            r#"alertmanager_wechat_notifications_total{receiver="oncall",integration="wxpusher",result="success"}"#,
        ) == 1.0
    })
    .await;
    srv.stop().await;
    assert_eq!(mock.requests().len(), 2);
    assert_eq!(spt_list(&reqs[0]), all);
    assert_eq!(spt_list(&reqs[1]), [all[1].clone()]);
    assert_eq!(reqs[1].body["contentType"], 1);
    assert_eq!(reqs[0].body["content"], reqs[1].body["content"]);
}

#[tokio::test]
async fn a_refused_spt_is_not_retried_and_the_alert_goes_to_the_fallback() {
    let mock = MockWxPusher::start().await;
    let all = spts(2);
    mock.script([Reply::FailSpts(vec![all[0].clone()], "SPT不存在或已失效")]);
    let srv = TestServer::start(&config(
        &mock,
        &format!("{{spts: {}, fallback_receiver: backup}}", yaml_list(&all)),
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    let reqs = mock.wait_for(2, WAIT).await;
    wait_until("a dead letter", || dead_letters(&srv) == 1.0).await;
    let store = srv.app.queue.store.clone();
    let metrics = srv.app.metrics.encode();
    srv.stop().await;
    assert_eq!(mock.requests().len(), 2, "{:#?}", mock.requests());
    assert_eq!(spt_list(&reqs[0]), all);
    assert_eq!(reqs[1].path, "/api/send/message");
    assert_eq!(reqs[1].body["uids"], json!(["UID_backup"]));
    assert_eq!(
        metric(
            &metrics,
            r#"alertmanager_wechat_deliveries_failed_total{integration="wxpusher",reason="recipient"}"#
        ),
        1.0
    );
    let shown = only_dead_letter(&store).await;
    assert!(shown.contains("reason: recipient"), "{shown}");
    assert!(
        shown.contains("simple-push token refused: SPT不存在或已失效"),
        "{shown}"
    );
    assert!(!shown.contains("SPT_secret"), "an SPT leaked: {shown}");
}

#[tokio::test]
async fn spts_file_one_a_line_and_a_daily_budget_per_spt() {
    let mock = MockWxPusher::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spts");
    std::fs::write(
        &file,
        "# the on-call pair\nSPT_secret_aa\n\n  SPT_secret_bb  \n",
    )
    .unwrap();
    let srv = TestServer::start(&config(
        &mock,
        &format!(
            "{{spts_file: \"{}\", daily_budget_per_uid: 1, fallback_receiver: backup}}",
            file.display()
        ),
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for(1, WAIT).await;
    srv.post("/webhook", example("alertmanager-resolved.json"))
        .await;
    let reqs = mock.wait_for(2, WAIT).await;
    wait_until("a dead letter", || dead_letters(&srv) == 1.0).await;
    let store = srv.app.queue.store.clone();
    srv.stop().await;
    assert_eq!(mock.requests().len(), 2, "{:#?}", mock.requests());
    assert_eq!(spt_list(&reqs[0]), ["SPT_secret_aa", "SPT_secret_bb"]);
    // Both SPTs had their one message today: the resolved goes to the fallback only.
    assert_eq!(reqs[1].body["uids"], json!(["UID_backup"]));
    let shown = only_dead_letter(&store).await;
    assert!(shown.contains("reason: quota"), "{shown}");
    assert!(
        shown.contains("2 recipient(s) over the daily budget of 1 messages"),
        "{shown}"
    );
    assert!(!shown.contains("SPT_secret"), "an SPT leaked: {shown}");
}

#[tokio::test]
async fn an_error_echoing_the_spt_is_scrubbed() {
    let mock = MockWxPusher::start().await;
    mock.set_default(Reply::Code(1005, "接口出现异常：SPT_secret_00 参数错误"));
    let srv = TestServer::start_with(
        &config(&mock, "{spts: [SPT_secret_00], max_attempts: 1}"),
        crate::support::fast_retries(),
    )
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for(1, WAIT).await;
    wait_until("a dead letter", || dead_letters(&srv) == 1.0).await;
    let store = srv.app.queue.store.clone();
    srv.stop().await;
    let shown = only_dead_letter(&store).await;
    assert!(shown.contains("<secret> 参数错误"), "{shown}");
    assert!(!shown.contains("SPT_secret_00"), "{shown}");
}

#[test]
fn render_masks_every_spt() {
    let cfg = "route: {receiver: a}\nreceivers:\n  - name: a\n    wxpusher_configs: [{spts: [SPT_secret_render_1, SPT_secret_render_2]}]\n";
    let rt = Runtime::build(Config::parse(cfg, "t.yml", Path::new(".")).unwrap()).unwrap();
    let now = "2026-11-25T08:30:00Z".parse().unwrap();
    let out = cli::render(
        &rt,
        example("alertmanager-firing.json").as_bytes(),
        None,
        now,
    )
    .unwrap();
    let req = &out[0].requests[0];
    assert_eq!(
        req.url,
        "https://wxpusher.zjiecode.com/api/send/message/simple-push"
    );
    assert_eq!(req.body["sptList"], json!(["<secret>", "<secret>"]));
    let text = cli::format_rendered(&out);
    assert!(!text.contains("SPT_secret_render"), "{text}");
    let debug = format!("{:?}", rt.receivers);
    assert!(!debug.contains("SPT_secret_render"), "{debug}");
}

fn errors(yaml: &str) -> Vec<String> {
    match Config::parse(yaml, "t.yml", Path::new(".")) {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn check_config_refuses_spts_mixed_with_an_app_token_or_neither() {
    let cfg = |wx: &str| {
        format!("route: {{receiver: a}}\nreceivers:\n  - name: a\n    wxpusher_configs: [{wx}]\n")
    };
    assert_eq!(
        errors(&cfg("{spts: [SPT_x1], app_token: AT_x, uids: [UID_a]}")),
        [
            "t.yml: receivers[0].wxpusher_configs[0]: spts (simple push) cannot be combined with app_token, uids: simple push sends to the SPTs' owners only; use another wxpusher_configs entry for the app token"
        ]
    );
    assert_eq!(
        errors(&cfg(
            "{spts_file: /nonexistent/spts, topic_ids: [1], subscriber_tags: [t]}"
        )),
        [
            "t.yml: receivers[0].wxpusher_configs[0].spts_file: cannot read /nonexistent/spts: No such file or directory (os error 2)",
            "t.yml: receivers[0].wxpusher_configs[0]: spts_file (simple push) cannot be combined with topic_ids, subscriber_tags: simple push sends to the SPTs' owners only; use another wxpusher_configs entry for the app token",
            "t.yml: receivers[0].wxpusher_configs[0].subscriber_tags: needs chatops.wxpusher_callback_secret: subscribers are learned from WxPusher's callback",
        ]
    );
    assert_eq!(
        errors(&cfg("{content_type: text}")),
        [
            "t.yml: receivers[0].wxpusher_configs[0]: one of app_token, app_token_file, spts and spts_file is required"
        ]
    );
    assert_eq!(
        errors(&cfg("{spts: [SPT_x1, AT_not_an_spt, SPT_x1]}")),
        [
            "t.yml: receivers[0].wxpusher_configs[0].spts[1]: is not a simple-push token (SPT_…)",
            "t.yml: receivers[0].wxpusher_configs[0].spts[2]: repeats an earlier SPT",
        ]
    );
    assert_eq!(
        errors(&cfg("{spts: [SPT_x1, SPT_x2]}")),
        Vec::<String>::new()
    );
}

// ---- WxPusher's generic 1001 ----

fn refused_body(b: &Value) -> bool {
    b["uids"] == json!(["UID_a"])
}

#[tokio::test]
async fn a_1001_that_is_not_about_the_token_refuses_this_message_and_uses_the_fallback() {
    let mock = MockWxPusher::start().await;
    mock.script([Reply::Code(1001, "消息内容不合法")]);
    let srv = TestServer::start(&config(
        &mock,
        "{app_token: AT_test_token, uids: [UID_a], fallback_receiver: backup}",
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    let reqs = mock.wait_for(2, WAIT).await;
    wait_until("a dead letter", || dead_letters(&srv) == 1.0).await;
    let store = srv.app.queue.store.clone();
    let metrics = srv.app.metrics.encode();
    srv.stop().await;
    // Not retried: one refused call, then the fallback's.
    assert_eq!(mock.requests().len(), 2, "{:#?}", mock.requests());
    assert!(refused_body(&reqs[0].body));
    assert_eq!(reqs[1].body["appToken"], "AT_backup");
    assert_eq!(reqs[1].body["uids"], json!(["UID_backup"]));
    assert_eq!(
        metric(
            &metrics,
            r#"alertmanager_wechat_deliveries_failed_total{integration="wxpusher",reason="upstream_error"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"alertmanager_wechat_deliveries_failed_total{integration="wxpusher",reason="bad_credentials"}"#
        ),
        0.0
    );
    let shown = only_dead_letter(&store).await;
    assert!(shown.contains("reason: upstream_error"), "{shown}");
    assert!(shown.contains("attempts: 1"), "{shown}");
    assert!(
        shown.contains("last_error: wxpusher: error 1001: message refused: 消息内容不合法"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_1001_naming_the_app_token_is_bad_credentials_and_uses_the_fallback() {
    let mock = MockWxPusher::start().await;
    mock.script([Reply::Code(1001, "appToken不正确")]);
    let srv = TestServer::start(&config(
        &mock,
        "{app_token: AT_wrong_token, uids: [UID_a], fallback_receiver: backup}",
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    let reqs = mock.wait_for(2, WAIT).await;
    wait_until("a dead letter", || dead_letters(&srv) == 1.0).await;
    let store = srv.app.queue.store.clone();
    srv.stop().await;
    assert_eq!(mock.requests().len(), 2);
    assert_eq!(reqs[1].body["appToken"], "AT_backup");
    let shown = only_dead_letter(&store).await;
    assert!(shown.contains("reason: bad_credentials"), "{shown}");
    assert!(
        shown.contains("last_error: wxpusher: error 1001: appToken不正确"),
        "{shown}"
    );
}

// ---- Budget dead letters replayed against the current budget ----

async fn replay_after_raising_the_budget(storage: &str) {
    let mock = MockWxPusher::start().await;
    let yaml = |budget: u32| {
        format!(
            r#"
global: {{ wxpusher_api_url: "{}" }}
{storage}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs: [{{ app_token: AT_primary, uids: [UID_a], daily_budget_per_uid: {budget} }}]
"#,
            mock.url
        )
    };
    let first = TestServer::start(&yaml(1)).await;
    first
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for(1, WAIT).await;
    first
        .post("/webhook", example("alertmanager-resolved.json"))
        .await;
    wait_dead(&first.app.queue.store, 1).await;
    let shown = only_dead_letter(&first.app.queue.store).await;
    assert!(
        shown.contains("1 recipient(s) over the daily budget of 1 messages"),
        "{shown}"
    );
    first.stop().await;
    assert_eq!(mock.requests().len(), 1);

    // The operator raises the budget and replays: the count (1) is under the new budget (3).
    let second = TestServer::start(&yaml(3)).await;
    let (out, ok) = deadletters(&second.app.queue.store, DeadLetterAction::Replay(None)).await;
    assert!(ok, "{out}");
    let reqs = mock.wait_for(2, WAIT).await;
    wait_dead(&second.app.queue.store, 0).await;
    let (list, _) = deadletters(&second.app.queue.store, DeadLetterAction::List).await;
    second.stop().await;
    assert_eq!(mock.requests().len(), 2, "{:#?}", mock.requests());
    assert_eq!(reqs[1].body["uids"], json!(["UID_a"]));
    assert!(
        reqs[1].body["content"].as_str().unwrap().contains("已恢复"),
        "{}",
        reqs[1].body
    );
    assert_eq!(list.trim(), "no dead letters");
}

#[tokio::test]
async fn a_quota_dead_letter_replayed_after_the_budget_was_raised_is_sent() {
    let data = tempfile::tempdir().unwrap();
    replay_after_raising_the_budget(&format!(
        "storage: {{ path: \"{}\" }}",
        data.path().display()
    ))
    .await;
}

#[tokio::test]
async fn a_quota_dead_letter_replayed_under_a_budget_still_spent_names_the_current_budget() {
    let mock = MockWxPusher::start().await;
    let data = tempfile::tempdir().unwrap();
    let yaml = |budget: u32| {
        format!(
            r#"
global: {{ wxpusher_api_url: "{}" }}
storage: {{ path: "{}" }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs: [{{ app_token: AT_primary, uids: [UID_a], daily_budget_per_uid: {budget} }}]
"#,
            mock.url,
            data.path().display()
        )
    };
    let first = TestServer::start(&yaml(1)).await;
    first
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for(1, WAIT).await;
    first
        .post("/webhook", example("alertmanager-resolved.json"))
        .await;
    wait_dead(&first.app.queue.store, 1).await;
    first.stop().await;
    // Raised to 2, but a third message arrives first and takes the second slot.
    let second = TestServer::start(&yaml(2)).await;
    second
        .post("/webhook", example("alertmanager-firing-5.json"))
        .await;
    mock.wait_for(2, WAIT).await;
    let (out, ok) = deadletters(&second.app.queue.store, DeadLetterAction::Replay(None)).await;
    assert!(ok, "{out}");
    wait_until("the replay to fail again", || {
        metric(
            &second.app.metrics.encode(),
            r#"alertmanager_wechat_deliveries_failed_total{integration="wxpusher",reason="quota"}"#,
        ) == 1.0
    })
    .await;
    wait_dead(&second.app.queue.store, 1).await;
    let shown = only_dead_letter(&second.app.queue.store).await;
    second.stop().await;
    assert_eq!(mock.requests().len(), 2, "{:#?}", mock.requests());
    assert!(
        shown.contains("1 recipient(s) over the daily budget of 2 messages"),
        "{shown}"
    );
}

#[tokio::test]
async fn over_long_content_is_split_into_numbered_parts_each_to_every_spt() {
    let mock = MockWxPusher::start().await;
    let all = spts(11);
    let srv = TestServer::start(&config(&mock, &format!("{{spts: {}}}", yaml_list(&all)))).await;
    // 30 alerts with 2000-character descriptions: about 60000 characters of markdown.
    let mut payload: Value = serde_json::from_str(&example("alertmanager-firing.json")).unwrap();
    let template = payload["alerts"][0].clone();
    let alerts: Vec<Value> = (0..30)
        .map(|i| {
            let mut a = template.clone();
            a["labels"]["instance"] = json!(format!("node-{i}"));
            a["annotations"]["description"] = json!(format!("告{i:02}-{}", "警".repeat(2000)));
            a
        })
        .collect();
    payload["alerts"] = json!(alerts);
    srv.post("/webhook", payload.to_string()).await;
    let reqs = mock.wait_for(4, WAIT).await;
    srv.stop().await;
    assert_eq!(mock.requests().len(), 4, "2 parts × (10 + 1) SPTs");
    let mut per_part = std::collections::BTreeMap::<String, Vec<String>>::new();
    for r in &reqs {
        let c = r.body["content"].as_str().unwrap();
        assert!(c.encode_utf16().count() <= 40_000);
        let summary = r.body["summary"].as_str().unwrap().to_string();
        assert!(
            summary.starts_with("[1/2]") || summary.starts_with("[2/2]"),
            "{summary}"
        );
        per_part
            .entry(summary[..5].to_string())
            .or_default()
            .extend(spt_list(r));
    }
    for (part, got) in per_part {
        assert_eq!(got, all, "part {part} to every SPT once");
    }
}

#[test]
fn spts_come_from_the_environment_or_a_file_one_a_line() {
    // SAFETY: no other test reads this variable.
    unsafe { std::env::set_var("AMW_TEST_SPT", "SPT_from_env_01") };
    let parse = |wx: &str| {
        Config::parse(
            &format!(
                "route: {{receiver: a}}\nreceivers:\n  - name: a\n    wxpusher_configs: [{wx}]\n"
            ),
            "t.yml",
            Path::new("."),
        )
        .map(|c| c.receivers[0].wxpusher_configs[0].spts.clone())
    };
    assert_eq!(
        parse("{spts: ['${AMW_TEST_SPT}', SPT_literal_02]}").unwrap(),
        [
            alertmanager_wechat::secret::Secret::new("SPT_from_env_01"),
            alertmanager_wechat::secret::Secret::new("SPT_literal_02")
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("spts"),
        "SPT_a1\r\n# off duty: SPT_zz\n\nSPT_b2",
    )
    .unwrap();
    assert_eq!(
        parse(&format!("{{spts_file: '{}/spts'}}", dir.path().display())).unwrap(),
        [
            alertmanager_wechat::secret::Secret::new("SPT_a1"),
            alertmanager_wechat::secret::Secret::new("SPT_b2")
        ]
    );
    std::fs::write(dir.path().join("empty"), "# nobody yet\n").unwrap();
    let e = parse(&format!("{{spts_file: '{}/empty'}}", dir.path().display())).unwrap_err();
    assert_eq!(
        e.to_string().trim(),
        format!(
            "t.yml: receivers[0].wxpusher_configs[0].spts_file: {}/empty holds no SPT (one SPT_… a line)",
            dir.path().display()
        )
    );
    let e = parse("{spts: [SPT_a1], spts_file: x}").unwrap_err();
    assert!(
        e.to_string().contains(
            "t.yml: receivers[0].wxpusher_configs[0]: spts and spts_file are mutually exclusive"
        ),
        "{e}"
    );
}
