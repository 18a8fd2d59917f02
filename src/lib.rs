//! alertmanager-wechat: receives Prometheus Alertmanager and Grafana webhooks and delivers
//! them to WeChat through WxPusher, a WeChat Official Account or weixin-gateway.
//!
//! # Layout
//! - [`config`]: the YAML file, strict loading and validation with errors that name the path.
//! - [`runtime`]: a valid config turned into compiled templates, routes and integrations.
//! - [`webhook`]: Alertmanager and Grafana payloads → one [`webhook::Notification`].
//! - [`route`]: Alertmanager matchers and the route tree.
//! - [`template`]: handlebars templates, the context and helpers.
//! - [`text`]: measuring and cutting text by user-visible characters.
//! - [`channels`]: one file per upstream (WxPusher, Official Account, console): requests,
//!   responses, upstream limits and error codes.
//! - [`delivery`]: the queue between webhook and workers, retries, failure classification.
//! - [`server`]: the HTTP endpoints and the accept loop.
//! - [`auth`]: webhook and management authentication.
//! - [`metrics`]: Prometheus metric families.
//! - [`secret`]: secrets that never print.
//! - [`cli`]: the `check-config`, `render` and `send-test` commands.

pub mod auth;
pub mod channels;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod metrics;
pub mod route;
pub mod runtime;
pub mod secret;
pub mod server;
pub mod template;
pub mod text;
pub mod webhook;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::ConfigErrors;
use crate::delivery::{Queue, RetryPolicy, Workers};
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::server::App;

/// A running service: the shared state and the delivery workers.
pub struct Service {
    pub app: Arc<App>,
    workers: tokio::task::JoinHandle<()>,
}

impl Service {
    /// Builds the runtime from a loaded configuration and starts the delivery workers.
    pub fn start(
        config: config::Config,
        config_path: Option<PathBuf>,
        policy: RetryPolicy,
    ) -> Result<Service, ConfigErrors> {
        let runtime = Runtime::build(config)?;
        let capacity = runtime.config.storage.queue_capacity;
        let metrics = Arc::new(Metrics::new());
        metrics.config_last_reload_successful.set(1);
        metrics
            .config_last_reload_success_timestamp_seconds
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        let runtime = Arc::new(ArcSwap::from_pointee(runtime));
        let (queue, rx) = Queue::new(capacity);
        let workers = Workers::spawn(rx, runtime.clone(), metrics.clone(), policy, 16);
        let app = Arc::new(App {
            runtime,
            queue,
            metrics,
            config_path,
            draining: Default::default(),
        });
        Ok(Service { app, workers })
    }

    /// Serves HTTP until `shutdown`, then lets queued deliveries finish for up to `grace`.
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) -> std::io::Result<()> {
        server::run(listener, self.app.clone(), shutdown, grace).await?;
        // Closing the queue lets the workers drain what is in it and stop.
        let Service { app, workers } = self;
        drop(app);
        if tokio::time::timeout(grace, workers).await.is_err() {
            tracing::warn!("deliveries still pending after the grace period");
        }
        Ok(())
    }
}
