//! `render`, `check-config` and the shipped templates, snapshotted so that template changes
//! are reviewed as diffs.

use std::path::Path;

use alertmanager_wechat::cli;
use alertmanager_wechat::config::Config;
use alertmanager_wechat::runtime::Runtime;
use chrono::{DateTime, Utc};

use crate::support::example;

fn now() -> DateTime<Utc> {
    "2026-11-25T08:30:00Z".parse().unwrap()
}

fn runtime(locale: &str) -> Runtime {
    let cfg = format!(
        r#"
global: {{ locale: {locale} }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs: [{{ app_token: AT_secret_value, uids: [UID_a] }}]
"#
    );
    Runtime::build(Config::parse(&cfg, "t.yml", Path::new(".")).unwrap()).unwrap()
}

fn rendered(locale: &str, payload: &str) -> String {
    let rt = runtime(locale);
    let out = cli::render(&rt, example(payload).as_bytes(), None, now()).unwrap();
    // The exact request, then the content as a person reads it, so diffs are reviewable.
    let mut text = cli::format_rendered(&out);
    for r in &out {
        for req in &r.requests {
            text.push_str(&format!(
                "--- summary: {}\n{}\n",
                req.body["summary"].as_str().unwrap(),
                req.body["content"].as_str().unwrap()
            ));
        }
    }
    text
}

#[test]
fn render_masks_the_token_and_prints_the_exact_body() {
    let rt = runtime("zh-CN");
    let out = cli::render(
        &rt,
        example("alertmanager-firing.json").as_bytes(),
        None,
        now(),
    )
    .unwrap();
    assert_eq!(out.len(), 1);
    let req = &out[0].requests[0];
    assert_eq!(req.url, "https://wxpusher.zjiecode.com/api/send/message");
    assert_eq!(req.body["appToken"], "<secret>");
    let text = cli::format_rendered(&out);
    assert!(!text.contains("AT_secret_value"));
}

#[test]
fn snapshot_zh_firing() {
    insta::assert_snapshot!(rendered("zh-CN", "alertmanager-firing.json"));
}

#[test]
fn snapshot_zh_resolved() {
    insta::assert_snapshot!(rendered("zh-CN", "alertmanager-resolved.json"));
}

#[test]
fn snapshot_zh_grafana() {
    insta::assert_snapshot!(rendered("zh-CN", "grafana-firing.json"));
}

#[test]
fn snapshot_en_firing() {
    insta::assert_snapshot!(rendered("en", "alertmanager-firing.json"));
}

#[test]
fn snapshot_en_resolved() {
    insta::assert_snapshot!(rendered("en", "alertmanager-resolved.json"));
}

#[test]
fn example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yml");
    let (out, ok) = cli::check_config(&[path]);
    assert!(ok, "{out}");
}

#[test]
fn check_config_lists_every_error_with_file_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "route:\n  receiver: a\n  routes:\n    - matchers: ['team=~\"(db\"']\nreceivers:\n  - name: a\n    wxpusher_configs: [{uids: [U]}]\n").unwrap();
    let unknown = dir.path().join("unknown.yml");
    std::fs::write(
        &unknown,
        "route: {receiver: a}\nreceivers: [{name: a, colour: red}]\n",
    )
    .unwrap();
    let (out, ok) = cli::check_config(&[bad.clone(), unknown.clone()]);
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "{}: route.routes[0].matchers[0]: matcher \"team=~\\\"(db\\\"\": invalid regex",
            bad.display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{}: receivers[0].colour: unknown field `colour`",
            unknown.display()
        )),
        "{out}"
    );
}

/// A check's error (a robot key too short to be real) and the templates' errors of the same
/// file are listed in one run: fixing the one does not reveal the others.
#[test]
fn check_config_lists_template_errors_beside_the_checks_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "route: {receiver: a}\nreceivers:\n  - name: a\n    wecom_robot_configs:\n      - key: abc\n        content: '{{#if x}}'\n        mentioned_list: ['{{'] \n  - name: b\n    console_configs: [{text: '{{/each}}'}]\n    wxpusher_configs: [{app_token: AT_token, uids: [U], summary: '{{#each alerts}}'}]\n",
    )
    .unwrap();
    let (out, ok) = cli::check_config(std::slice::from_ref(&bad));
    assert!(!ok);
    let file = bad.display();
    for path in [
        "receivers[0].wecom_robot_configs[0].key: is too short to be a real secret",
        "receivers[0].wecom_robot_configs[0].content: ",
        "receivers[0].wecom_robot_configs[0].mentioned_list[0]: ",
        "receivers[1].console_configs[0].text: ",
        "receivers[1].wxpusher_configs[0].summary: ",
    ] {
        assert!(
            out.contains(&format!("{file}: {path}")),
            "{path} missing:\n{out}"
        );
    }
    assert!(!out.contains("abc"), "the key is a secret: {out}");
}

/// The real binary: an unknown key, a bad matcher and a bad duration in one file are all
/// listed, each with the file and its YAML path, and the exit status says the file is bad.
#[test]
fn check_config_binary_lists_structural_and_semantic_errors_together() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "dedupe: {window: 5 parsecs}\nroute:\n  receiver: a\n  routes:\n    - matchers: ['team=~\"(db\"']\n      receiver: nobody\nreceivers:\n  - name: a\n    colour: red\n    console_configs: [{}]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_alertmanager-wechat"))
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let file = bad.display().to_string();
    for expected in [
        format!(
            "{file}: dedupe.window: invalid value: a string, expected a duration at line 1 column 18"
        ),
        format!(
            "{file}: route.routes[0].matchers[0]: matcher \"team=~\\\"(db\\\"\": invalid regex: unclosed group at line 5 column 18"
        ),
        format!("{file}: receivers[0].colour: unknown field `colour`"),
        format!("{file}: route.routes[0].receiver: unknown receiver \"nobody\""),
    ] {
        assert!(text.contains(&expected), "{expected}\nnot in:\n{text}");
    }
    assert!(text.contains("at line 9 column 5\n"), "{text}");
}

#[test]
fn truncated_alerts_are_mentioned_only_when_there_are_some() {
    for (locale, words) in [
        ("zh-CN", "另有 3 条告警因数量限制未显示。"),
        ("en", "3 more alerts were not included (max_alerts)."),
    ] {
        let content = |payload: &str| {
            let out = cli::render(&runtime(locale), payload.as_bytes(), None, now()).unwrap();
            out[0].requests[0].body["content"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let payload = example("alertmanager-firing.json");
        assert!(payload.contains(r#""truncatedAlerts": 0"#));
        let none = content(&payload);
        let some = content(&payload.replace(r#""truncatedAlerts": 0"#, r#""truncatedAlerts": 3"#));
        assert!(!none.contains(words), "{none}");
        assert!(some.ends_with(words), "{some}");
    }
}

/// A Grafana payload whose every label, annotation and URL is an attack: HTML, markdown links,
/// attribute break-outs and non-http(s) schemes in every case and spacing.
fn hostile_payload() -> String {
    serde_json::json!({
        "receiver": "wechat", "status": "firing", "orgId": 1, "version": "1",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "<script>alert(1)</script>",
                    "severity": "crit`<b>ical",
                    "x": "\"><svg onload=alert(1)>](javascript:alert(3))"
                },
                "annotations": {
                    "summary": "<img src=x onerror=alert(1)> [Click](javascript:alert(1))",
                    "description": "<iframe src=javascript:alert(2)></iframe> ![i](data:x) \\[y](vbscript:z)"
                },
                "startsAt": "2026-11-25T09:51:03+08:00", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "https://ok.example/a\"><script>x</script>(b)[c] d",
                "silenceURL": "JaVaScRiPt:urlmark(1)",
                "dashboardURL": " \tjavascript:urlmark(2)",
                "panelURL": "data:text/html,<script>urlmark(3)</script>",
                "fingerprint": "f1",
                "values": {"B": 1.5}
            },
            {
                "status": "resolved",
                "labels": {"alertname": "[R](javascript:r)", "z": "<u>"},
                "annotations": {"summary": "<script>r</script>"},
                "startsAt": "2026-11-25T07:00:00Z", "endsAt": "2026-11-25T08:00:00Z",
                "generatorURL": "java\nscript:urlmark(4)",
                "fingerprint": "f2"
            }
        ],
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "\u{0}vbscript:urlmark(5)",
        "groupKey": "{}:{}", "truncatedAlerts": 0
    })
    .to_string()
}

fn hostile_runtime(locale: &str) -> Runtime {
    let cfg = format!(
        r#"
global: {{ locale: {locale} }}
route: {{ receiver: md }}
receivers:
  - name: md
    wxpusher_configs: [{{ app_token: AT_secret_value, uids: [UID_a], content_type: markdown }}]
  - name: html
    wxpusher_configs: [{{ app_token: AT_secret_value, uids: [UID_a], content_type: html }}]
  - name: text
    wxpusher_configs: [{{ app_token: AT_secret_value, uids: [UID_a], content_type: text }}]
  - name: oa
    official_account_configs:
      - app_id: wx0123456789abcdef
        app_secret: oa_app_secret_0123456789abcdef
        template_id: TPL_alert
        to_openids: [o_a]
  - name: gw
    weixin_gateway_configs: [{{ url: 'http://gw:8787', account_id: wx-1, to_user_ids: [a@im.wechat] }}]
  - name: console
    console_configs: [{{}}]
"#
    );
    Runtime::build(Config::parse(&cfg, "t.yml", Path::new(".")).unwrap()).unwrap()
}

fn hostile_bodies(locale: &str, receiver: &str) -> Vec<serde_json::Value> {
    let rt = hostile_runtime(locale);
    let out = cli::render(&rt, hostile_payload().as_bytes(), Some(receiver), now()).unwrap();
    assert!(!out.is_empty(), "{receiver}");
    out.into_iter()
        .flat_map(|r| r.requests)
        .map(|r| r.body)
        .collect()
}

/// Every string in a JSON body, with the key it sits under.
fn strings(v: &serde_json::Value, key: &str, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::String(s) => out.push((key.to_string(), s.clone())),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, key, out)),
        serde_json::Value::Object(m) => m.iter().for_each(|(k, x)| strings(x, k, out)),
        _ => {}
    }
}

/// Each markdown link target in `s` (what follows `](` up to the next `)`), unless the `]` is
/// escaped.
fn md_link_targets(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("](") {
        let escaped = rest[..i].ends_with('\\') && !rest[..i].ends_with("\\\\");
        let after = &rest[i + 2..];
        if !escaped {
            out.push(after.split(')').next().unwrap_or("").to_string());
        }
        rest = after;
    }
    out
}

#[test]
fn hostile_text_is_inert_in_every_shipped_template() {
    for locale in ["zh-CN", "en"] {
        // Markdown: no tag, every link target http(s) and unbroken, no link from alert text.
        for body in hostile_bodies(locale, "md") {
            let content = body["content"].as_str().unwrap();
            for tag in ["<script", "<img", "<iframe", "<svg", "<u>"] {
                assert!(!content.contains(tag), "{locale} md {tag}: {content}");
            }
            let targets = md_link_targets(content);
            assert_eq!(
                targets,
                vec!["https://ok.example/a%22%3E%3Cscript%3Ex%3C/script%3E%28b%29%5Bc%5D%20d"],
                "{locale}: {content}"
            );
            // Inside a code span markup is literal; only the backtick that would end it goes.
            assert!(content.contains("`crit'<b>ical`"), "{content}");
            assert!(body.get("url").is_none_or(|u| u.is_null()), "{body}");
        }
        // HTML: everything from the payload escaped; the one href stays inside its quotes.
        for body in hostile_bodies(locale, "html") {
            let content = body["content"].as_str().unwrap();
            for tag in [
                "<script", "<img", "<iframe", "<svg", "<b>ical", "<u>", "\"><",
            ] {
                assert!(!content.contains(tag), "{locale} html {tag}: {content}");
            }
            assert_eq!(content.matches("href=").count(), 1, "{content}");
            assert!(
                content.contains(
                    "href=\"https://ok.example/a&quot;&gt;&lt;script&gt;x&lt;/script&gt;(b)[c] d\""
                ),
                "{content}"
            );
            assert!(
                content.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
                "{content}"
            );
            assert!(body.get("url").is_none_or(|u| u.is_null()), "{body}");
        }
        // Every template, plain text included (WxPusher text, weixin-gateway, console, Official
        // Account fields): text may say anything, but no non-http(s) URL field is offered.
        for receiver in ["md", "html", "text", "gw", "console", "oa"] {
            for body in hostile_bodies(locale, receiver) {
                let mut all = Vec::new();
                strings(&body, "", &mut all);
                for (key, s) in all {
                    let lower = s.to_lowercase();
                    assert!(!lower.contains("urlmark"), "{locale} {receiver} {key}: {s}");
                    if key == "url" {
                        assert!(s.starts_with("http"), "{receiver}: {s}");
                    }
                }
            }
        }
    }
}

#[test]
fn a_javascript_external_url_never_becomes_the_url_field() {
    let cfg = r#"
route: { receiver: both }
receivers:
  - name: both
    wxpusher_configs: [{ app_token: AT_secret_value, uids: [UID_a], url: '{{raw_url "externalURL"}}' }]
    official_account_configs:
      - { app_id: wx1, app_secret: s3cret_value, template_id: T, to_openids: [o], url: '  JAVASCRIPT:alert(1)' }
"#;
    let rt = Runtime::build(Config::parse(cfg, "t.yml", Path::new(".")).unwrap()).unwrap();
    let mut payload: serde_json::Value =
        serde_json::from_str(&example("alertmanager-firing.json")).unwrap();
    payload["externalURL"] = serde_json::json!("javascript:alert(1)");
    let out = cli::render(&rt, payload.to_string().as_bytes(), None, now()).unwrap();
    assert_eq!(out.len(), 2);
    for r in &out {
        for req in &r.requests {
            assert!(
                req.body.get("url").is_none_or(|u| u.is_null()),
                "{}",
                req.body
            );
        }
    }
    // An http(s) externalURL is still the link, trimmed.
    payload["externalURL"] = serde_json::json!(" https://am.example/#/alerts ");
    let out = cli::render(&rt, payload.to_string().as_bytes(), None, now()).unwrap();
    assert_eq!(
        out[0].requests[0].body["url"],
        serde_json::json!("https://am.example/#/alerts")
    );
}

/// `render --person`: through the real binary, one page per contact of the person, each with
/// the incident's reference in its text and the signed one-tap link as its tap target, secrets
/// masked; an unknown person is an error naming them.
#[test]
fn render_person_prints_the_page_each_contact_gets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oncall.yml");
    std::fs::write(
        &file,
        r#"
global: { locale: zh-CN }
oncall:
  public_url: https://alerts.example.com
  link_secret: link-secret-value
  channels:
    wxpusher: { app_token: AT_oncall_secret }
    wecom_app: { corp_id: ww0123, agent_id: 1000002, api_secret: wecom-app-secret }
people:
  - name: zhangsan
    display_name: 张三
    contacts: { wxpusher: { uid: UID_zs }, wecom_app: { userid: ZhangSan } }
  - { name: lisi, contacts: { wxpusher: { uid: UID_ls } } }
escalation_policies:
  - name: sre
    steps: [ { notify: [ {person: zhangsan} ], escalate_after: 10m } ]
route: { receiver: group, escalation_policy: sre }
receivers:
  - name: group
    wxpusher_configs: [ { app_token: AT_group, uids: [UID_group] } ]
"#,
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_alertmanager-wechat"))
            .arg("render")
            .arg(format!("--config.file={}", file.display()))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--person=zhangsan", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    let kinds: Vec<&str> = list
        .iter()
        .map(|r| r["integration"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["wxpusher[0]", "wecom_app[1]"], "{list:#?}");
    assert!(list.iter().all(|r| r["receiver"] == "oncall:zhangsan"));
    let reference = alertmanager_wechat::store::incident::reference(1);
    let wx = &list[0]["requests"][0]["body"];
    assert_eq!(wx["uids"][0], "UID_zs");
    assert_eq!(wx["appToken"], "<secret>");
    assert!(wx["content"].as_str().unwrap().contains(&reference), "{wx}");
    assert!(
        wx["url"]
            .as_str()
            .unwrap()
            .starts_with("https://alerts.example.com/ack/"),
        "{wx}"
    );
    assert_eq!(list[1]["requests"][0]["body"]["touser"], "ZhangSan");
    // The WeCom page carries the reference too, so a reply can name the incident.
    let wecom = list[1]["requests"][0]["body"]["text"]["content"]
        .as_str()
        .unwrap();
    assert!(wecom.contains(&format!("编号 #{reference}")), "{wecom}");
    // The sample incident's page shows what fires.
    let content = wx["content"].as_str().unwrap();
    assert!(
        content.contains("Sample alert") && !content.contains("Sample resolved"),
        "{content}"
    );
    let all = String::from_utf8_lossy(&out.stdout);
    for secret in ["AT_oncall_secret", "wecom-app-secret", "link-secret-value"] {
        assert!(!all.contains(secret), "{secret} shown");
    }
    // The readable form names each contact.
    let out = run(&["--person=lisi"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("# receiver oncall:lisi · wxpusher[0]\n"),
        "{text}"
    );
    assert!(
        text.contains("UID_ls") && text.contains(&reference),
        "{text}"
    );
    // An unknown person, and neither --payload nor --person.
    let out = run(&["--person=nobody"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown person \"nobody\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!run(&[]).status.success());
}
