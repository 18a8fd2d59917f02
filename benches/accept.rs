//! Accepted notifications per second with the durable store on: a 5-alert Alertmanager
//! payload posted by 64 concurrent clients to the real server, every 200 a committed job.
//! Run with `cargo bench --bench accept`; prints the figure. With `AMW_BENCH_REDIS_URL` set, the
//! shared Redis store is measured instead of SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use alertmanager_wechat::Service;
use alertmanager_wechat::config::Config;
use alertmanager_wechat::delivery::RetryPolicy;

const REQUESTS: usize = 20_000;
const CLIENTS: usize = 64;

fn payload() -> String {
    let alerts: Vec<String> = (0..5)
        .map(|i| {
            format!(
                r#"{{"status":"firing","labels":{{"alertname":"HighCPU","instance":"node-{i}:9100","severity":"critical"}},"annotations":{{"summary":"CPU over 90%"}},"startsAt":"2026-11-25T08:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph","fingerprint":"{i:016x}"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"receiver":"wechat","status":"firing","alerts":[{}],"groupLabels":{{"alertname":"HighCPU"}},"commonLabels":{{"alertname":"HighCPU"}},"commonAnnotations":{{}},"externalURL":"http://alertmanager:9093","version":"4","groupKey":"{{}}:{{alertname=\"HighCPU\"}}","truncatedAlerts":0}}"#,
        alerts.join(",")
    )
}

fn main() {
    // `cargo test --all-targets` runs bench binaries too, without `--bench`: nothing to do.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        // Deliveries go to a closed port at a low rate: the bench measures acceptance. The
        // same payload is posted every time: duplicate suppression is off so that each one is
        // stored (the per-alert dedupe state is still written).
        // AMW_BENCH_REDIS_URL=redis://127.0.0.1:6379/0 measures the shared Redis store instead.
        let redis = std::env::var("AMW_BENCH_REDIS_URL")
            .map(|u| format!(", redis_url: {u:?}"))
            .unwrap_or_default();
        let yaml = format!(
            "storage: {{ path: {:?}, queue_capacity: 1000000{redis} }}\ndedupe: {{ window: 0s }}\nroute: {{ receiver: r }}\nreceivers:\n  - name: r\n    wxpusher_configs:\n      - {{ app_token: AT_bench, uids: [UID_x], api_url: 'http://127.0.0.1:9', rate_limit: {{ rate: 1 }}, coalesce_after: 1000h }}\n",
            dir.path().join("data")
        );
        let path = dir.path().join("config.yml");
        std::fs::write(&path, yaml).expect("write config");
        let config = Config::load(&path).expect("config");
        let service = Service::start(config, None, RetryPolicy::default()).expect("start");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/webhook", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(service.run(
            listener,
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(1),
        ));
        let body = payload();
        let client = reqwest::Client::new();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let mut ok = 0usize;
                for _ in 0..REQUESTS / CLIENTS {
                    if let Ok(r) = client.post(&url).body(body.clone()).send().await
                        && r.status() == 200
                    {
                        ok += 1;
                    }
                }
                ok
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += t.await.unwrap_or(0);
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "accepted {ok} of {} notifications (5 alerts each) in {secs:.2}s: {:.0} notifications/s with the durable store",
            REQUESTS / CLIENTS * CLIENTS,
            ok as f64 / secs
        );
        let _ = stop.send(());
        let _ = server.await;
    });
}
