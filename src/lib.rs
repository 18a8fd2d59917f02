//! alertmanager-wechat: receives Prometheus Alertmanager and Grafana webhooks and delivers
//! them to WeChat through WxPusher, a WeChat Official Account, weixin-gateway or WeCom.
//!
//! # Layout
//! The modules follow a notification's path, and each uses only the ones listed before it
//! (checked by `tests/architecture.rs`):
//! - [`secret`], [`text`], [`metrics`]: secrets that never print; measuring and cutting text
//!   by user-visible characters; the Prometheus metric families.
//! - [`webhook`] (accept): Alertmanager and Grafana payloads → one [`webhook::Notification`];
//!   types and parsing, no I/O.
//! - [`template`] (render): handlebars templates, the context, helpers, the locale.
//! - [`route`]: Alertmanager matchers and the route tree → receivers.
//! - [`store`] (store): the durable store, one interface with a folder per backend
//!   (`store/sqlite/`, `store/redis/`) and typed records: jobs bound to an
//!   [`store::IntegrationId`] with what they already did ([`store::Progress`]), dead letters,
//!   counters, dedupe and chatops state ([`store::chatops`]), and the delivery history
//!   ([`store::history`]), on-call schedule overrides ([`store::oncall`]), hourly delivery counters for the charts
//!   ([`store::stats`]); each record's
//!   module holds its types and the dispatch, each backend's folder how it keeps them.
//! - [`oncall`]: Alertmanager's `time_intervals`, schedules and their overrides: who is on
//!   call at an instant, until when, and who is next; no I/O.
//! - [`channels`] (send): one folder per upstream (`wxpusher/`, `official_account/`,
//!   `weixin_gateway/`, `wecom_robot/`, `wecom_app/`, and `stdout/` for `console_configs`),
//!   each owning its config entry and its checks, the integration built from it, its identity,
//!   its console preview, its shipped templates (`templates.rs`, handed to the template engine
//!   by the registry), the callbacks it receives (`inbound.rs`, into the neutral events of
//!   `channels/inbound.rs`), its requests, limits, error codes and client, over one HTTP helper
//!   (`channels/http.rs`); `channels/mod.rs` is the registry (one `match` per operation) and
//!   `channels/check.rs` the contract with the loader and runtime, which walk a receiver's
//!   integrations once;
//!   the channel contract ([`channels::Integration`], [`channels::error`] with what a failure
//!   says happens next), per-integration options, rate limits and the long-lived upstream
//!   state ([`channels::state`]).
//! - [`dedupe`]: duplicate suppression, resolved-once, resolved grouping, firing → resolved
//!   pairing; the state it keeps lives in the store.
//! - [`config`]: the loader: strict YAML, `${VAR}`, `*_file` secrets, every error with its
//!   YAML path; never touches the store or the network.
//! - [`runtime`]: a valid config compiled into templates, routes and integrations, immutable
//!   and swapped whole on reload; where a stored delivery's identity is bound now.
//! - [`delivery`] (fan-out → dispatch → outcome): one fan-out function, the workers, the retry
//!   schedule, storm digests, upstream health, the history of each outcome
//!   ([`delivery::history`]); it names no channel and no feature, and runs the steps it is
//!   handed at start-up.
//! - [`incident`]: on-call incidents: a group on a route with an escalation policy, paged
//!   step by step through the durable queue (timers are stored jobs) until acknowledged;
//!   the acts (acknowledge, escalate, resolve) every entry point calls, and one-tap links.
//! - [`chatops`]: replies from WeChat: silence, acknowledge, list; subscribers by QR code;
//!   it consumes the channels' neutral inbound events and names no channel.
//! - [`server`]: the HTTP endpoints, authentication, the accept loop and the limits on the way
//!   in (`server::limits`: silent and idle connections, body deadline, in-flight body budget);
//!   the web console (`server/console/`: overview, pages, words in both languages, SVG
//!   charts; assets in `server/assets/`) and its JSON API
//!   (`server/api.rs`);
//!   nothing imports it.
//! - [`cli`]: the `check-config`, `render`, `send-test`, `deadletters` and `qrcode` commands.
//! - `steps` (private): the steps handed to the delivery engine: dedupe's (admission of
//!   re-fanned-out deliveries, release of held resolved jobs, pairing) and chatops'.

pub mod channels;
pub mod chatops;
pub mod cli;
pub mod config;
pub mod dedupe;
pub mod delivery;
pub mod incident;
pub mod metrics;
pub mod oncall;
pub mod route;
pub mod runtime;
pub mod secret;
pub mod server;
mod steps;
pub mod store;
pub mod template;
pub mod text;
pub mod webhook;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::channels::state::Upstreams;
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
    /// Probes upstream health for `integration_up` and runs the channels' upkeep.
    health: tokio::task::JoinHandle<()>,
    /// Routes the webhooks appended under load ([`server::route_appended`]).
    router: tokio::task::JoinHandle<()>,
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
        let store = Store::from_config(&config.storage)?;
        let upstreams = match &store {
            // Several replicas: the rate limits are shared through Redis too.
            Store::Redis(redis) => Upstreams::shared(redis.clone()),
            Store::Sqlite(_) => Upstreams::local(),
        };
        let runtime = Runtime::build_with(config, upstreams.clone())?;
        let mut metrics = Metrics::new();
        crate::channels::register_metrics(&mut metrics);
        if let Store::Redis(redis) = &store {
            let (failovers, wait_timeouts) = redis.counters();
            metrics.register_redis(failovers, wait_timeouts);
        }
        let metrics = Arc::new(metrics);
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
            steps::all(metrics.clone(), runtime.clone()),
            stopped,
        );
        let health = tokio::spawn({
            let (runtime, metrics, store) = (runtime.clone(), metrics.clone(), queue.store.clone());
            async move {
                tokio::join!(
                    delivery::health::health_loop(runtime.clone(), metrics.clone()),
                    upkeep_loop(runtime, metrics, store),
                );
            }
        });
        let app = Arc::new(App {
            runtime,
            queue,
            metrics,
            config_path,
            draining: Default::default(),
            reach: Default::default(),
            inbox: Default::default(),
        });
        let router = tokio::spawn(server::route_appended(app.clone()));
        // The callbacks' keys from the configuration in force (again on every reload), and
        // the engine as the sink of their events.
        app.reach
            .set_keys(incident::reach::callback_keys(&app.runtime.load()));
        app.reach.connect(Arc::new(incident::reach::Sink::new(
            app.queue.store.clone(),
            app.runtime.clone(),
            app.metrics.clone(),
        )));
        Ok(Service {
            app,
            workers,
            stop,
            health,
            router,
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
            router,
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
        router.abort();
        drop(app);
        Ok(())
    }
}

/// Runs the channels' periodic upkeep ([`channels::upkeep`]) forever, as often as it asks;
/// reads the runtime in force each round, so reloads apply.
async fn upkeep_loop(runtime: runtime::Shared, metrics: Arc<Metrics>, store: Store) {
    loop {
        let rt = runtime.load_full();
        let interval = channels::upkeep(&rt.receivers, &store, &metrics).await;
        drop(rt);
        tokio::time::sleep(interval).await;
    }
}
