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
fn a_field_the_sample_does_not_fit_is_a_warning_and_render_shows_the_placeholder() {
    let yaml = "route: {receiver: oa}\nreceivers:\n  - name: oa\n    official_account_configs:\n      - {app_id: wx1, app_secret: s3cret, template_id: T, to_openids: [o], data: {thing1: '{{commonLabels.alertname}}', phrase2: '{{commonLabels.alertname}}'}}\n";
    let (out, ok) = check(yaml);
    assert!(ok, "{out}");
    assert_eq!(
        out,
        "c.yml: OK (1 receivers, 1 integrations)\nc.yml: receivers[oa]: warning: the sample notification does not fit: template receivers[0].official_account_configs[0].data.phrase2: template field phrase2 (phrase: at most 5 Chinese characters, nothing else): \"Sample\" has no Chinese characters; an alert that does not fit either is sent with a placeholder\n"
    );
    // The valid template a sample without the label used to refuse.
    let (out, ok) = check(&yaml.replace(
        "phrase2: '{{commonLabels.alertname}}'",
        "character_string2: '{{commonLabels.instance}}主机'",
    ));
    assert!(ok, "{out}");
    assert!(
        out.contains("warning: the sample notification does not fit"),
        "{out}"
    );

    // A template that fits the sample but not this payload: render shows what would be sent.
    let cfg = yaml.replace(
        "phrase2: '{{commonLabels.alertname}}'",
        "number2: '{{alerts.0.labels.instance}}'",
    );
    let rt = Runtime::build(Config::parse(&cfg, "t.yml", Path::new(".")).unwrap()).unwrap();
    let payload = example("alertmanager-firing.json").replace("node-1:9100", "db-primary");
    let out = cli::render(
        &rt,
        payload.as_bytes(),
        None,
        "2026-11-25T08:30:00Z".parse().unwrap(),
    )
    .unwrap();
    assert_eq!(
        out[0].requests[0].body["data"]["number2"],
        json!({"value": "0"}),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_value_that_cannot_fit_at_send_time_is_sent_with_a_placeholder_and_counted() {
    let mock = MockOfficialAccount::start().await;
    let wx = MockWxPusher::start().await;
    let yaml = config(
        &mock,
        "",
        r#"        fallback_receiver: backup
        data:
          thing1: '{{commonLabels.alertname}}'
          number2: '{{alerts.0.labels.instance}}'
          character_string3: '{{commonLabels.instance}}主机'"#,
    );
    let yaml = format!(
        "{yaml}  - name: backup\n    wxpusher_configs: [{{ app_token: AT_backup, uids: [UID_backup], api_url: \"{}\" }}]\n",
        wx.url
    );
    let srv = TestServer::start(&yaml).await;
    let payload = example("alertmanager-firing.json")
        .replace("node-1:9100", "db-primary")
        .replace(
            r#""commonLabels": {"#,
            r#""commonLabels": {"instance": "db-7","#,
        );
    assert!(payload.contains(r#""instance": "db-7""#), "{payload}");
    srv.post("/webhook", payload).await;
    let sends = mock.wait_for_sends(1, WAIT).await;
    let metrics = srv.app.metrics.encode();
    let dead = srv.app.queue.store.dead_letter_count().await.unwrap();
    srv.stop().await;
    assert_eq!(sends[0].body["data"]["number2"], json!({"value": "0"}));
    assert_eq!(
        sends[0].body["data"]["character_string3"],
        json!({"value": "db-7"})
    );
    assert_eq!(dead, 0);
    assert!(wx.requests().is_empty(), "nothing went to the fallback");
    assert_eq!(
        metric(
            &metrics,
            r#"alertmanager_wechat_template_fields_degraded_total{integration="official_account"}"#
        ),
        1.0
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
