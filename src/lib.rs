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
//! - [`channels`]: one file per upstream (WxPusher, Official Account, weixin-gateway,
//!   console): requests, responses, upstream limits and error codes.
//! - [`delivery`]: the queue between webhook and workers, retries, failure classification,
//!   rate limits, storm coalescing and fallback receivers.
//! - [`dedupe`]: duplicate suppression, resolved-once, resolved grouping, firing → resolved
//!   pairing; the state it keeps lives in the store.
//! - [`store`]: the durable store (SQLite, or Redis shared by replicas): queued jobs, dead
//!   letters, counters, dedupe state.
//! - [`server`]: the HTTP endpoints and the accept loop.
//! - [`auth`]: webhook and management authentication.
//! - [`metrics`]: Prometheus metric families.
//! - [`secret`]: secrets that never print.
//! - [`chatops`]: replies from WeChat: silence, acknowledge, list; subscribers by QR code.
//! - [`cli`]: the `check-config`, `render`, `send-test`, `deadletters` and `qrcode` commands.

pub mod channels;
pub mod chatops;
pub mod cli;
pub mod config;
pub mod dedupe;
pub mod delivery;
pub mod metrics;
pub mod route;
pub mod runtime;
pub mod secret;
pub mod server;
pub mod store;
pub mod template;
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
use crate::store::{Store, StoreError};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A running service: the shared state and the delivery workers.
pub struct Service {
    pub app: Arc<App>,
    workers: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    /// Probes upstream health (weixin-gateway `/health`) for `integration_up`.
    health: tokio::task::JoinHandle<()>,
}

impl Service {
    /// Builds the runtime from a loaded configuration, opens the store at `storage.path` or
    /// `storage.redis_url` (refusing to start if it cannot) and starts the delivery workers, which resume what a
    /// previous run left pending.
    pub fn start(
        config: config::Config,
        config_path: Option<PathBuf>,
        policy: RetryPolicy,
    ) -> Result<Service, StartError> {
        let mut runtime = Runtime::build(config)?;
        let store = Store::from_config(&runtime.config.storage)?;
        if let Store::Redis(redis) = &store {
            // Several replicas: the rate limits are shared through Redis too.
            runtime.limits = Arc::new(delivery::ratelimit::RateLimits::shared(redis.clone()));
        }
        let metrics = Arc::new(Metrics::new());
        metrics.config_last_reload_successful.set(1);
        metrics
            .config_last_reload_success_timestamp_seconds
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        let runtime = Arc::new(ArcSwap::from_pointee(runtime));
        let queue = Queue::new(store);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let workers = Workers::spawn(
            queue.clone(),
            runtime.clone(),
            metrics.clone(),
            policy,
            stopped,
        );
        let health = tokio::spawn(channels::weixin_gateway::health_loop(
            runtime.clone(),
            metrics.clone(),
            queue.store.clone(),
        ));
        let app = Arc::new(App {
            runtime,
            queue,
            metrics,
            config_path,
            draining: Default::default(),
        });
        Ok(Service {
            app,
            workers,
            stop,
            health,
        })
    }

    /// Serves HTTP until `shutdown`; then drains: readiness answers 503 and webhooks 503
    /// (Alertmanager retries them, elsewhere or later) while the deliveries in flight finish,
    /// for up to `grace`; then stops accepting and gives open requests up to `grace` more.
    /// Everything not yet delivered stays in the store for the next start.
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) -> std::io::Result<()> {
        let Service {
            app,
            workers,
            stop,
            health,
        } = self;
        let draining = app.clone();
        let drained = async move {
            shutdown.await;
            draining
                .draining
                .store(true, std::sync::atomic::Ordering::SeqCst);
            tracing::info!("draining: not ready, waiting for deliveries in flight");
            let _ = stop.send(true);
            if tokio::time::timeout(grace, workers).await.is_err() {
                tracing::warn!(
                    "deliveries still in flight after the grace period; they are retried at the next start"
                );
            }
        };
        // The listener stays open while draining, so probes and scrapes see the state.
        server::run(listener, app.clone(), drained, grace).await?;
        health.abort();
        drop(app);
        Ok(())
    }
}
