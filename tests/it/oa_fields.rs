//! Official Account template fields by WeChat's type rules, against a mock that checks every
//! field value per the contract's table (47003 `data.<key>.value invalid` otherwise): values
//! made to fit, status words in Chinese for `phrase` in any locale, values that cannot fit
//! named before anything is sent, and a 47003 that names its field or lists the fields sent.

use std::path::Path;
use std::time::Duration;

use alertmanager_wechat::cli::{self, DeadLetterAction, deadletters};
use alertmanager_wechat::config::Config;
use alertmanager_wechat::runtime::Runtime;
use serde_json::json;

use crate::support::official_account::{MockOfficialAccount, Reply};
use crate::support::wxpusher::MockWxPusher;
use crate::support::{TestServer, example, metric};

const WAIT: Duration = Duration::from_secs(10);

fn config(mock: &MockOfficialAccount, global: &str, extra: &str) -> String {
    format!(
        r#"
global: {{ wechat_api_url: "{url}", timezone: Asia/Shanghai{global} }}
route: {{ receiver: oa }}
receivers:
  - name: oa
    official_account_configs:
      - app_id: wx0123456789abcdef
        app_secret: oa_app_secret_0123456789abcdef
        template_id: TPL_alert
        to_openids: [o_a]
        token_min_interval: 0s
{extra}
"#,
        url = mock.url,
    )
}

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

async fn only_dead_letter(store: &alertmanager_wechat::store::Store) -> String {
    let (list, ok) = deadletters(store, DeadLetterAction::List).await;
    assert!(ok, "{list}");
    let id: i64 = list
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no dead letter: {list}"));
    deadletters(store, DeadLetterAction::Show(id)).await.0
}

#[tokio::test]
async fn default_phrase_with_locale_en_is_chinese_status_words() {
    let mock = MockOfficialAccount::start().await;
    let srv = TestServer::start(&config(&mock, ", locale: en", "")).await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for_sends(1, WAIT).await;
    srv.post("/webhook", example("alertmanager-resolved.json"))
        .await;
    let sends = mock.wait_for_sends(2, WAIT).await;
    let app = srv.app.clone();
    srv.stop().await;
    assert_eq!(mock.send_requests().len(), 2);
    assert_eq!(
        sends[0].body["data"],
        json!({
            "thing1": {"value": "HighCPU ×2"},
            "time2": {"value": "2026-11-25 16:00"},
            "phrase3": {"value": "告警"},
        })
    );
    assert_eq!(sends[1].body["data"]["phrase3"], json!({"value": "已恢复"}));
    assert_eq!(
        metric(
            &app.metrics.encode(),
            r#"alertmanager_wechat_notifications_total{receiver="oa",integration="official_account",result="success"}"#
        ),
        2.0
    );
}

#[tokio::test]
async fn every_type_is_made_to_fit_and_the_mock_accepts_it() {
    let mock = MockOfficialAccount::start().await;
    let srv = TestServer::start(&config(
        &mock,
        ", locale: en",
        r#"        data:
          thing1: '{{commonAnnotations.summary}} on {{alerts.0.labels.instance}} and more'
          phrase2: '{{status_text}}'
          number3: 'CPU {{len alerts}}0.5 %'
          letter4: '{{alerts.0.labels.alertname}}-{{len alerts}}'
          symbol5: '>= 90% !!!'
          character_string6: '实例 {{alerts.0.labels.instance}}'
          amount7: '费用 1,234.50'
          car_number8: '粤 b·12345 学'
          phone_number9: 'on-call: +86 138-0013-8000'
          name10: 'Ops Team of the Night Shift'
          date11: '{{alerts.0.startsAt}}'
          phrase12: '{{commonLabels.severity}}'"#,
    ))
    .await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    let sends = mock.wait_for_sends(1, WAIT).await;
    srv.stop().await;
    assert_eq!(mock.send_requests().len(), 1, "{:#?}", mock.send_requests());
    assert_eq!(
        sends[0].body["data"],
        json!({
            "thing1": {"value": "CPU 使用率超过 90% on no…"},
            "phrase2": {"value": "告警"},
            "number3": {"value": "20.5"},
            "letter4": {"value": "HighCPU"},
            "symbol5": {"value": ">=%!!"},
            "character_string6": {"value": "node-1:9100"},
            "amount7": {"value": "¥1234.50"},
            "car_number8": {"value": "粤B12345学"},
            "phone_number9": {"value": "+86 138-0013-8000"},
            "name10": {"value": "Ops Team of the Nigh"},
            "date11": {"value": "2026-11-25 16:00"},
            "phrase12": {"value": "严重"},
        })
    );
}

fn check(yaml: &str) -> (String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yml");
    std::fs::write(&path, yaml).unwrap();
    let (out, ok) = cli::check_config(std::slice::from_ref(&path));
    (out.replace(&path.display().to_string(), "c.yml"), ok)
}

#[test]
fn check_config_and_render_name_a_field_that_cannot_fit() {
    let yaml = "route: {receiver: oa}\nreceivers:\n  - name: oa\n    official_account_configs:\n      - {app_id: wx1, app_secret: s3cret, template_id: T, to_openids: [o], data: {thing1: '{{commonLabels.alertname}}', phrase2: '{{commonLabels.alertname}}'}}\n";
    let (out, ok) = check(yaml);
    assert!(!ok, "{out}");
    assert_eq!(
        out,
        "c.yml: receivers[oa]: official_account integration does not render a sample notification: template receivers[0].official_account_configs[0].data.phrase2: template field phrase2 (phrase: at most 5 Chinese characters, nothing else): \"Sample\" has no Chinese characters\n"
    );
    let (out, ok) = check(&yaml.replace("phrase2: '{{commonLabels.alertname}}'", "number2: 'n/a'"));
    assert!(!ok, "{out}");
    assert!(
        out.ends_with("template field number2 (number: at most 32 digits, a decimal point allowed): \"n/a\" has no digits\n"),
        "{out}"
    );

    // A template that fits the sample but not this payload: render says so, naming the field.
    let cfg = yaml.replace(
        "phrase2: '{{commonLabels.alertname}}'",
        "number2: '{{alerts.0.labels.instance}}'",
    );
    let rt = Runtime::build(Config::parse(&cfg, "t.yml", Path::new(".")).unwrap()).unwrap();
    let payload = example("alertmanager-firing.json").replace("node-1:9100", "db-primary");
    let err = cli::render(
        &rt,
        payload.as_bytes(),
        None,
        "2026-11-25T08:30:00Z".parse().unwrap(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "template receivers[0].official_account_configs[0].data.number2: template field number2 (number: at most 32 digits, a decimal point allowed): \"db-primary\" has no digits"
    );
}

#[tokio::test]
async fn a_value_that_cannot_fit_at_send_time_is_a_render_error_sent_nowhere_but_the_fallback() {
    let mock = MockOfficialAccount::start().await;
    let wx = MockWxPusher::start().await;
    let yaml = config(
        &mock,
        "",
        r#"        fallback_receiver: backup
        data:
          thing1: '{{commonLabels.alertname}}'
          number2: '{{alerts.0.labels.instance}}'"#,
    );
    let yaml = format!(
        "{yaml}  - name: backup\n    wxpusher_configs: [{{ app_token: AT_backup, uids: [UID_backup], api_url: \"{}\" }}]\n",
        wx.url
    );
    let srv = TestServer::start(&yaml).await;
    let payload = example("alertmanager-firing.json").replace("node-1:9100", "db-primary");
    srv.post("/webhook", payload).await;
    let fallback = wx.wait_for(1, WAIT).await;
    wait_dead(&srv.app.queue.store, 1).await;
    let store = srv.app.queue.store.clone();
    let metrics = srv.app.metrics.encode();
    srv.stop().await;
    assert!(
        mock.send_requests().is_empty(),
        "{:#?}",
        mock.send_requests()
    );
    assert_eq!(fallback[0].body["uids"], json!(["UID_backup"]));
    assert_eq!(
        metric(
            &metrics,
            r#"alertmanager_wechat_deliveries_failed_total{integration="official_account",reason="render"}"#
        ),
        1.0
    );
    let shown = only_dead_letter(&store).await;
    assert!(shown.contains("reason: render"), "{shown}");
    assert!(shown.contains("attempts: 1"), "{shown}");
    assert!(
        shown.contains("template field number2 (number: at most 32 digits, a decimal point allowed): \"db-primary\" has no digits"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_47003_names_the_field_or_lists_the_fields_sent() {
    let mock = MockOfficialAccount::start().await;
    mock.script_send([
        Reply::Err(47003, "argument invalid! rid: 6929d1b4-1"),
        Reply::Err(
            47003,
            "argument invalid! data.time2.value invalid rid: 6929d1b4-2",
        ),
    ]);
    let srv = TestServer::start(&config(&mock, "", "")).await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    mock.wait_for_sends(1, WAIT).await;
    wait_dead(&srv.app.queue.store, 1).await;
    let first = only_dead_letter(&srv.app.queue.store).await;
    srv.post("/webhook", example("alertmanager-resolved.json"))
        .await;
    mock.wait_for_sends(2, WAIT).await;
    wait_dead(&srv.app.queue.store, 2).await;
    let (list, _) = deadletters(&srv.app.queue.store, DeadLetterAction::List).await;
    srv.stop().await;
    assert_eq!(mock.send_requests().len(), 2, "not retried");
    assert!(
        first.contains("last_error: official_account: error 47003: a template field was rejected (fields sent: thing1, time2, phrase3): argument invalid! rid: 6929d1b4-1"),
        "{first}"
    );
    assert!(
        list.contains("official_account: error 47003: template field time2 (time: a 24-hour time, optionally with its date; ranges with ~) rejected: argument invalid! data.time2.value invalid rid: 6929d1b4-2"),
        "{list}"
    );
}
