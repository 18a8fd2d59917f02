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
            "{file}: dedupe.window: invalid value: string \"5 parsecs\", expected a duration at line 1 column 18"
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
