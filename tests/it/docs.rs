//! The documentation cannot drift from the code: every YAML block in `README.md`,
//! `README.zh-CN.md`, `docs/*.md` and their Chinese twins `docs/zh-CN/*.md` is checked, and
//! every page under `docs/` has its twin (same name, same blocks) in the other language.
//!
//! The rule, per fenced block (```` ```yaml ```` or ```` ```yml ````), decided by an optional
//! `<!-- check: … -->` comment on the line before the fence:
//! - `<!-- check: skip REASON -->`: not checked (say why).
//! - `<!-- check: helm-values -->`: a Helm values file; its `config:` is checked as below, with
//!   its `templates:` as template files.
//! - no marker, and the block mentions `webhook_configs`: an Alertmanager configuration. A
//!   fragment without `route:` gets one to its first receiver; `amtool check-config` must pass.
//! - no marker otherwise: this service's configuration, whole or a fragment. A fragment gets the
//!   missing `receivers` (console receivers for the names its route uses) and `route` (to the
//!   first receiver). Every `*_file` is pointed at a file that exists, `templates:` at the
//!   page's own template blocks, `${VAR}` is filled. `check-config` must pass without warnings,
//!   and `render` must succeed for every example payload.
//!
//! Other blocks: ```` ```handlebars ```` after `<!-- check: template NAME.hbs -->` becomes a
//! template file for the page's configurations; a block after `<!-- check: rendered -->` must
//! appear verbatim in what the page's configurations render from
//! `examples/alertmanager-firing.json` at 2026-11-25T08:30:00Z.

use std::path::{Path, PathBuf};

use alertmanager_wechat::cli;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::support::process;

const AMTOOL: &str = "/usr/bin/amtool";
const PAYLOADS: &[&str] = &[
    "alertmanager-firing.json",
    "alertmanager-resolved.json",
    "grafana-firing.json",
];

/// One fenced block of a Markdown file.
#[derive(Debug)]
struct Block {
    line: usize,
    lang: String,
    marker: Option<String>,
    text: String,
}

/// The fenced blocks of a Markdown text, with the `<!-- check: … -->` marker before each.
fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = markdown.lines().enumerate();
    let mut previous: Option<&str> = None;
    while let Some((n, line)) = lines.next() {
        let Some(lang) = line.strip_prefix("```") else {
            if !line.trim().is_empty() {
                previous = Some(line);
            }
            continue;
        };
        let marker = previous
            .map(str::trim)
            .and_then(|p| p.strip_prefix("<!-- check:"))
            .and_then(|p| p.strip_suffix("-->"))
            .map(|m| m.trim().to_string());
        let mut text = String::new();
        for (_, l) in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            text.push_str(l);
            text.push('\n');
        }
        out.push(Block {
            line: n + 1,
            lang: lang.trim().to_string(),
            marker,
            text,
        });
        previous = None;
    }
    out
}

/// What checking one page found.
#[derive(Debug, Default)]
struct Report {
    configs: usize,
    alertmanager: usize,
    skipped: usize,
    rendered: usize,
    problems: Vec<String>,
}

fn now() -> DateTime<Utc> {
    "2026-11-25T08:30:00Z".parse().unwrap()
}

/// Checks every block of one page; `dir` is a scratch directory for it.
fn check_page(name: &str, markdown: &str, dir: &Path) -> Report {
    let mut report = Report::default();
    let templates = dir.join("templates");
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::create_dir_all(&secrets).unwrap();
    let blocks = blocks(markdown);
    for b in &blocks {
        if let Some(file) = b
            .marker
            .as_deref()
            .and_then(|m| m.strip_prefix("template "))
        {
            std::fs::write(templates.join(file.trim()), &b.text).unwrap();
        }
    }
    let mut outputs: Vec<String> = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        if !matches!(b.lang.as_str(), "yaml" | "yml") {
            continue;
        }
        let at = format!("{name}:{}", b.line);
        let marker = b.marker.as_deref().unwrap_or("");
        if marker.starts_with("skip") {
            report.skipped += 1;
            continue;
        }
        let text = fill_env(&b.text);
        let parsed: Value = match yaml_serde::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                report.problems.push(format!(
                    "{at}: not YAML ({e}); mark it <!-- check: skip … -->"
                ));
                continue;
            }
        };
        let file = dir.join(format!("block-{i}.yml"));
        if marker == "helm-values" {
            let Some(config) = parsed.get("config") else {
                report
                    .problems
                    .push(format!("{at}: Helm values without `config:`"));
                continue;
            };
            // The chart mounts `templates` as files and adds their glob to the config.
            let mut config = config.clone();
            if let Some(files) = parsed.get("templates").and_then(Value::as_object)
                && !files.is_empty()
            {
                for (file, text) in files {
                    std::fs::write(templates.join(file), text.as_str().unwrap_or("")).unwrap();
                }
                if let Some(map) = config.as_object_mut() {
                    map.insert("templates".into(), json!([]));
                }
            }
            report.configs += 1;
            match check_service_config(config, &file, &secrets, &templates) {
                Ok(mut texts) => outputs.append(&mut texts),
                Err(e) => report.problems.push(format!("{at}: {e}\n{}", b.text)),
            }
        } else if !marker.is_empty() {
            report
                .problems
                .push(format!("{at}: unknown marker {marker:?}"));
        } else if text.contains("webhook_configs") {
            report.alertmanager += 1;
            if let Err(e) = check_alertmanager_config(parsed, &file) {
                report.problems.push(format!("{at}: {e}\n{}", b.text));
            }
        } else {
            report.configs += 1;
            match check_service_config(parsed, &file, &secrets, &templates) {
                Ok(mut texts) => outputs.append(&mut texts),
                Err(e) => report.problems.push(format!("{at}: {e}\n{}", b.text)),
            }
        }
    }
    for b in &blocks {
        if b.marker.as_deref() == Some("rendered") {
            report.rendered += 1;
            let want = b.text.trim_end();
            if !outputs.iter().any(|o| o.contains(want)) {
                report.problems.push(format!(
                    "{name}:{}: this output is not what the page's configurations render:\n{want}",
                    b.line
                ));
            }
        }
    }
    report
}

/// `${VAR}` as the service would see it with VAR set.
fn fill_env(text: &str) -> String {
    let re = regex::Regex::new(r"\$\{([A-Za-z0-9_]+)\}").unwrap();
    re.replace_all(text, "env-$1-value").into_owned()
}

/// Completes a fragment of this service's configuration, writes it and runs `check-config`,
/// then `render` for every example payload. Returns every string the renders produced.
fn check_service_config(
    mut config: Value,
    file: &Path,
    secrets: &Path,
    templates: &Path,
) -> Result<Vec<String>, String> {
    let Some(map) = config.as_object_mut() else {
        return Err("not a mapping of configuration keys".into());
    };
    if !map.contains_key("receivers") {
        let mut names = Vec::new();
        if let Some(route) = map.get("route") {
            route_receivers(route, &mut names);
        }
        if names.is_empty() {
            names.push("default".to_string());
        }
        let receivers: Vec<Value> = names
            .iter()
            .map(|n| json!({"name": n, "console_configs": [{}]}))
            .collect();
        map.insert("receivers".into(), Value::Array(receivers));
    }
    if !map.contains_key("route") {
        let first = map["receivers"][0]["name"].clone();
        map.insert("route".into(), json!({ "receiver": first }));
    }
    if map.contains_key("templates") {
        let glob = templates.join("*.hbs").display().to_string();
        map.insert("templates".into(), json!([glob]));
    }
    point_files_at(&mut config, secrets);
    std::fs::write(file, yaml_serde::to_string(&config).unwrap()).unwrap();

    let (out, ok) = cli::check_config(&[file.to_path_buf()]);
    if !ok {
        return Err(format!("check-config failed:\n{out}"));
    }
    if out.contains("warning") {
        return Err(format!("check-config warns:\n{out}"));
    }
    let rt = cli::load(file).map_err(|e| e.to_string())?;
    let mut texts = Vec::new();
    for payload in PAYLOADS {
        let body = crate::support::example(payload);
        let rendered = cli::render(&rt, body.as_bytes(), None, now())
            .map_err(|e| format!("render of examples/{payload} failed: {e}"))?;
        for r in &rendered {
            for req in &r.requests {
                strings(&req.body, &mut texts);
            }
        }
    }
    Ok(texts)
}

/// Every `receiver:` a route tree names.
fn route_receivers(route: &Value, out: &mut Vec<String>) {
    if let Some(r) = route.get("receiver").and_then(Value::as_str)
        && !out.iter().any(|o| o == r)
    {
        out.push(r.to_string());
    }
    for child in route
        .get("routes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        route_receivers(child, out);
    }
}

/// Points every `*_file` key at an existing file of the same name under `dir`.
fn point_files_at(v: &mut Value, dir: &Path) {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if key.ends_with("_file")
                    && let Some(path) = value.as_str()
                {
                    let name = Path::new(path).file_name().unwrap();
                    let local = dir.join(name);
                    std::fs::write(&local, "doc-secret-0123456789abcdef\n").unwrap();
                    *value = json!(local.display().to_string());
                } else {
                    point_files_at(value, dir);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| point_files_at(i, dir)),
        _ => {}
    }
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|i| strings(i, out)),
        Value::Object(m) => m.values().for_each(|i| strings(i, out)),
        _ => {}
    }
}

/// Completes an Alertmanager fragment (a `route:` to its first receiver) and runs amtool.
fn check_alertmanager_config(mut config: Value, file: &Path) -> Result<(), String> {
    let Some(map) = config.as_object_mut() else {
        return Err("not a mapping".into());
    };
    if !map.contains_key("route") {
        let first = map
            .get("receivers")
            .and_then(|r| r[0].get("name"))
            .cloned()
            .ok_or("an Alertmanager snippet without receivers")?;
        map.insert("route".into(), json!({ "receiver": first }));
    }
    std::fs::write(file, yaml_serde::to_string(&config).unwrap()).unwrap();
    let Some(amtool) = process::binary(AMTOOL) else {
        return Ok(());
    };
    let out = std::process::Command::new(amtool)
        .arg("check-config")
        .arg(file)
        .output()
        .map_err(|e| format!("cannot run amtool: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "amtool check-config failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The Markdown files of one directory, sorted.
fn markdown_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files
}

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
}

/// The pages: the two READMEs, every Markdown file in docs/ and every one in docs/zh-CN/.
fn pages() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md"), root.join("README.zh-CN.md")];
    pages.extend(markdown_in(&docs_dir()));
    pages.extend(markdown_in(&docs_dir().join("zh-CN")));
    pages
}

/// File names of the Markdown pages in one directory.
fn names(dir: &Path) -> Vec<String> {
    markdown_in(dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// What a twin must share with its page: the YAML blocks, by how the checker treats them, and
/// the rendered outputs it compares.
fn block_kinds(markdown: &str) -> Vec<String> {
    blocks(markdown)
        .into_iter()
        .filter(|b| matches!(b.lang.as_str(), "yaml" | "yml") || b.marker.is_some())
        .map(|b| {
            let marker = b.marker.unwrap_or_default();
            if marker.starts_with("skip") {
                format!("{} skip", b.lang)
            } else if marker.is_empty() && b.text.contains("webhook_configs") {
                format!("{} alertmanager", b.lang)
            } else if marker.is_empty() {
                format!("{} config", b.lang)
            } else {
                format!("{} {marker}", b.lang)
            }
        })
        .collect()
}

#[test]
fn every_config_snippet_in_the_docs_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    let (mut configs, mut alertmanager, mut rendered) = (0, 0, 0);
    for (i, page) in pages().iter().enumerate() {
        let name = page
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap()
            .display()
            .to_string();
        let text = std::fs::read_to_string(page).unwrap_or_else(|e| panic!("{name}: {e}"));
        let scratch = dir.path().join(format!("page-{i}"));
        let report = check_page(&name, &text, &scratch);
        eprintln!(
            "{name}: {} configurations, {} Alertmanager snippets, {} rendered outputs, {} skipped",
            report.configs, report.alertmanager, report.rendered, report.skipped
        );
        configs += report.configs;
        alertmanager += report.alertmanager;
        rendered += report.rendered;
        problems.extend(report.problems);
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n\n"));
    // The pages do hold snippets of each kind: the checks above are not vacuous.
    assert!(configs >= 10, "only {configs} configurations found");
    assert!(
        alertmanager >= 3,
        "only {alertmanager} Alertmanager snippets found"
    );
    assert!(rendered >= 2, "only {rendered} rendered outputs found");
}

#[test]
fn the_checker_catches_a_broken_snippet() {
    let page = "\
```yaml
route:
  receiver: oncall
receivers:
  - name: oncall
    wxpusher_configs:
      - app_token_file: /secrets/token
        uids: [ UID_x ]
        colour: red
```

```yaml
dedupe:
  window: often
```

```yaml
receivers:
  - name: wechat
    webhook_configs:
      - url: http://alertmanager-wechat:9097/webhook
        send_resolvd: true
```

<!-- check: rendered -->
```text
something no configuration renders
```

```yaml
not: [ valid
```
";
    let dir = tempfile::tempdir().unwrap();
    let report = check_page("page.md", page, dir.path());
    let all = report.problems.join("\n");
    assert!(all.contains("page.md:1: check-config failed"), "{all}");
    assert!(all.contains("unknown field `colour`"), "{all}");
    assert!(all.contains("page.md:12: check-config failed"), "{all}");
    assert!(all.contains("dedupe.window"), "{all}");
    assert!(all.contains("page.md:26: this output is not"), "{all}");
    assert!(all.contains("page.md:30: not YAML"), "{all}");
    if Path::new(AMTOOL).is_file() {
        assert!(
            all.contains("page.md:17: amtool check-config failed"),
            "{all}"
        );
        assert!(all.contains("send_resolvd"), "{all}");
        assert_eq!(report.problems.len(), 5, "{all}");
    }
}

#[test]
fn fragments_are_completed_and_secret_files_provided() {
    let page = "\
```yaml
auth:
  bearer_token_file: /etc/alertmanager-wechat/secrets/webhook-token
route:
  receiver: oncall
  routes:
    - matchers: [ 'team=\"db\"' ]
      receiver: dba
```

<!-- check: skip a Kubernetes manifest -->
```yaml
apiVersion: v1
kind: Secret
```

<!-- check: template my.text.hbs -->
```handlebars
{{status_text}}: {{alertnames}}
```

```yaml
templates: [ /etc/alertmanager-wechat/templates/*.hbs ]
receivers:
  - name: a
    console_configs: [ { text: '${SOME_VAR} {{> my.text}}' } ]
```

<!-- check: rendered -->
```text
env-SOME_VAR-value 告警: HighCPU
```
";
    let dir = tempfile::tempdir().unwrap();
    let report = check_page("page.md", page, dir.path());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((report.configs, report.skipped, report.rendered), (2, 1, 1));
}

#[test]
fn every_page_has_its_chinese_twin_and_back() {
    let english = names(&docs_dir());
    let chinese = names(&docs_dir().join("zh-CN"));
    let missing: Vec<String> = english
        .iter()
        .filter(|n| !chinese.contains(n))
        .map(|n| format!("docs/{n} has no twin docs/zh-CN/{n}"))
        .chain(
            chinese
                .iter()
                .filter(|n| !english.contains(n))
                .map(|n| format!("docs/zh-CN/{n} has no twin docs/{n}")),
        )
        .collect();
    assert!(missing.is_empty(), "\n{}", missing.join("\n"));
    assert!(english.iter().any(|n| n == "README.md"), "{english:?}");

    let mut problems = Vec::new();
    for name in &english {
        let en = std::fs::read_to_string(docs_dir().join(name)).unwrap();
        let zh = std::fs::read_to_string(docs_dir().join("zh-CN").join(name)).unwrap();
        let twin = format!("zh-CN/{name}");
        if !en.contains(&format!("]({twin})")) {
            problems.push(format!("docs/{name} does not link to its twin ({twin})"));
        }
        if !zh.contains(&format!("](../{name})")) {
            problems.push(format!("docs/{twin} does not link back to ../{name}"));
        }
        let (ke, kz) = (block_kinds(&en), block_kinds(&zh));
        if ke != kz {
            problems.push(format!(
                "docs/{name} and docs/{twin} differ in their checked blocks:\n  {ke:?}\n  {kz:?}"
            ));
        }
    }
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.zh-CN.md"))
            .unwrap();
    for link in ["](docs/", "](./docs/"] {
        for (i, _) in readme.match_indices(link) {
            let rest = &readme[i + link.len()..];
            if !rest.starts_with("zh-CN/") {
                let end = rest.find(')').unwrap_or(rest.len());
                problems.push(format!(
                    "README.zh-CN.md links to the English docs/{}",
                    &rest[..end]
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The Rust version the docs ask for is the `rust-version` of `Cargo.toml`, in both languages.
#[test]
fn the_docs_ask_for_the_rust_version_the_package_needs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("Cargo.toml states rust-version")
        .trim_matches('"');
    for page in [
        "README.md",
        "README.zh-CN.md",
        "docs/operations.md",
        "docs/zh-CN/operations.md",
    ] {
        let text = std::fs::read_to_string(root.join(page)).unwrap();
        assert!(
            text.contains(&format!("Rust {version} ")),
            "{page} does not ask for Rust {version}"
        );
        let stated = text.matches("Rust 1.").count();
        assert_eq!(
            stated,
            text.matches(&format!("Rust {version} ")).count(),
            "{page} names another Rust version"
        );
    }
}
