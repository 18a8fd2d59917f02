//! Operations and security: reload, secrets that never leak, hostile input.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::support::wxpusher::{MockWxPusher, Reply};
use crate::support::{TestServer, example, metric, one_receiver as config};

#[tokio::test]
async fn reload_keeps_the_running_config_on_error_and_swaps_on_success() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "")).await;
    let path = srv.dir.path().join("config.yml");
    std::fs::write(
        &path,
        "route: {receiver: nobody}\nreceivers: [{name: a, colour: red}]\n",
    )
    .unwrap();
    let (code, body) = srv.post("/-/reload", "").await;
    assert_eq!(code, 500);
    assert!(
        body.contains("receivers[0].colour: unknown field `colour`"),
        "{body}"
    );
    // Past the unknown key, the checks after parsing still run.
    assert!(
        body.contains("route.receiver: unknown receiver \"nobody\""),
        "{body}"
    );
    let (_, m) = srv.get("/metrics").await;
    assert_eq!(
        metric(&m, "alertmanager_wechat_config_last_reload_successful"),
        0.0
    );
    // Still running the old configuration.
    assert_eq!(
        srv.post("/webhook", example("alertmanager-firing.json"))
            .await
            .0,
        200
    );
    let reqs = mock.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(reqs[0].body["uids"], serde_json::json!(["UID_a"]));
    // A good file is swapped in whole.
    std::fs::write(&path, config(&mock, "").replace("UID_a", "UID_b")).unwrap();
    assert_eq!(srv.post("/-/reload", "").await.0, 200);
    let (_, m) = srv.get("/metrics").await;
    assert_eq!(
        metric(&m, "alertmanager_wechat_config_last_reload_successful"),
        1.0
    );
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    let reqs = mock.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(reqs[1].body["uids"], serde_json::json!(["UID_b"]));
}

#[tokio::test]
async fn reload_is_protected_like_the_webhook() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "auth: { bearer_token: mgmt-token-1 }")).await;
    assert_eq!(srv.post("/-/reload", "").await.0, 401);
    let r = reqwest::Client::new()
        .post(format!("{}/-/reload", srv.url))
        .bearer_auth("mgmt-token-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn slow_clients_are_dropped_after_the_header_timeout() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "web: { header_read_timeout: 1s }")).await;
    let addr = srv.url.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "connection still open after the header read timeout"
    );
}

#[tokio::test]
async fn deeply_nested_json_is_refused_cheaply() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "")).await;
    // Nesting inside an ignored field still counts against the parser's depth limit.
    let deep = format!(
        "{{\"x\":{}{},\"status\":\"firing\",\"alerts\":[]}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let (code, body) = srv.post("/webhook", deep).await;
    assert_eq!(code, 400);
    assert!(body.contains("recursion limit exceeded"), "{body}");
}

/// The tokens below must never appear in anything the process prints or answers.
const WX_TOKEN: &str = "AT_leak_canary_wxpusher";
const BEARER: &str = "bearer-leak-canary";
const HMAC: &str = "hmac-leak-canary";

#[tokio::test]
async fn secrets_never_appear_in_logs_responses_metrics_or_render() {
    let mock = MockWxPusher::start().await;
    // The upstream even echoes the token back in its error message.
    mock.script([
        Reply::Code(1001, "appToken AT_leak_canary_wxpusher 不正确"),
        Reply::Http(500),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{WX_TOKEN}\n")).unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            r#"
global: {{ wxpusher_api_url: "{}" }}
auth: {{ bearer_token: {BEARER}, grafana_hmac_secret: {HMAC} }}
storage: {{ path: "{}" }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs: [{{ app_token_file: "{}", uids: [UID_a] }}]
  - name: second
    wxpusher_configs: [{{ app_token: {WX_TOKEN}, uids: [UID_b] }}]
"#,
            mock.url,
            dir.path().join("data").display(),
            token_file.display()
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_alertmanager-wechat");
    let mut child = tokio::process::Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg("--log.level=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut logs = String::new();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(10), stderr.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        logs.push_str(&line);
        logs.push('\n');
        if let Some(rest) = line.split("address=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    let drain = tokio::spawn(async move {
        let mut rest = String::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    let url = format!("http://{addr}");
    let http = reqwest::Client::new();
    let mut answers = String::new();
    for (auth, path) in [
        (Some(BEARER), "/webhook"),
        (None, "/webhook"),
        (Some("wrong"), "/webhook/second"),
        (Some(BEARER), "/webhook/second"),
        (Some(BEARER), "/-/reload"),
    ] {
        let mut req = http
            .post(format!("{url}{path}"))
            .body(example("alertmanager-firing.json"));
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        let r = req.send().await.unwrap();
        answers.push_str(&r.text().await.unwrap());
    }
    // The bad-token failure and the 500 (then success) both happen.
    mock.wait_for(3, Duration::from_secs(10)).await;
    answers.push_str(
        &http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    child.start_kill().unwrap();
    logs.push_str(&drain.await.unwrap());
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    assert!(
        logs.contains("appToken <secret> 不正确"),
        "the failure was logged, masked:\n{logs}"
    );
    // render and check-config output.
    let render = std::process::Command::new(bin)
        .args([
            "render",
            &format!("--config.file={}", cfg.display()),
            "--payload",
        ])
        .arg(format!(
            "{}/examples/alertmanager-firing.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .output()
        .unwrap();
    assert!(render.status.success());
    let check = std::process::Command::new(bin)
        .arg("check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    let all = format!(
        "{logs}{stdout}{answers}{}{}{}{}",
        String::from_utf8_lossy(&render.stdout),
        String::from_utf8_lossy(&render.stderr),
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    for secret in [WX_TOKEN, BEARER, HMAC] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
}

#[tokio::test]
async fn reload_answers_500_listing_every_error_including_templates_that_fail_on_a_sample() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "")).await;
    let path = srv.dir.path().join("config.yml");
    // Parses and compiles; only rendering a notification shows the missing partial.
    std::fs::write(
        &path,
        "web: { max_connections: 0 }\nroute: {receiver: nobody}\nreceivers: [{name: a, console_configs: [{text: '{{> no.such.partial}}'}]}]\n",
    )
    .unwrap();
    let (code, body) = srv.post("/-/reload", "").await;
    assert_eq!(code, 500, "{body}");
    let file = path.display().to_string();
    assert!(
        body.contains(&format!("{file}: web.max_connections: must be at least 1")),
        "{body}"
    );
    assert!(body.contains("nobody"), "{body}");
    let (_, m) = srv.get("/metrics").await;
    assert_eq!(
        metric(&m, "alertmanager_wechat_config_last_reload_successful"),
        0.0
    );
    // Valid config, but a template that cannot render the sample notification.
    std::fs::write(
        &path,
        "route: {receiver: a}\nreceivers: [{name: a, console_configs: [{text: '{{> no.such.partial}}'}]}]\n",
    )
    .unwrap();
    let (code, body) = srv.post("/-/reload", "").await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("console integration does not render a sample notification"),
        "{body}"
    );
    assert!(body.contains("no.such.partial"), "{body}");
    // The running configuration is untouched and still delivers.
    assert_eq!(
        srv.post("/webhook", example("alertmanager-firing.json"))
            .await
            .0,
        200
    );
    mock.wait_for(1, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn huge_alert_arrays_are_refused_before_parsing_them() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "")).await;
    let alert =
        r#"{"status":"firing","labels":{"alertname":"A"},"startsAt":"2026-01-01T00:00:00Z"}"#;
    let body = format!(
        r#"{{"status":"firing","alerts":[{}]}}"#,
        vec![alert; 10_001].join(",")
    );
    let (code, text) = srv.post("/webhook", body).await;
    assert_eq!(
        (code, text.as_str()),
        (400, "too many alerts: more than 10000\n")
    );
    srv.stop().await;
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn connections_over_the_limit_wait_until_one_closes() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(
        &mock,
        "web: { max_connections: 2, header_read_timeout: 60s }",
    ))
    .await;
    let addr = srv.url.trim_start_matches("http://").to_string();
    // Two idle connections take both slots.
    let first = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    third
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(500), third.read_to_end(&mut buf)).await;
    assert!(
        early.is_err() && buf.is_empty(),
        "served over the connection limit: {:?}",
        String::from_utf8_lossy(&buf)
    );
    drop(first);
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buf))
        .await
        .expect("not served after a slot freed")
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.ends_with("OK\n"), "{text}");
}

#[tokio::test]
async fn basic_auth_protects_the_webhook_and_management_endpoints() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(
        &mock,
        "auth: { basic_auth: { username: alertmanager, password: basic-pw-1 } }",
    ))
    .await;
    let http = reqwest::Client::new();
    let send = |path: &str, user: &str, pw: Option<&str>| {
        http.post(format!("{}{path}", srv.url))
            .basic_auth(user, pw)
            .body(example("alertmanager-firing.json"))
            .send()
    };
    for (user, pw) in [
        ("alertmanager", Some("wrong")),
        ("someone", Some("basic-pw-1")),
        ("alertmanager", None),
    ] {
        for path in ["/webhook", "/-/reload"] {
            let r = send(path, user, pw).await.unwrap();
            assert_eq!(r.status().as_u16(), 401, "{path} {user} {pw:?}");
            assert_eq!(r.text().await.unwrap(), "unauthorized\n");
        }
    }
    assert_eq!(
        srv.post("/webhook", example("alertmanager-firing.json"))
            .await
            .0,
        401
    );
    assert_eq!(srv.post("/-/reload", "").await.0, 401);
    let r = send("/webhook", "alertmanager", Some("basic-pw-1"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = send("/-/reload", "alertmanager", Some("basic-pw-1"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    mock.wait_for(1, Duration::from_secs(5)).await;
    srv.stop().await;
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn grafana_signature_is_verified_over_http() {
    use hmac::{Hmac, Mac};
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(
        &mock,
        "auth: { grafana_hmac_secret: gsecret, grafana_hmac_timestamp_header: X-Grafana-Alerting-Signature-Timestamp }",
    ))
    .await;
    let body = example("grafana-firing.json");
    let sign = |ts: i64, body: &str| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"gsecret").unwrap();
        mac.update(format!("{ts}:{body}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let post = |sig: String, ts: i64, body: String| {
        reqwest::Client::new()
            .post(format!("{}/webhook", srv.url))
            .header("X-Grafana-Alerting-Signature", sig)
            .header("X-Grafana-Alerting-Signature-Timestamp", ts.to_string())
            .body(body)
            .send()
    };
    let now = chrono::Utc::now().timestamp();
    let status = |r: reqwest::Response| r.status().as_u16();
    // Replayed outside the window, signed with another key, tampered body, unsigned.
    assert_eq!(
        status(
            post(sign(now - 3600, &body), now - 3600, body.clone())
                .await
                .unwrap()
        ),
        401
    );
    assert_eq!(
        status(post("00".repeat(32), now, body.clone()).await.unwrap()),
        401
    );
    assert_eq!(
        status(
            post(sign(now, &body), now, body.replace("firing", "resolved"))
                .await
                .unwrap()
        ),
        401
    );
    assert_eq!(srv.post("/webhook", body.clone()).await.0, 401);
    assert_eq!(
        status(post(sign(now, &body), now, body.clone()).await.unwrap()),
        200
    );
    mock.wait_for(1, Duration::from_secs(5)).await;
    srv.stop().await;
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn reload_does_not_disturb_a_delivery_in_flight() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "")).await;
    mock.hold();
    assert_eq!(
        srv.post("/webhook", example("alertmanager-firing.json"))
            .await
            .0,
        200
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while mock.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no delivery started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let path = srv.dir.path().join("config.yml");
    std::fs::write(&path, config(&mock, "").replace("UID_a", "UID_b")).unwrap();
    assert_eq!(srv.post("/-/reload", "").await.0, 200);
    mock.release();
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    let reqs = mock.wait_for(2, Duration::from_secs(5)).await;
    srv.stop().await;
    // The held one finished as it started, once; the next one used the new config.
    let uids: Vec<_> = mock
        .requests()
        .iter()
        .map(|r| r.body["uids"].clone())
        .collect();
    assert_eq!(
        uids,
        [serde_json::json!(["UID_a"]), serde_json::json!(["UID_b"])],
        "{reqs:?}"
    );
}

/// Secrets written where a map or list is expected: serde used to quote them in its errors.
const BARE_TOKEN: &str =
    "auth: AT_leak_one_0123456789\nroute: {receiver: a}\nreceivers: [{name: a}]\n";
const SECRET_MISTAKES: &str = "auth: {basic_auth: 'user:leak_three_0123456789'}\nroute: {receiver: a}\nreceivers:\n  - name: a\n    wxpusher_configs: [ AT_leak_two_0123456789 ]\n    weixin_gateway_configs: [{url: 'http://gw:1', account_id: a, to_user_ids: [u@im.wechat]}]\n    official_account_configs: [{app_id: wx1, app_secret: [12345678987654], template_id: T, to_openids: [o]}]\n";
const LEAKS: [&str; 3] = [
    "AT_leak_two_0123456789",
    "leak_three_0123456789",
    "12345678987654",
];

#[test]
fn check_config_names_the_place_of_a_misplaced_secret_not_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yml");
    std::fs::write(&path, SECRET_MISTAKES).unwrap();
    // The token as the whole auth block, in a second file.
    let bare = dir.path().join("bare.yml");
    std::fs::write(&bare, BARE_TOKEN).unwrap();
    let (out, ok) = alertmanager_wechat::cli::check_config(&[path, bare]);
    assert!(!ok);
    assert!(
        out.contains("auth: invalid type: a string, expected struct AuthConfig at line 1 column 7"),
        "{out}"
    );
    assert!(!out.contains("AT_leak_one_0123456789"), "{out}");
    assert!(
        out.contains("receivers[0].wxpusher_configs[0]: invalid type: a string"),
        "{out}"
    );
    assert!(
        out.contains("auth.basic_auth: invalid type: a string"),
        "{out}"
    );
    for secret in LEAKS {
        assert!(!out.contains(secret), "quotes {secret}:\n{out}");
    }
}

#[tokio::test]
async fn a_failed_reload_answers_without_the_secret() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "")).await;
    std::fs::write(srv.dir.path().join("config.yml"), SECRET_MISTAKES).unwrap();
    let (code, body) = srv.post("/-/reload", "").await;
    assert_eq!(code, 500);
    assert!(body.contains("wxpusher_configs[0]"), "{body}");
    assert!(
        body.contains("auth.basic_auth: invalid type: a string"),
        "{body}"
    );
    for secret in LEAKS {
        assert!(!body.contains(secret), "quotes {secret}:\n{body}");
    }
    std::fs::write(srv.dir.path().join("config.yml"), BARE_TOKEN).unwrap();
    let (code, body) = srv.post("/-/reload", "").await;
    assert_eq!(code, 500);
    assert!(body.contains("auth: invalid type: a string"), "{body}");
    assert!(!body.contains("AT_leak_one_0123456789"), "{body}");
}

/// `check-config` takes its files as arguments, as `--config.file=FILE` (the form `render`
/// and the server take), or both; with neither it says how to name one.
#[test]
fn check_config_takes_config_file_as_well_as_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        "route: { receiver: r }\nreceivers: [ { name: r, console_configs: [ {} ] } ]\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "route: { receiver: nobody }\nreceivers: []\n").unwrap();
    let run = |args: &[String]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_alertmanager-wechat"))
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let ok_line = format!("{}: OK (1 receivers, 1 integrations)\n", good.display());
    let (code, text) = run(&[
        "check-config".into(),
        format!("--config.file={}", good.display()),
    ]);
    assert_eq!((code, text.as_str()), (Some(0), ok_line.as_str()));
    let (code, text) = run(&["check-config".into(), good.display().to_string()]);
    assert_eq!((code, text.as_str()), (Some(0), ok_line.as_str()));
    // Both forms at once: every file is checked, the flag's first.
    let (code, text) = run(&[
        format!("--config.file={}", good.display()),
        "check-config".into(),
        bad.display().to_string(),
    ]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.starts_with(&ok_line), "{text}");
    assert!(text.contains(&format!("{}: ", bad.display())), "{text}");
    let (code, text) = run(&["check-config".into()]);
    assert_ne!(code, Some(0));
    assert!(
        text.contains("check-config needs a file: check-config FILE... or --config.file=FILE"),
        "{text}"
    );
}

/// A template syntax error, inline or in a template file, is said once, in words, with the
/// file or YAML path, the line and column, and the line with a caret under the place.
#[test]
fn check_config_shows_a_template_syntax_error_once_with_its_line_and_a_caret() {
    let dir = tempfile::tempdir().unwrap();
    let hbs = dir.path().join("oncall.content.hbs");
    std::fs::write(
        &hbs,
        "## {{alertnames}}\n{{#each alerts}}\n- {{labels.instance}}\n",
    )
    .unwrap();
    let path = dir.path().join("c.yml");
    std::fs::write(
        &path,
        format!(
            r#"templates: [ "{}" ]
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs:
      - app_token: AT_test_token
        uids: [ UID_a ]
        summary: '[{{{{status_text] {{{{alertnames}}}}'
"#,
            dir.path().join("*.hbs").display()
        ),
    )
    .unwrap();
    let (out, ok) = alertmanager_wechat::cli::check_config(std::slice::from_ref(&path));
    assert!(!ok);
    let file = path.display();
    assert!(
        out.contains(&format!(
            "{file}: receivers[0].wxpusher_configs[0].summary: line 1, column 2: unclosed `{{{{`: no `}}}}` ends the tag opened here\n  1 | [{{{{status_text] {{{{alertnames}}}}\n    |  ^\n"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{file}: templates: template {}: line 2, column 1: the block `{{{{#each}}}}` is never ended: add `{{{{/each}}}}`\n  2 | {{{{#each alerts}}}}\n    | ^\n",
            hbs.display()
        )),
        "{out}"
    );
    assert_eq!(out.matches("unclosed").count(), 1, "said once: {out}");
    // Not again as a template the sample cannot find.
    assert!(!out.contains("not found"), "{out}");
    assert!(
        !out.contains("trailing_tilde") && !out.contains("reason:"),
        "{out}"
    );
}
