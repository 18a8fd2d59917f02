//! Test support: mock upstreams that record every request, and the real server on port 0.
#![allow(dead_code)]

pub mod official_account;
pub mod oncall;
pub mod process;
pub mod redis;
pub mod sentinel;
pub mod stored;
pub mod voice;
pub mod wecom;
pub mod weixin_gateway;
pub mod wxpusher;

use std::sync::Arc;
use std::time::Duration;

use alertmanager_wechat::Service;
use alertmanager_wechat::config::Config;
use alertmanager_wechat::delivery::RetryPolicy;
use alertmanager_wechat::server::App;
use tokio::sync::oneshot;

/// The real service, serving on an ephemeral loopback port.
pub struct TestServer {
    pub url: String,
    pub app: Arc<App>,
    /// Holds the config file (and store) for as long as the server runs.
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Retries fast enough for tests.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        concurrency: 16,
    }
}

impl TestServer {
    pub async fn start(config_yaml: &str) -> TestServer {
        Self::start_with(config_yaml, fast_retries()).await
    }

    pub async fn start_with(config_yaml: &str, policy: RetryPolicy) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yml");
        let yaml = config_yaml.replace("$DATA", &dir.path().join("data").display().to_string());
        std::fs::write(&path, &yaml).unwrap();
        let mut config = Config::load(&path).unwrap_or_else(|e| panic!("test config invalid: {e}"));
        if !yaml.contains("storage:") {
            // Each server its own store, in its temporary directory.
            config.storage.path = dir.path().join("data");
        }
        if !yaml.contains("dedupe:") {
            // Tests about something else post the same example payloads again and again and
            // expect resolved messages at once: they run without duplicate suppression and
            // resolved grouping. Those are under test in `dedupe.rs`, which configures them.
            config.dedupe.window = Duration::ZERO;
            config.dedupe.resolved_group_wait = Duration::ZERO;
        }
        let service = Service::start(config, Some(path), policy).unwrap_or_else(|e| panic!("{e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = service.app.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = service
                .run(
                    listener,
                    async {
                        let _ = stopped.await;
                    },
                    Duration::from_secs(5),
                )
                .await;
        });
        TestServer {
            url,
            app,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("{}{path}", self.url)).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Stops serving and waits for queued deliveries to finish.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// An example payload from `examples/`.
pub fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The value of one sample in a Prometheus text exposition, or 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A config with one receiver `oncall` sending to `UID_a` through the mock WxPusher; `extra`
/// is inserted as top-level YAML (e.g. `auth: {...}`).
pub fn one_receiver(mock: &wxpusher::MockWxPusher, extra: &str) -> String {
    format!(
        r#"
global: {{ wxpusher_api_url: "{}" }}
{extra}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs: [{{ app_token: AT_test_token, uids: [UID_a] }}]
"#,
        mock.url
    )
}
