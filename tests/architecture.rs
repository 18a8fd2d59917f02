//! The layout is a pipeline, and its dependencies point one way: this test reads every
//! `crate::…` path in `src/` (comments aside) and fails when the library's top-level modules
//! reach each other in a circle, naming one place of each edge in it. It also keeps the
//! delivery engine free of channel names and of the features' modules (their behaviour reaches
//! it as steps), `server/`, `runtime.rs` and `chatops/` free of channel names, and `server`
//! unimported.
//!
//! `.ci/run` runs it on its own (`cargo test --test architecture`) before the test suite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The channels, by their module names: every folder under `src/channels/`. (The
/// `console_configs` channel's module is `stdout`, so that the web console's own word does not
/// hide it.)
fn channels() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(src().join("channels"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

/// The files outside its folder that may name a channel: the registry (one line per channel
/// and operation) and the receiver's list of `*_configs`.
const MAY_NAME_CHANNELS: &[&str] = &["channels/mod.rs", "config/mod.rs"];

/// Central code that walks integrations through the channels' registry (`src/channels/mod.rs`)
/// and names none: a new channel is its folder and a line per registry. Chatops consumes the
/// neutral events of the channels' `inbound.rs` and replies through the registry.
const CHANNEL_BLIND: &[&str] = &["server", "runtime.rs", "chatops"];

/// The features that reach the delivery engine as steps (`src/steps.rs`): `src/delivery/`
/// must import none of them.
const FEATURES: &[&str] = &["dedupe", "chatops", "incident", "steps"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file under `src/` belongs to (`None` for the crate roots).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// Code without its comments (line comments, doc comments); string contents are kept, which is
/// harmless: a `crate::` inside a string is rare and would only make the check stricter.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(n, line)| {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        (!code.trim().is_empty()).then_some((n + 1, code))
    })
}

/// The top-level modules a line names: `crate::a::…`, and each name of `use crate::{a, b::c}`.
fn referenced(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `mycrate::` or `$crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

/// Module → module it references → one place (file:line) where it does.
type Edges = BTreeMap<String, BTreeMap<String, String>>;

fn edges() -> Edges {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut edges = Edges::new();
    for file in &files {
        let Some(from) = module_of(file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let rel = file.strip_prefix(src()).unwrap().display().to_string();
        edges.entry(from.clone()).or_default();
        for (line, code) in code_lines(&text) {
            for to in referenced(code) {
                if to != from && modules.contains(&to) {
                    edges
                        .entry(from.clone())
                        .or_default()
                        .entry(to)
                        .or_insert_with(|| format!("src/{rel}:{line}"));
                }
            }
        }
    }
    edges
}

/// Strongly connected components with more than one module (Tarjan's algorithm).
fn circles(edges: &Edges) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a Edges,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let targets: Vec<&'a str> = s
            .edges
            .get(v)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for w in targets {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn top_level_modules_form_no_circle() {
    let edges = edges();
    let found = circles(&edges);
    let mut report = String::new();
    for component in &found {
        report += &format!("circle among {}:\n", component.join(", "));
        for from in component {
            for (to, at) in &edges[from] {
                if component.contains(to) {
                    report += &format!("  {from} -> {to}  ({at})\n");
                }
            }
        }
    }
    assert!(found.is_empty(), "{report}");
}

#[test]
fn nothing_imports_the_server() {
    let edges = edges();
    let importers: Vec<String> = edges
        .iter()
        .filter_map(|(from, to)| to.get("server").map(|at| format!("{from} ({at})")))
        .collect();
    assert!(importers.is_empty(), "server is imported by {importers:?}");
}

#[test]
fn the_server_does_not_call_the_command_line() {
    // What both offer (render, send-test, dead letters) lives below both.
    let edges = edges();
    let at = edges.get("server").and_then(|to| to.get("cli"));
    assert!(at.is_none(), "server uses cli at {at:?}");
}

#[test]
fn the_delivery_engine_names_no_channel() {
    let mut files = Vec::new();
    rust_files(&src().join("delivery"), &mut files);
    assert!(!files.is_empty());
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, code) in code_lines(&text) {
            for name in &channels() {
                if code.contains(name.as_str()) {
                    found.push(format!("{}:{line}: {name}", file.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

/// Code lines of a file before its test module, each lowercased without `_`, so that a type
/// name (`WxPusher`, `WecomApp`) counts as naming its channel.
fn names_in(text: &str) -> Vec<(usize, String)> {
    let end = text.find("#[cfg(test)]\nmod ").unwrap_or(text.len());
    code_lines(&text[..end])
        .map(|(n, code)| (n, code.to_lowercase().replace('_', "")))
        .collect()
}

#[test]
fn central_code_names_no_channel() {
    let mut files = Vec::new();
    for place in CHANNEL_BLIND {
        let p = src().join(place);
        if p.is_dir() {
            rust_files(&p, &mut files);
        } else {
            files.push(p);
        }
    }
    assert!(files.len() > CHANNEL_BLIND.len());
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, code) in names_in(&text) {
            for name in &channels() {
                if code.contains(&name.replace('_', "")) {
                    found.push(format!("{}:{line}: {name}", file.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

/// Whether `file` is a test module of its own (`#[cfg(test)] mod tests;` in its parent).
fn is_test_module(file: &Path) -> bool {
    let Some(stem) = file.file_stem().and_then(|s| s.to_str()) else {
        return false;
    };
    let dir = file.parent().unwrap();
    let parents = [
        dir.join("mod.rs"),
        dir.join("lib.rs"),
        dir.with_extension("rs"),
    ];
    let declared = format!("#[cfg(test)]\nmod {stem};");
    parents
        .iter()
        .any(|p| p != file && std::fs::read_to_string(p).is_ok_and(|t| t.contains(&declared)))
}

/// Channel → the files outside its folder (relative to `src/`) whose code names it, comments
/// and test modules left out.
fn naming_files() -> BTreeMap<String, BTreeSet<String>> {
    let channels = channels();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let mut out: BTreeMap<String, BTreeSet<String>> = channels
        .iter()
        .map(|c| (c.clone(), BTreeSet::new()))
        .collect();
    for file in files {
        if is_test_module(&file) {
            continue;
        }
        let rel = file.strip_prefix(src()).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let lines = names_in(&text);
        for channel in &channels {
            if rel.starts_with(Path::new("channels").join(channel)) {
                continue;
            }
            let word = channel.replace('_', "");
            if lines.iter().any(|(_, code)| code.contains(&word)) {
                let rel = rel.to_str().unwrap().replace('\\', "/");
                out.get_mut(channel).unwrap().insert(rel);
            }
        }
    }
    out
}

#[test]
fn each_channel_is_named_outside_its_folder_only_by_the_registries() {
    let found = naming_files();
    let mut report = String::new();
    for (channel, files) in &found {
        for f in files {
            if !MAY_NAME_CHANNELS.contains(&f.as_str()) {
                report += &format!("src/{f} names the channel {channel}\n");
            }
        }
    }
    let table: Vec<String> = found
        .iter()
        .map(|(c, f)| format!("{c} {}: {f:?}", f.len()))
        .collect();
    assert!(
        report.is_empty(),
        "{report}\nper channel:\n{}",
        table.join("\n")
    );
}

#[test]
fn every_channel_folder_is_counted() {
    let channels = channels();
    for c in [
        "wxpusher",
        "official_account",
        "weixin_gateway",
        "wecom_robot",
        "wecom_app",
        "stdout",
        "voice",
    ] {
        assert!(
            channels.iter().any(|x| x == c),
            "{c} not found among {channels:?}"
        );
    }
    assert!(is_test_module(&src().join("channels/tests.rs")));
    assert!(!is_test_module(&src().join("channels/state.rs")));
}

/// A change of what an identity hashes re-sends every pending job after an upgrade: each
/// channel pins its identity's value with a test in its folder.
#[test]
fn every_channel_pins_its_identity() {
    let mut missing = Vec::new();
    for channel in channels() {
        let mut files = Vec::new();
        rust_files(&src().join("channels").join(&channel), &mut files);
        let pinned = files.iter().any(|f| {
            std::fs::read_to_string(f).is_ok_and(|t| t.contains("fn identity_is_pinned()"))
        });
        if !pinned {
            missing.push(channel);
        }
    }
    assert!(
        missing.is_empty(),
        "no identity_is_pinned test in {missing:?}"
    );
}

#[test]
fn the_channel_reader_sees_type_names_and_skips_tests() {
    let text = "use crate::channels::Kind::WecomApp;\nlet x = 1;\n#[cfg(test)]\nmod tests {\n    wxpusher\n}\n";
    let names = names_in(text);
    assert_eq!(names.len(), 2);
    assert!(names[0].1.contains("wecomapp"));
}

#[test]
fn the_delivery_engine_imports_no_feature() {
    let edges = edges();
    let found: Vec<String> = FEATURES
        .iter()
        .filter_map(|f| {
            edges
                .get("delivery")?
                .get(*f)
                .map(|at| format!("{f} ({at})"))
        })
        .collect();
    assert!(found.is_empty(), "src/delivery/ imports {found:?}");
}

#[test]
fn the_reader_finds_references() {
    assert_eq!(referenced("use crate::store::{Job, Store};"), ["store"]);
    assert_eq!(
        referenced("use crate::{channels::Kind, metrics};"),
        ["channels", "metrics"]
    );
    assert_eq!(referenced("let x = $crate::a::b;"), Vec::<String>::new());
    assert_eq!(
        referenced("crate::dedupe::annotate(crate::store::x)"),
        ["dedupe", "store"]
    );
    let mut e = Edges::new();
    e.entry("a".into())
        .or_default()
        .insert("b".into(), "x".into());
    e.entry("b".into())
        .or_default()
        .insert("a".into(), "y".into());
    e.entry("c".into())
        .or_default()
        .insert("a".into(), "z".into());
    assert_eq!(circles(&e), vec![vec!["a".to_string(), "b".to_string()]]);
}
