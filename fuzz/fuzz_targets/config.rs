//! Fuzzes the config loader for one property: no error quotes a secret. The input drives a
//! YAML tree over the configuration's own keys (secret-bearing ones included) whose scalars are
//! often a marker "secret"; whatever the tree, no error `Config::parse` gives contains the
//! marker. Keys whose value is its own diagnostic (names, paths, URLs, matchers) never get it
//! directly: their errors quote them on purpose.
#![no_main]

use std::path::Path;

use alertmanager_wechat::config::Config;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

const MARKER: &str = "MARKER_SECRET_7f3a";
const NUMERIC_MARKER: i64 = 9_081_726_354;

const KEYS: &[&str] = &[
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
    "name",
    "receiver",
    "url",
];

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

/// Reads the fuzz input a byte at a time; zeros once it is used up.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
}

fn tree(b: &mut Bytes<'_>, key: &str, depth: u8) -> Value {
    let quoted = QUOTES_ITS_VALUE.contains(&key) || key.ends_with("_file");
    let pick = b.next();
    let scalar = |pick: u8| -> Value {
        match pick % 9 {
            0 if !quoted => json!(MARKER),
            1 if !quoted => json!(format!("user:{MARKER}")),
            2 if !quoted => json!(format!("\"{MARKER}`\n")),
            3 if !quoted => json!(NUMERIC_MARKER),
            4 => json!(true),
            5 => Value::Null,
            6 => json!(0.5),
            7 => json!(""),
            _ => json!("x"),
        }
    };
    if depth == 0 || pick < 128 {
        return scalar(pick);
    }
    let len = b.next() % 4;
    if pick % 2 == 0 {
        Value::Array((0..len).map(|_| tree(b, key, depth - 1)).collect())
    } else {
        let mut m = Map::new();
        for _ in 0..len {
            let k = KEYS[usize::from(b.next()) % KEYS.len()];
            let v = tree(b, k, depth - 1);
            m.insert(k.to_string(), v);
        }
        Value::Object(m)
    }
}

/// An otherwise valid configuration with a generated tree at a place secrets are written.
fn document(b: &mut Bytes<'_>) -> Value {
    let mut doc = json!({
        "route": {"receiver": "a"},
        "receivers": [{
            "name": "a",
            "wxpusher_configs": [{"app_token": "AT_ok_token", "uids": ["UID_a"]}],
            "weixin_gateway_configs": [{"url": "http://gw:1", "account_id": "x", "to_user_ids": ["u@im.wechat"]}],
            "official_account_configs": [{"app_id": "wx1", "app_secret": "sec_ok_1", "template_id": "T", "to_openids": ["o"]}]
        }]
    });
    for _ in 0..(b.next() % 4 + 1) {
        let place = b.next();
        let key = KEYS[usize::from(b.next()) % KEYS.len()];
        let value = tree(b, key, 4);
        let slot = match place % 5 {
            0 => doc.as_object_mut(),
            1 => doc.pointer_mut("/receivers/0").and_then(Value::as_object_mut),
            2 => doc
                .pointer_mut("/receivers/0/wxpusher_configs/0")
                .and_then(Value::as_object_mut),
            3 => doc
                .pointer_mut("/receivers/0/weixin_gateway_configs/0")
                .and_then(Value::as_object_mut),
            _ => doc
                .pointer_mut("/receivers/0/official_account_configs/0")
                .and_then(Value::as_object_mut),
        };
        if let Some(m) = slot {
            m.insert(key.to_string(), value);
        }
    }
    doc
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let block_style = b.next() % 2 == 0;
    let doc = document(&mut b);
    let yaml = if block_style {
        match yaml_serde::to_string(&doc) {
            Ok(y) => y,
            Err(_) => return,
        }
    } else {
        doc.to_string()
    };
    if let Err(errors) = Config::parse(&yaml, "fuzz.yml", Path::new("/nonexistent")) {
        for e in &errors.0 {
            let text = e.to_string();
            assert!(
                !text.contains(MARKER) && !text.contains(&NUMERIC_MARKER.to_string()),
                "an error quotes the planted secret: {text}\n--- config ---\n{yaml}"
            );
        }
    }
});
