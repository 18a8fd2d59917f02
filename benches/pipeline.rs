//! What the webhook path costs per request before anything leaves the process: parse the
//! payload, route it, and render the WxPusher request, for 1, 5 and 100 alerts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;

use alertmanager_wechat::config::Config;
use alertmanager_wechat::runtime::Runtime;
use alertmanager_wechat::webhook::Notification;
use chrono::Utc;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

const CONFIG: &str = r#"
global: { wxpusher_api_url: "http://127.0.0.1:1", timezone: Asia/Shanghai }
route:
  receiver: oncall
  routes:
    - matchers: [ 'severity="critical"' ]
      receiver: managers
      continue: true
    - matchers: [ 'team=~"db|storage"', 'env!="dev"' ]
      receiver: dba
receivers:
  - name: oncall
    wxpusher_configs: [ { app_token: AT_bench, uids: [UID_a, UID_b], topic_ids: [42] } ]
  - name: managers
    wxpusher_configs: [ { app_token: AT_bench, uids: [UID_m], content_type: html } ]
  - name: dba
    wxpusher_configs: [ { app_token: AT_bench, uids: [UID_d], content_type: text } ]
"#;

/// An Alertmanager webhook body with `n` alerts, half critical, spread over teams.
pub fn payload(n: usize) -> Vec<u8> {
    let alerts: Vec<Value> = (0..n)
        .map(|i| {
            let team = ["db", "storage", "web"][i % 3];
            json!({
                "status": if i % 5 == 4 { "resolved" } else { "firing" },
                "labels": {
                    "alertname": "HighLatency",
                    "severity": if i % 2 == 0 { "critical" } else { "warning" },
                    "instance": format!("node-{i}:9100"),
                    "job": "api",
                    "team": team,
                    "env": "prod",
                },
                "annotations": {
                    "summary": "p99 latency above 500ms",
                    "description": format!("p99 on node-{i} is 730ms over the last 5 minutes"),
                },
                "startsAt": "2026-11-25T08:00:00Z",
                "endsAt": if i % 5 == 4 { "2026-11-25T08:30:00Z" } else { "0001-01-01T00:00:00Z" },
                "generatorURL": "http://prometheus:9090/graph?g0.expr=latency_p99+%3E+0.5",
                "fingerprint": format!("{i:016x}"),
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"HighLatency\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "wechat",
        "groupLabels": {"alertname": "HighLatency"},
        "commonLabels": {"alertname": "HighLatency", "job": "api", "env": "prod"},
        "commonAnnotations": {"summary": "p99 latency above 500ms"},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }))
    .expect("serializing a payload")
}

/// Parse → route → filter → render, as the webhook handler and a worker do it; returns how
/// many upstream requests it would send.
fn pipeline(rt: &Runtime, body: &[u8]) -> usize {
    let n = Notification::parse(body).expect("valid payload");
    let env = rt.env(Utc::now());
    let mut requests = 0;
    for routed in rt.route(n, None).expect("routed") {
        let notification = std::sync::Arc::new(routed.notification);
        for integration in rt.receivers.get(&routed.receiver).into_iter().flatten() {
            if let Some(n) = integration.filter(&notification) {
                requests += integration.prepare(&env, &n).expect("renders").len();
            }
        }
    }
    requests
}

fn bench(c: &mut Criterion) {
    alertmanager_wechat::runtime::install_tls_provider();
    let config = Config::parse(CONFIG, "bench.yml", Path::new(".")).expect("valid config");
    let rt = Runtime::build(config).expect("runtime");
    let mut group = c.benchmark_group("parse_route_render");
    for n in [1, 5, 100] {
        let body = payload(n);
        assert!(pipeline(&rt, &body) >= 1);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &body, |b, body| {
            b.iter(|| pipeline(&rt, black_box(body)))
        });
    }
    group.finish();
    // What the accept path does to a webhook before it is stored: parse and validate, then
    // encode the notification the store keeps.
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/alertmanager-firing-5.json"
    ))
    .expect("the example payload");
    c.bench_function("parse_encode/alertmanager-firing-5", |b| {
        b.iter(|| {
            let n = Notification::parse(black_box(&body)).expect("valid payload");
            serde_json::to_vec(&n).expect("encodes").len()
        })
    });
    c.bench_function("received_encode/alertmanager-firing-5", |b| {
        b.iter(|| {
            alertmanager_wechat::webhook::Received::parse(black_box(&body))
                .expect("valid payload")
                .json
                .len()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
