//! Property tests over everything that reads untrusted or hand-written input: the payload
//! parser, the matcher parser, truncation (and the template helper on top of it) and the
//! config loader. Whatever the input: no panic, and an error is one clear line.

use std::path::Path;

use alertmanager_wechat::config::Config;
use alertmanager_wechat::route::{Matcher, Op};
use alertmanager_wechat::runtime::{Runtime, sample_notification};
use alertmanager_wechat::template::Templates;
use alertmanager_wechat::text::{ELLIPSIS, truncate, upstream_len, upstream_prefix, visible_len};
use alertmanager_wechat::webhook::Notification;
use proptest::prelude::*;
use serde_json::{Value, json};
use unicode_segmentation::UnicodeSegmentation;

/// Text heavy in what breaks naive cutting: CJK, emoji with skin tones, ZWJ families, flags,
/// combining marks, lone regional indicators, CRLF, controls and plain ASCII.
fn tricky_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("告警".to_string()),
        Just("👍🏽".to_string()),
        Just("👨‍👩‍👧‍👦".to_string()),
        Just("🇨🇳".to_string()),
        Just("\u{1F1E6}".to_string()),
        Just("e\u{301}".to_string()),
        Just("\u{301}".to_string()),
        Just("\u{200D}".to_string()),
        Just("\r\n".to_string()),
        Just("\u{0600}".to_string()),
        "[a-z ]{0,5}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

fn graphemes(s: &str) -> Vec<&str> {
    s.graphemes(true).collect()
}

/// An error as answered or printed: one line, not empty, not a novel.
fn assert_clear(msg: &str, max_chars: usize) {
    assert!(!msg.trim().is_empty(), "empty error");
    assert!(!msg.contains('\n'), "error spans lines: {msg:?}");
    assert!(msg.chars().count() <= max_chars, "error too long: {msg:?}");
}

fn valid_alert() -> impl Strategy<Value = Value> {
    (
        prop::bool::ANY,
        prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", tricky_text(), 0..5),
        prop::collection::btree_map("[a-z]{1,8}", tricky_text(), 0..3),
        0i64..4_000_000_000,
    )
        .prop_map(|(firing, labels, annotations, start)| {
            let starts = chrono::DateTime::from_timestamp(start, 0)
                .unwrap()
                .to_rfc3339();
            json!({
                "status": if firing { "firing" } else { "resolved" },
                "labels": labels,
                "annotations": annotations,
                "startsAt": starts,
                "endsAt": if firing { "0001-01-01T00:00:00Z".to_string() } else { starts.clone() },
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": "0123456789abcdef",
            })
        })
}

/// Applies byte edits to a valid document: what a broken sender or an attacker would send.
fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut b = base.to_vec();
    for &(at, kind, byte) in edits {
        if b.is_empty() {
            b.push(byte);
            continue;
        }
        let at = at % b.len();
        match kind % 4 {
            0 => b[at] = byte,
            1 => b.insert(at, byte),
            2 => {
                b.remove(at);
            }
            _ => {
                // Duplicate a slice: repeated keys, nested repeats.
                let end = (at + byte as usize).min(b.len());
                let slice = b[at..end].to_vec();
                b.splice(at..at, slice);
            }
        }
    }
    b
}

fn examples() -> Vec<Vec<u8>> {
    [
        "alertmanager-firing.json",
        "alertmanager-resolved.json",
        "grafana-firing.json",
    ]
    .iter()
    .map(|n| crate::support::example(n).into_bytes())
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn payload_parser_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = Notification::parse(&body) {
            assert_clear(&e.to_string(), 300);
        }
    }

    #[test]
    fn payload_parser_never_panics_on_mutated_payloads(
        which in 0usize..3,
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8),
    ) {
        let body = mutate(&examples()[which], &edits);
        match Notification::parse(&body) {
            Ok(n) => prop_assert!(!n.alerts.is_empty()),
            Err(e) => assert_clear(&e.to_string(), 300),
        }
    }

    #[test]
    fn valid_payloads_parse_and_round_trip(alerts in prop::collection::vec(valid_alert(), 1..6), grafana in prop::bool::ANY) {
        let mut body = json!({
            "receiver": "r", "status": "firing", "alerts": alerts,
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://am:9093", "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0,
        });
        if grafana {
            body["version"] = json!("1");
            body["orgId"] = json!(1);
            body["title"] = json!("[FIRING:1]");
        }
        let n = Notification::parse(body.to_string().as_bytes()).unwrap();
        prop_assert_eq!(n.alerts.len(), body["alerts"].as_array().unwrap().len());
        let again = Notification::parse(&serde_json::to_vec(&n).unwrap()).unwrap();
        prop_assert_eq!(n, again);
    }

    #[test]
    fn matcher_parser_never_panics(input in "\\PC{0,40}") {
        if let Err(e) = Matcher::parse(&input) {
            let msg = e.to_string();
            assert!(msg.starts_with("matcher "), "{msg}");
            assert!(msg.contains(&format!("{input:?}")) || matches!(e, alertmanager_wechat::route::MatcherError::Regex { .. }), "{msg}");
            assert!(!msg.contains('\n'), "{msg:?}");
        }
    }

    #[test]
    fn matcher_parser_never_panics_on_near_matchers(
        name in "[a-zA-Z_\"\\\\ ]{0,6}",
        op in prop::sample::select(vec!["=", "!=", "=~", "!~", "==", "~", "!", ""]),
        value in "[a-z\"\\\\()|*+?\\[\\]{}.^$ 告]{0,12}",
    ) {
        for input in [format!("{name}{op}{value}"), format!("{name}{op}\"{value}\"")] {
            if let Err(e) = Matcher::parse(&input) {
                assert!(e.to_string().starts_with("matcher "), "{e}");
            }
        }
    }

    #[test]
    fn quoted_matchers_round_trip(
        name in "[a-zA-Z_][a-zA-Z0-9_]{0,10}",
        op in prop::sample::select(vec![Op::Eq, Op::NotEq, Op::Re, Op::NotRe]),
        raw in tricky_text(),
    ) {
        let value = match op {
            Op::Re | Op::NotRe => regex::escape(&raw),
            Op::Eq | Op::NotEq => raw.clone(),
        };
        let quoted = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").replace('\t', "\\t");
        let op_str = match op { Op::Eq => "=", Op::NotEq => "!=", Op::Re => "=~", Op::NotRe => "!~" };
        let m = Matcher::parse(&format!("{name} {op_str} \"{quoted}\"")).unwrap();
        prop_assert_eq!(&m.name, &name);
        prop_assert_eq!(m.op, op);
        prop_assert_eq!(&m.value, &value);
        // An escaped regex matches exactly its own text, like `=` does.
        let labels = [(name.clone(), raw.clone())].into_iter().collect();
        prop_assert_eq!(m.matches(&labels), matches!(op, Op::Eq | Op::Re));
    }

    #[test]
    fn truncation_never_exceeds_the_limit_nor_splits_a_grapheme(s in tricky_text(), max in 0usize..30) {
        let t = truncate(&s, max);
        prop_assert!(visible_len(&t) <= max, "{:?} → {:?}", s, t);
        if visible_len(&s) <= max {
            prop_assert_eq!(&t, &s);
        } else if max > 0 {
            let kept = t.strip_suffix(ELLIPSIS).expect("cut text ends with the ellipsis");
            // What is kept is whole graphemes of the original, in order.
            let orig = graphemes(&s);
            prop_assert_eq!(graphemes(kept), orig[..max - 1].to_vec());
        } else {
            prop_assert_eq!(t, "");
        }
    }

    #[test]
    fn upstream_prefix_fits_and_ends_on_a_grapheme(s in tricky_text(), max in 0usize..60) {
        let p = upstream_prefix(&s, max);
        prop_assert!(upstream_len(p) <= max);
        prop_assert!(s.starts_with(p));
        let orig = graphemes(&s);
        let kept = graphemes(p);
        prop_assert_eq!(&orig[..kept.len()], &kept[..]);
        // Greedy: the next grapheme would not have fitted.
        if let Some(next) = orig.get(kept.len()) {
            prop_assert!(upstream_len(p) + upstream_len(next) > max);
        }
    }

    #[test]
    fn truncate_helper_obeys_the_limit(s in tricky_text(), max in 0u64..30) {
        let mut t = Templates::new(chrono_tz::Asia::Shanghai, alertmanager_wechat::config::Locale::En);
        t.add("p", &format!("{{{{truncate text {max}}}}}")).unwrap();
        let out = t.render("p", &json!({ "text": s })).unwrap();
        prop_assert!(visible_len(&out) <= max as usize, "{:?}", out);
    }

    #[test]
    fn arbitrary_templates_compile_or_fail_cleanly_and_never_panic_rendering(src in "[{}#/>a-z. \"=~!@^0-9|]{0,40}") {
        let mut t = Templates::new(chrono_tz::Asia::Shanghai, alertmanager_wechat::config::Locale::ZhCn);
        match t.add("p", &src) {
            Ok(()) => {
                let ctx = t.context(&sample_notification(), chrono::Utc::now());
                if let Err(e) = t.render("p", &ctx) {
                    assert_clear(&e.to_string(), 2000);
                }
            }
            Err(e) => assert_clear_with_place(&e.to_string(), 2000),
        }
    }
}

/// A template syntax error: one clear line, then possibly the template's line (numbered) and a
/// caret under the place.
fn assert_clear_with_place(msg: &str, max_chars: usize) {
    let mut lines = msg.split('\n');
    assert_clear(lines.next().unwrap_or_default(), max_chars);
    let rest: Vec<&str> = lines.collect();
    if rest.is_empty() {
        return;
    }
    assert_eq!(rest.len(), 2, "{msg:?}");
    assert!(rest[0].trim_start().split(" | ").count() >= 2, "{msg:?}");
    assert!(rest[1].ends_with('^') && rest[1].contains(" | "), "{msg:?}");
    assert!(msg.chars().count() <= max_chars, "error too long: {msg:?}");
}

fn yaml_char() -> impl Strategy<Value = char> {
    prop::sample::select(vec![
        ':', '-', '[', '{', '"', '\'', ' ', '#', '$', '*', '&', '!', 'x', '9', '\t',
    ])
}

fn example_config() -> String {
    std::fs::read_to_string(format!("{}/config.example.yml", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Line-level edits to a valid config: deleted, duplicated, re-indented or corrupted lines.
fn mutate_lines(text: &str, edits: &[(usize, u8, char)]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for &(at, kind, c) in edits {
        if lines.is_empty() {
            lines.push(c.to_string());
            continue;
        }
        let at = at % lines.len();
        match kind % 5 {
            0 => {
                lines.remove(at);
            }
            1 => {
                let l = lines[at].clone();
                lines.insert(at, l);
            }
            2 => lines[at] = format!("  {}", lines[at]),
            3 => {
                let mut chars: Vec<char> = lines[at].chars().collect();
                let i = if chars.is_empty() {
                    0
                } else {
                    (c as usize) % chars.len()
                };
                chars.insert(i, c);
                lines[at] = chars.into_iter().collect();
            }
            _ => lines[at] = lines[at].trim_start().to_string(),
        }
    }
    lines.join("\n")
}

proptest! {
    // Building a runtime compiles every template: fewer, slower cases.
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn config_loader_never_panics_on_text(text in "\\PC{0,200}") {
        if let Err(errors) = Config::parse(&text, "prop.yml", Path::new(".")) {
            prop_assert!(!errors.0.is_empty());
            for e in &errors.0 {
                let msg = e.to_string();
                prop_assert!(msg.starts_with("prop.yml: "), "{}", msg);
            }
        }
    }

    #[test]
    fn config_loader_never_panics_on_mutated_configs(
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), yaml_char()), 1..6),
    ) {
        let text = mutate_lines(&example_config(), &edits);
        match Config::parse(&text, "prop.yml", Path::new(".")) {
            Ok(c) => {
                if let Err(errors) = Runtime::build(c) {
                    for e in &errors.0 {
                        prop_assert!(e.to_string().starts_with("prop.yml"), "{}", e);
                    }
                }
            }
            Err(errors) => {
                prop_assert!(!errors.0.is_empty());
                for (i, e) in errors.0.iter().enumerate() {
                    let msg = e.to_string();
                    prop_assert!(msg.starts_with("prop.yml: "), "{}", msg);
                    prop_assert!(msg.len() > "prop.yml: ".len());
                    prop_assert!(!msg.contains('\n'), "{}", msg);
                    prop_assert!(!errors.0[..i].contains(e), "listed twice: {}", msg);
                }
            }
        }
    }

    /// Listing past the first error finds what a direct parse finds: with an unknown key put
    /// first, every path the mutated file is reported at is still reported, after that key.
    #[test]
    fn config_loader_lists_errors_past_an_unknown_key(
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), yaml_char()), 1..6),
    ) {
        let text = mutate_lines(&example_config(), &edits);
        let with_key = format!("zz_unknown_key: 1\n{text}");
        let is_mapping = |t: &str| {
            matches!(yaml_serde::from_str::<yaml_serde::Value>(t), Ok(yaml_serde::Value::Mapping(_)))
        };
        prop_assume!(is_mapping(&text) && is_mapping(&with_key));
        let paths = |t: &str| match Config::parse(t, "prop.yml", Path::new(".")) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.into_iter().map(|e| e.path).collect(),
        };
        let plain = paths(&text);
        let listed = paths(&with_key);
        prop_assert_eq!(listed.first().map(String::as_str), Some("zz_unknown_key"));
        for p in &plain {
            prop_assert!(listed[1..].contains(p), "{} missing from {:?} (alone: {:?})", p, listed, plain);
        }
    }
}

/// The marker planted as a "secret" in generated configurations; no error may contain it.
const MARKER: &str = "MARKER_SECRET_7f3a";
/// The same as a number, for secrets that are all digits.
const NUMERIC_MARKER: i64 = 9_081_726_354;

/// Keys of this service's configuration, secret-bearing ones included, for generated trees.
const CONFIG_KEYS: &[&str] = &[
    "global",
    "auth",
    "admin",
    "basic_auth",
    "username",
    "password",
    "bearer_token",
    "grafana_hmac_secret",
    "web",
    "storage",
    "redis_url",
    "chatops",
    "wxpusher_callback_secret",
    "weixin_gateway_secret",
    "allowed",
    "dedupe",
    "window",
    "route",
    "routes",
    "continue",
    "receivers",
    "wxpusher_configs",
    "app_token",
    "uids",
    "topic_ids",
    "content_type",
    "spts",
    "official_account_configs",
    "app_id",
    "app_secret",
    "kind",
    "to_openids",
    "send_resolved",
    "weixin_gateway_configs",
    "account_id",
    "to_user_ids",
    "console_configs",
    "summary_max_chars",
    "max_alerts",
    "bogus",
];

/// Keys whose value is its own diagnostic (a name, a path, a URL, a matcher): errors about them
/// quote it on purpose, so the generator never plants the marker directly under them.
const QUOTES_ITS_VALUE: &[&str] = &[
    "name",
    "receiver",
    "fallback_receiver",
    "matchers",
    "url",
    "api_url",
    "alertmanager_url",
    "wxpusher_api_url",
    "wechat_api_url",
    "wecom_api_url",
    "templates",
    "timezone",
    "path",
];

/// Where secrets are mistakenly written, in an otherwise valid configuration.
const SECRET_PLACES: &[&[&str]] = &[
    &["auth"],
    &["auth", "basic_auth"],
    &["auth", "admin"],
    &["auth", "bearer_token"],
    &["auth", "admin", "basic_auth"],
    &["chatops"],
    &["chatops", "allowed"],
    &["receivers", "0", "wxpusher_configs"],
    &["receivers", "0", "wxpusher_configs", "0"],
    &["receivers", "0", "wxpusher_configs", "0", "app_token"],
    &["receivers", "0", "wxpusher_configs", "0", "uids"],
    &[
        "receivers",
        "0",
        "weixin_gateway_configs",
        "0",
        "basic_auth",
    ],
    &[
        "receivers",
        "0",
        "weixin_gateway_configs",
        "0",
        "bearer_token",
    ],
    &["receivers", "0", "official_account_configs", "0"],
    &[
        "receivers",
        "0",
        "official_account_configs",
        "0",
        "app_secret",
    ],
    &["receivers", "0", "official_account_configs", "0", "kind"],
    &["storage"],
    &["dedupe", "window"],
    &["global"],
    &["web"],
    &["route"],
    &["route", "continue"],
];

fn planted_config_base() -> Value {
    json!({
        "route": {"receiver": "a"},
        "receivers": [{
            "name": "a",
            "wxpusher_configs": [{"app_token": "AT_ok_token", "uids": ["UID_a"]}],
            "weixin_gateway_configs": [{"url": "http://gw:1", "account_id": "x", "to_user_ids": ["u@im.wechat"]}],
            "official_account_configs": [{"app_id": "wx1", "app_secret": "sec_ok_1", "template_id": "T", "to_openids": ["o"]}]
        }]
    })
}

/// A YAML value tree whose scalars are often the marker, as text or as a number.
fn planted_tree() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        3 => prop_oneof![
            Just(MARKER.to_string()),
            Just(format!("user:{MARKER}")),
            Just(format!("Bearer {MARKER}")),
            Just(format!("\"{MARKER}\\n`x")),
        ]
        .prop_map(Value::String),
        1 => Just(json!(NUMERIC_MARKER)),
        1 => Just(json!(-NUMERIC_MARKER)),
        1 => Just(json!(0.5)),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
        1 => "[a-z0-9 :]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(CONFIG_KEYS), inner), 0..4).prop_map(
                |kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            ),
        ]
    })
}

/// Replaces the marker directly under a key that quotes its value (see [`QUOTES_ITS_VALUE`]).
fn unplant_quoted(v: &mut Value, key: &str) {
    let quoted = QUOTES_ITS_VALUE.contains(&key) || key.ends_with("_file");
    match v {
        Value::String(s) if quoted => *s = "x".into(),
        Value::Number(_) if quoted => *v = json!(1),
        Value::Array(a) => a.iter_mut().for_each(|x| unplant_quoted(x, key)),
        Value::Object(m) => m.iter_mut().for_each(|(k, x)| unplant_quoted(x, k)),
        _ => {}
    }
}

/// Sets `value` at `path` in `doc`, creating maps on the way.
fn put(doc: &mut Value, path: &[&str], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *doc = value;
        return;
    };
    let slot = match (first.parse::<usize>(), &mut *doc) {
        (Ok(i), Value::Array(a)) if i < a.len() => &mut a[i],
        _ => {
            if !doc.is_object() {
                *doc = json!({});
            }
            doc.as_object_mut()
                .map(|m| m.entry(first.to_string()).or_insert(Value::Null))
                .expect("an object")
        }
    };
    put(slot, rest, value);
}

/// Every error `Config::parse` gives for `yaml`, as printed.
fn config_errors(yaml: &str) -> Vec<String> {
    match Config::parse(yaml, "t.yml", Path::new("/nonexistent")) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn assert_no_marker(yaml: &str) {
    for e in config_errors(yaml) {
        assert!(
            !e.contains(MARKER) && !e.contains(&NUMERIC_MARKER.to_string()),
            "an error quotes the planted secret: {e}\n--- config ---\n{yaml}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    /// A secret written in the wrong place, or of the wrong shape, is never quoted in an error.
    #[test]
    fn config_errors_never_quote_a_planted_secret(
        plants in prop::collection::vec((prop::sample::select(SECRET_PLACES), planted_tree()), 1..4),
        root in prop::option::of(planted_tree()),
        block_style in any::<bool>(),
    ) {
        let mut doc = planted_config_base();
        for (place, mut tree) in plants {
            unplant_quoted(&mut tree, place.last().copied().unwrap_or(""));
            put(&mut doc, place, tree);
        }
        if let Some(mut tree) = root {
            unplant_quoted(&mut tree, "");
            if let (Value::Object(d), Value::Object(t)) = (&mut doc, tree) {
                d.extend(t);
            }
        }
        let yaml = if block_style {
            yaml_serde::to_string(&doc).unwrap()
        } else {
            doc.to_string()
        };
        assert_no_marker(&yaml);
    }
}

#[test]
fn the_reported_secret_mistakes_are_named_by_kind_and_place() {
    let cases = [
        (
            format!("auth: {MARKER}\nroute: {{receiver: a}}\nreceivers: [{{name: a}}]\n"),
            "t.yml: auth: invalid type: a string, expected struct AuthConfig at line 1 column 7",
        ),
        (
            format!(
                "auth: {{basic_auth: user:{MARKER}}}\nroute: {{receiver: a}}\nreceivers: [{{name: a}}]\n"
            ),
            "t.yml: auth.basic_auth: invalid type: a string, expected struct BasicAuth",
        ),
        (
            format!(
                "route: {{receiver: a}}\nreceivers: [{{name: a, wxpusher_configs: [{MARKER}]}}]\n"
            ),
            "t.yml: receivers[0].wxpusher_configs[0]: invalid type: a string, expected struct WxPusherConfig",
        ),
        (
            format!("auth: {NUMERIC_MARKER}\nroute: {{receiver: a}}\nreceivers: [{{name: a}}]\n"),
            "t.yml: auth: invalid type: an integer, expected struct AuthConfig",
        ),
        (
            format!(
                "route: {{receiver: a}}\nreceivers: [{{name: a, official_account_configs: [{{app_id: w, app_secret: s3cret, template_id: T, to_openids: [o], kind: {MARKER}}}]}}]\n"
            ),
            "t.yml: receivers[0].official_account_configs[0].kind: unknown variant, expected `template` or `subscribe`",
        ),
    ];
    for (yaml, expected) in cases {
        let errors = config_errors(&yaml);
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{errors:#?}\nwanted {expected}"
        );
        assert_no_marker(&yaml);
    }
}

/// Found by `config_loader_lists_errors_past_an_unknown_key`: a node under the non-specific
/// tag `!` cannot be written out again, and listing past the unknown key used to report a bare
/// emitter error for the whole document instead of the node at fault.
#[test]
fn an_error_under_a_bare_tag_is_listed_past_an_unknown_key() {
    let text = "route: { receiver: a }\nreceivers:\n  - name: a\n    wxpusher_configs:\n     !   topic_ids: [ 23456 ]\n";
    let paths = |t: &str| match Config::parse(t, "prop.yml", Path::new(".")) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.into_iter().map(|e| e.path).collect(),
    };
    assert_eq!(paths(text), ["receivers[0].wxpusher_configs"]);
    assert_eq!(
        paths(&format!("zz_unknown_key: 1\n{text}")),
        ["zz_unknown_key", "receivers[0].wxpusher_configs"]
    );
}
