//! The real binary as a child process: SIGHUP reload, SIGTERM drain, JSON logs with spans.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::process::Daemon;
use crate::support::wxpusher::{MockWxPusher, Reply};
use crate::support::{example, metric};

const BIN: &str = env!("CARGO_BIN_EXE_alertmanager-wechat");

fn config(mock: &MockWxPusher, uid: &str) -> String {
    format!(
        r#"
global: {{ wxpusher_api_url: "{}" }}
storage: {{ path: "$DIR/data" }}
# These tests post the same example more than once and expect each to be sent.
dedupe: {{ window: 0s }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs: [{{ app_token: AT_test_token, uids: [{uid}] }}]
"#,
        mock.url
    )
}

async fn start(mock: &MockWxPusher, log_level: &str) -> Daemon {
    Daemon::start(
        "alertmanager-wechat",
        Path::new(BIN),
        &[("config.yml", config(mock, "UID_a"))],
        &[
            "--config.file=$DIR/config.yml",
            "--web.listen-address=127.0.0.1:$PORT",
            "--log.format=json",
            &format!("--log.level={log_level}"),
        ],
    )
    .await
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post(url: &str, body: String) -> u16 {
    reqwest::Client::new()
        .post(url)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls `GET url` until `done(status, body)`, failing after 10 s.
async fn poll(d: &Daemon, path: &str, done: impl Fn(u16, &str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = get(&format!("{}{path}", d.url)).await;
        if done(code, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never settled; last {code}:\n{body}\n--- log ---\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const RELOAD_OK: &str = "alertmanager_wechat_config_last_reload_successful";

#[tokio::test]
async fn sighup_reloads_keeps_the_old_config_on_error_and_reports_it() {
    let mock = MockWxPusher::start().await;
    let d = start(&mock, "info").await;
    // No auth configured: start-up says so.
    assert!(
        d.log().contains("webhook endpoints are open"),
        "{}",
        d.log()
    );
    let cfg = d.dir.path().join("config.yml");
    let good = config(&mock, "UID_b").replace("$DIR", &d.dir.path().display().to_string());
    // Two mistakes: both are logged.
    std::fs::write(
        &cfg,
        "route: {receiver: nobody}\nreceivers: [{name: a, colour: red}]\nbogus: 1\n",
    )
    .unwrap();
    d.signal("HUP");
    poll(&d, "/metrics", |_, m| metric(m, RELOAD_OK) == 0.0).await;
    let log = d.log();
    assert!(
        log.contains("configuration reload failed, keeping the running configuration"),
        "{log}"
    );
    assert!(log.contains("unknown field `colour`"), "{log}");
    // The old configuration still delivers.
    assert_eq!(
        post(
            &format!("{}/webhook", d.url),
            example("alertmanager-firing.json")
        )
        .await,
        200
    );
    let reqs = mock.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(reqs[0].body["uids"], serde_json::json!(["UID_a"]));
    std::fs::write(&cfg, good).unwrap();
    d.signal("HUP");
    poll(&d, "/metrics", |_, m| metric(m, RELOAD_OK) == 1.0).await;
    assert_eq!(
        post(
            &format!("{}/webhook", d.url),
            example("alertmanager-firing.json")
        )
        .await,
        200
    );
    let reqs = mock.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(reqs[1].body["uids"], serde_json::json!(["UID_b"]));
}

#[tokio::test]
async fn sigterm_drains_not_ready_while_a_delivery_is_in_flight() {
    let mock = MockWxPusher::start().await;
    mock.hold();
    let mut d = start(&mock, "info").await;
    let hook = format!("{}/webhook", d.url);
    assert_eq!(post(&hook, example("alertmanager-firing.json")).await, 200);
    // The upstream has the request and is sitting on it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while mock.requests().is_empty() {
        assert!(Instant::now() < deadline, "no delivery started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.signal("TERM");
    poll(&d, "/-/ready", |code, _| code == 503).await;
    // Draining: still alive, still scrapeable, new webhooks are sent elsewhere or later.
    assert_eq!(get(&format!("{}/-/healthy", d.url)).await.0, 200);
    assert_eq!(get(&format!("{}/metrics", d.url)).await.0, 200);
    assert_eq!(post(&hook, example("alertmanager-firing.json")).await, 503);
    assert!(d.exited().is_none(), "exited with a delivery in flight");
    mock.release();
    let status = d.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}\n{}", d.log());
    // The one accepted notification was delivered; the refused one never reached the store.
    assert_eq!(mock.requests().len(), 1);
    let log = d.log();
    assert!(log.contains("draining"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

/// Text only an alert body carries: it must never reach info-level logs.
const BODY_CANARY: &str = "disk-full-on-canary-host-7781";

#[tokio::test]
async fn json_logs_carry_one_span_per_request_and_per_attempt_and_no_alert_bodies() {
    let mock = MockWxPusher::start().await;
    mock.script([Reply::Http(500)]);
    let d = start(&mock, "debug").await;
    let mut payload: Value = serde_json::from_str(&example("alertmanager-firing.json")).unwrap();
    payload["alerts"][0]["annotations"]["description"] = BODY_CANARY.into();
    payload["commonAnnotations"]["summary"] = BODY_CANARY.into();
    let group_key = payload["groupKey"].as_str().unwrap().to_string();
    assert_eq!(
        post(&format!("{}/webhook/oncall", d.url), payload.to_string()).await,
        200
    );
    mock.wait_for(2, Duration::from_secs(10)).await;
    // The success is logged after the mock answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("\"delivered\"") {
        assert!(Instant::now() < deadline, "{}", d.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines: Vec<Value> = d
        .log()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for l in &lines {
        assert!(l["timestamp"].is_string() && l["level"].is_string(), "{l}");
        assert!(l["fields"]["message"].is_string(), "{l}");
    }
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line in {lines:#?}"))
    };
    let accepted = find("webhook accepted");
    assert_eq!(accepted["span"]["name"], "webhook");
    assert_eq!(accepted["span"]["receiver"], "oncall");
    assert_eq!(accepted["span"]["source"], "alertmanager");
    assert_eq!(accepted["span"]["group_key"], group_key.as_str());
    let retry = find("delivery failed, will retry");
    assert_eq!(retry["level"], "WARN");
    let delivered = find("delivered");
    for (line, attempt) in [(retry, 1), (delivered, 2)] {
        let span = &line["span"];
        assert_eq!(span["name"], "delivery", "{line}");
        assert_eq!(span["receiver"], "oncall", "{line}");
        assert_eq!(span["integration"], "wxpusher", "{line}");
        assert_eq!(span["group_key"], group_key.as_str(), "{line}");
        assert_eq!(span["attempt"], attempt, "{line}");
    }
    for l in &lines {
        if matches!(l["level"].as_str(), Some("INFO" | "WARN" | "ERROR")) {
            assert!(
                !l.to_string().contains(BODY_CANARY),
                "alert body logged: {l}"
            );
        }
    }
}

/// Secrets written where a map or list is expected: the three mistakes serde used to quote.
const BARE_TOKEN: &str =
    "auth: AT_leak_one_0123456789\nroute: {receiver: oncall}\nreceivers: [{name: oncall}]\n";
const SECRET_MISTAKES: &str = "auth: {basic_auth: 'user:leak_three_0123456789'}\nroute: {receiver: oncall}\nreceivers:\n  - name: oncall\n    wxpusher_configs: [ AT_leak_two_0123456789 ]\n    weixin_gateway_configs: [{url: 'http://gw:1', account_id: a, to_user_ids: [u@im.wechat]}]\n";
const LEAKS: [&str; 2] = ["AT_leak_two_0123456789", "leak_three_0123456789"];

async fn reload_with_secret_mistakes(log_format: &str) {
    let mock = MockWxPusher::start().await;
    let d = Daemon::start(
        "alertmanager-wechat",
        Path::new(BIN),
        &[("config.yml", config(&mock, "UID_a"))],
        &[
            "--config.file=$DIR/config.yml",
            "--web.listen-address=127.0.0.1:$PORT",
            &format!("--log.format={log_format}"),
        ],
    )
    .await;
    std::fs::write(d.dir.path().join("config.yml"), SECRET_MISTAKES).unwrap();
    d.signal("HUP");
    poll(&d, "/metrics", |_, m| metric(m, RELOAD_OK) == 0.0).await;
    let log = d.log();
    assert!(log.contains("configuration reload failed"), "{log}");
    assert!(log.contains("wxpusher_configs[0]"), "{log}");
    assert!(log.contains("auth.basic_auth"), "{log}");
    for secret in LEAKS {
        assert!(
            !log.contains(secret),
            "{log_format} log quotes {secret}:\n{log}"
        );
    }
    // The token as the whole auth block.
    std::fs::write(d.dir.path().join("config.yml"), BARE_TOKEN).unwrap();
    d.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("expected struct AuthConfig") {
        assert!(
            Instant::now() < deadline,
            "second reload not logged:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = d.log();
    assert!(log.contains("expected struct AuthConfig"), "{log}");
    assert!(
        !log.contains("AT_leak_one_0123456789"),
        "{log_format}:\n{log}"
    );
}

#[tokio::test]
async fn a_failed_reload_logs_no_secret_in_json() {
    reload_with_secret_mistakes("json").await;
}

#[tokio::test]
async fn a_failed_reload_logs_no_secret_in_logfmt() {
    reload_with_secret_mistakes("logfmt").await;
}

#[test]
fn a_failed_start_prints_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, SECRET_MISTAKES).unwrap();
    let bare = dir.path().join("bare.yml");
    std::fs::write(&bare, BARE_TOKEN).unwrap();
    for args in [
        vec![format!("--config.file={}", cfg.display())],
        vec!["check-config".to_string(), cfg.display().to_string()],
        vec![format!("--config.file={}", bare.display())],
    ] {
        let out = std::process::Command::new(BIN)
            .arg("--web.listen-address=127.0.0.1:0")
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("invalid type: a string"), "{args:?}: {text}");
        for secret in LEAKS.iter().chain(&["AT_leak_one_0123456789"]) {
            assert!(!text.contains(secret), "{args:?} quotes {secret}:\n{text}");
        }
    }
}

/// The console integration prints alert text among the log lines: a label cannot forge a log
/// line, and no terminal escape reaches the output raw.
#[tokio::test]
async fn console_output_cannot_forge_log_lines_or_pass_terminal_escapes() {
    let d = Daemon::start(
        "alertmanager-wechat",
        Path::new(BIN),
        &[(
            "config.yml",
            "storage: { path: \"$DIR/data\" }\nroute: { receiver: c }\nreceivers: [{ name: c, console_configs: [{}] }]\n".to_string(),
        )],
        &[
            "--config.file=$DIR/config.yml",
            "--web.listen-address=127.0.0.1:$PORT",
            "--log.format=logfmt",
        ],
    )
    .await;
    let mut payload: Value = serde_json::from_str(&example("alertmanager-firing.json")).unwrap();
    let forged = "level=error msg=\"forged by a label\"";
    payload["alerts"][0]["labels"]["alertname"] = Value::String(format!(
        "Disk\u{1b}[31mRed\r\n{forged}\n\u{1b}]0;pwned\u{7}"
    ));
    payload["commonLabels"] = serde_json::json!({});
    assert_eq!(
        post(&format!("{}/webhook", d.url), payload.to_string()).await,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("Red") {
        assert!(Instant::now() < deadline, "nothing printed:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = d.log();
    assert!(
        !log.contains('\u{1b}') && !log.contains('\u{7}') && !log.contains('\r'),
        "{log:?}"
    );
    for line in log.lines() {
        if line.contains("forged by a label") {
            assert!(
                line.starts_with("│ "),
                "a forged line at column 0: {line:?}\n{log}"
            );
        }
    }
    assert!(log.contains("Disk\\u{1b}[31mRed"), "{log}");
}
