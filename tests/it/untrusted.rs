//! Untrusted templates and console requests against the real server: no template, from the
//! render API, a file read by check-config or a reload, or a delivery, can abort the process
//! or hold it up; the console API refuses from the head, before it takes any body budget.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::console::{WEBHOOK_TOKEN, basic, config as console_config};
use crate::support::wxpusher::MockWxPusher;
use crate::support::{TestServer, example, one_receiver};

/// One reproduction: what it is, its templates by name, the words the refusal must contain.
type Attack = (&'static str, Vec<(String, String)>, &'static str);

fn attacks() -> Vec<Attack> {
    let ifs = format!("{}x{}", "{{#if true}}".repeat(1000), "{{/if}}".repeat(1000));
    let mut doubling = vec![("d20".to_string(), "xx".to_string())];
    for i in 0..20 {
        doubling.push((
            format!("d{i}"),
            format!("{{{{> d{n}}}}}{{{{> d{n}}}}}", n = i + 1),
        ));
    }
    doubling.push(("wxpusher.content".into(), "{{> d0}}".into()));
    vec![
        (
            "mutual partials",
            vec![
                ("x.a".into(), "{{> x.b}}".into()),
                ("x.b".into(), "{{> x.a}}".into()),
                ("wxpusher.summary".into(), "{{> x.a}}".into()),
            ],
            "include each other",
        ),
        (
            "an inline partial calling itself",
            vec![(
                "wxpusher.summary".into(),
                r#"{{#*inline "r"}}x{{> r}}{{/inline}}{{> r}}"#.into(),
            )],
            "include each other",
        ),
        (
            "1,000 nested ifs",
            vec![("wxpusher.summary".into(), ifs)],
            "the limit is 32",
        ),
        ("doubling partials", doubling, "elements (the limit)"),
    ]
}

fn many_alerts(n: usize) -> Value {
    let mut p: Value = serde_json::from_str(&example("alertmanager-firing.json")).unwrap();
    let first = p["alerts"][0].clone();
    p["alerts"] = Value::Array(
        (0..n)
            .map(|i| {
                let mut a = first.clone();
                a["labels"]["instance"] = json!(format!("host-{i}"));
                a["fingerprint"] = json!(format!("{i:016x}"));
                a
            })
            .collect(),
    );
    p
}

const NESTED_EACH: &str =
    "{{#each alerts}}{{#each ../alerts}}{{#each ../../alerts}}{{/each}}{{/each}}{{/each}}";

async fn render(srv: &TestServer, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/render", srv.url))
        .header("authorization", basic())
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_render_api_refuses_every_reproduction_and_keeps_serving() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&console_config(&mock, "")).await;
    let payload: Value = serde_json::from_str(&example("alertmanager-firing.json")).unwrap();
    for (what, templates, words) in attacks() {
        let templates: serde_json::Map<String, Value> =
            templates.into_iter().map(|(k, v)| (k, json!(v))).collect();
        let (status, body) =
            render(&srv, json!({ "payload": payload, "templates": templates })).await;
        assert_eq!(status, 400, "{what}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(words), "{what}: {body}");
        assert!(
            !body["template"].as_str().unwrap_or_default().is_empty(),
            "{what}: {body}"
        );
        assert_eq!(srv.get("/-/healthy").await.0, 200, "after {what}");
    }
    // Three nested each over 400 alerts: stopped by the step budget, named.
    let (status, body) = render(
        &srv,
        json!({ "payload": many_alerts(400), "templates": { "wxpusher.content": NESTED_EACH } }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["template"], "wxpusher.content", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("4000000 render steps"),
        "{body}"
    );
    assert_eq!(srv.get("/-/healthy").await.0, 200);
}

fn write_templates(dir: &std::path::Path, templates: &[(String, String)]) -> String {
    let tdir = dir.join("templates");
    std::fs::create_dir_all(&tdir).unwrap();
    for (name, src) in templates {
        std::fs::write(tdir.join(format!("{name}.hbs")), src).unwrap();
    }
    format!("templates: ['{}/*.hbs']", tdir.display())
}

#[test]
fn check_config_reports_every_reproduction_as_a_config_error() {
    let mock_url = "http://127.0.0.1:9";
    for (what, templates, words) in attacks() {
        let dir = tempfile::tempdir().unwrap();
        let globs = write_templates(dir.path(), &templates);
        let path = dir.path().join("config.yml");
        std::fs::write(
            &path,
            format!(
                "global: {{ wxpusher_api_url: \"{mock_url}\" }}\n{globs}\nroute: {{ receiver: oncall }}\nreceivers:\n  - name: oncall\n    wxpusher_configs: [{{ app_token: AT_x, uids: [UID_a] }}]\n"
            ),
        )
        .unwrap();
        let (out, ok) = alertmanager_wechat::cli::check_config(&[path]);
        assert!(!ok, "{what}: {out}");
        assert!(out.contains(words), "{what}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_bad_template_keeps_the_running_config() {
    let mock = MockWxPusher::start().await;
    let yaml = one_receiver(&mock, "");
    let srv = TestServer::start(&yaml).await;
    for (what, templates, words) in attacks() {
        let globs = write_templates(srv.dir.path(), &templates);
        std::fs::write(
            srv.dir.path().join("config.yml"),
            format!("{globs}\n{yaml}"),
        )
        .unwrap();
        let (status, body) = srv.post("/-/reload", "").await;
        assert_eq!(status, 500, "{what}: {body}");
        assert!(body.contains(words), "{what}: {body}");
        std::fs::remove_dir_all(srv.dir.path().join("templates")).unwrap();
    }
    // Still serving, with the config it had.
    assert_eq!(
        srv.post("/webhook", example("alertmanager-firing.json"))
            .await
            .0,
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while mock.requests().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "nothing delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_over_a_render_limit_is_a_dead_letter_with_the_reason() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&format!(
        r#"
global: {{ wxpusher_api_url: "{}" }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs:
      - app_token: AT_test_token
        uids: [UID_a]
        content: '{NESTED_EACH}x'
"#,
        mock.url
    ))
    .await;
    assert_eq!(
        srv.post("/webhook", many_alerts(400).to_string()).await.0,
        200
    );
    let store = &srv.app.queue.store;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let dead = loop {
        let dead = store.dead_letters().await.unwrap();
        if !dead.is_empty() {
            break dead;
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(dead[0].reason.as_deref(), Some("render"));
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("render steps"),
        "{:?}",
        dead[0].last_error
    );
    assert_eq!(dead[0].attempt, 1, "a render over its limit is not retried");
    assert!(mock.requests().is_empty());
}

/// A request head to `path` announcing `len` bytes, sent without credentials or body; the
/// answer's head, read while the connection stays open.
async fn unauthenticated_head(addr: &str, path: &str, len: usize) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    (s, String::from_utf8_lossy(&got).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_console_heads_cannot_hold_the_webhooks_body_budget() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&console_config(
        &mock,
        "web: { max_body_bytes: 40000, max_inflight_body_bytes: 100000 }",
    ))
    .await;
    let addr = srv.url.trim_start_matches("http://").to_string();
    // Enough heads to take the whole budget three times over, if they could.
    let mut held = Vec::new();
    for path in ["/api/v1/render", "/api/v1/send-test"] {
        for _ in 0..4 {
            let (s, head) = unauthenticated_head(&addr, path, 40_000).await;
            assert!(head.starts_with("HTTP/1.1 401"), "{path}: {head:?}");
            held.push(s);
        }
    }
    let r = reqwest::Client::new()
        .post(format!("{}/webhook", srv.url))
        .header("authorization", format!("Bearer {WEBHOOK_TOKEN}"))
        .header("content-type", "application/json")
        .body(example("alertmanager-firing.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    drop(held);
}

#[tokio::test]
async fn api_answers_are_neither_sniffed_nor_cached() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&console_config(&mock, "")).await;
    let http = reqwest::Client::new();
    for (auth, want) in [(Some(basic()), 200), (None, 401)] {
        let mut r = http.get(format!("{}/api/v1/receivers", srv.url));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), want);
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
}

#[tokio::test]
async fn deadletters_show_upstream_escapes_and_bidi_characters_inert() {
    use crate::support::wxpusher::Reply;
    use alertmanager_wechat::cli::{DeadLetterAction, deadletters};
    let mock = MockWxPusher::start().await;
    mock.set_default(Reply::Code(
        1001,
        "bad \u{1b}[31mred\u{1b}[0m \u{202e}txet\u{9b}",
    ));
    let srv = TestServer::start(&one_receiver(&mock, "")).await;
    assert_eq!(
        srv.post("/webhook", example("alertmanager-firing.json"))
            .await
            .0,
        200
    );
    let store = srv.app.queue.store.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store.dead_letter_count().await.unwrap_or(0) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (list, ok) = deadletters(&store, DeadLetterAction::List).await;
    assert!(ok, "{list}");
    let id: i64 = list
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap();
    let (shown, ok) = deadletters(&store, DeadLetterAction::Show(id)).await;
    assert!(ok, "{shown}");
    for out in [&list, &shown] {
        assert!(
            !out.chars()
                .any(|c| c == '\u{1b}' || c == '\u{202e}' || c == '\u{9b}'),
            "{out:?}"
        );
        assert!(out.contains("\\u{1b}[31mred"), "{out}");
        assert!(out.contains("\\u{202e}txet"), "{out}");
    }
}

/// Large notifications take turns (one renders at a time); each still reaches every
/// integration of its receiver, whole: the one that waited was parked and restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_notification_to_three_integrations_reaches_each_in_turn() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&format!(
        r#"
global: {{ wxpusher_api_url: "{}" }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs:
      - {{ app_token: AT_test_token, uids: [UID_1] }}
      - {{ app_token: AT_test_token, uids: [UID_2] }}
      - {{ app_token: AT_test_token, uids: [UID_3] }}
"#,
        mock.url
    ))
    .await;
    let n = alertmanager_wechat::delivery::LARGE_ALERTS + 200;
    assert_eq!(
        srv.post("/webhook", many_alerts(n).to_string()).await.0,
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let seen = |uid: &str| {
        mock.requests()
            .iter()
            .filter(|r| r.body["uids"] == json!([uid]))
            .map(|r| r.body["content"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    loop {
        let last_host = format!("host-{}", n - 1);
        let done = ["UID_1", "UID_2", "UID_3"]
            .iter()
            .all(|u| seen(u).iter().any(|c| c.contains(&last_host)));
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every integration got the whole group"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every integration got the first alert too, and nothing was given up.
    for u in ["UID_1", "UID_2", "UID_3"] {
        // No other instance name starts with `host-0`.
        assert!(seen(u).iter().any(|c| c.contains("host-0")), "{u}");
    }
    assert_eq!(srv.app.queue.store.dead_letter_count().await.unwrap(), 0);
}
