//! The HTTP server: the accept loop, the endpoints and graceful shutdown.
//!
//! The webhook handler only validates, routes and enqueues; it never waits on an upstream.
//! Its answers follow what Alertmanager and Grafana do with them: 2xx done, 4xx given up
//! (the payload or the request is wrong and will stay wrong), 5xx retried.

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod accept;
pub mod api;
pub mod auth;
pub mod console;
mod incidents;
pub mod limits;
mod oncall;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;
use tracing::{Instrument, debug, info, warn};

use crate::chatops::callback::Callbacks;
use crate::config::{Config, ConfigErrors};
use crate::delivery::Queue;
use crate::metrics::{Metrics, WebhookLabels};
use crate::runtime::{Runtime, Shared};
use crate::webhook::Source;

/// Everything the endpoints share.
pub struct App {
    pub runtime: Shared,
    pub queue: Queue,
    pub metrics: Arc<Metrics>,
    /// Where the configuration came from; `None` for the built-in default.
    pub config_path: Option<PathBuf>,
    /// Set when shutting down: readiness fails so load balancers stop sending.
    pub draining: AtomicBool,
    /// The on-call callbacks' keys and the sink their events go to.
    pub reach: Arc<crate::channels::reach::Endpoints>,
    /// Webhooks appended under load, shared with [`route_appended`].
    pub inbox: accept::Inbox,
}

pub use accept::route_appended;

impl App {
    /// Re-reads the configuration file and swaps it in if it is valid; the running one stays
    /// otherwise.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        let result = match &self.config_path {
            None => Config::builtin(),
            Some(p) => Config::load(p),
        }
        // Rate limits and access tokens hold across reloads: the new configuration is
        // compiled with the running one's upstream state.
        .and_then(|c| Runtime::build_with(c, self.runtime.load().upstreams.clone()));
        match result {
            Ok(rt) => {
                self.reach
                    .set_keys(crate::incident::reach::callback_keys(&rt));
                self.runtime.store(Arc::new(rt));
                self.queue.wake.notify_one();
                self.metrics.config_last_reload_successful.set(1);
                self.metrics
                    .config_last_reload_success_timestamp_seconds
                    .set(Utc::now().timestamp_millis() as f64 / 1000.0);
                info!("configuration reloaded");
                Ok(())
            }
            Err(e) => {
                self.metrics.config_last_reload_successful.set(0);
                for err in &e.0 {
                    warn!(error = %err, "configuration reload failed, keeping the running configuration");
                }
                Err(e)
            }
        }
    }
}

pub fn router(app: Arc<App>) -> Router {
    let prefix = app.runtime.load().config.web.prefix();
    let all = routes(app.clone());
    match prefix {
        // Everything under the prefix, as Alertmanager's `--web.route-prefix`; the bare
        // address is `/prefix/` as well as `/prefix`.
        Some(p) => Router::new()
            .route(&format!("{p}/"), get(console::root))
            .with_state(app)
            .nest(&p, all),
        None => all,
    }
}

fn routes(app: Arc<App>) -> Router {
    Router::new()
        .merge(console::routes())
        .merge(api::routes(app.clone()))
        .merge(incidents::link_routes())
        .route("/webhook", post(webhook_default))
        .route("/webhook/{receiver}", post(webhook_named))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .route("/metrics", get(metrics))
        .merge(crate::channels::callbacks::routes(
            crate::channels::callbacks::CallbackState {
                endpoints: app.reach.clone(),
                store: app.queue.store.clone(),
            },
        ))
        .merge(crate::chatops::callback::routes(Callbacks {
            runtime: app.runtime.clone(),
            store: app.queue.store.clone(),
            metrics: app.metrics.clone(),
        }))
        .with_state(app)
}

/// Largest HTTP/1 read buffer: bounds a request head, and what is read ahead of a handler.
const HTTP1_MAX_BUF: usize = 64 * 1024;
/// HTTP/2 flow-control windows (stream and connection): what a client may send ahead of a
/// handler, per connection. hyper's default is 1 MiB.
const HTTP2_WINDOW: u32 = 256 * 1024;

/// Serves until `shutdown` completes, then stops accepting and gives open connections up to
/// `grace` to finish.
///
/// Each connection is watched from accept: one that sends no complete request head within
/// `web.header_read_timeout` is closed, and so is one with no request in progress for
/// `web.idle_timeout` (HTTP/2 gets a GOAWAY first). Every request body goes through
/// [`limits::GuardedBody`]. The `web` settings are read here, once; only `max_body_bytes`
/// follows reloads.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let web = app.runtime.load().config.web.clone();
    if app.runtime.load().config.auth.management_is_open() {
        warn!(
            endpoint = "/-/reload",
            "management endpoint is open: anyone who can reach this port may reload the configuration; configure auth to protect it"
        );
    }
    let router = router(app.clone());
    let budget = limits::BodyBudget::new(web.max_inflight_body_bytes, web.body_read_timeout);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(web.header_read_timeout)
        .max_buf_size(HTTP1_MAX_BUF);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(web.http2_max_concurrent_streams)
        .initial_stream_window_size(HTTP2_WINDOW)
        .initial_connection_window_size(HTTP2_WINDOW)
        .keep_alive_interval(web.http2_keep_alive_interval)
        .keep_alive_timeout(web.http2_keep_alive_timeout);
    let connections = Arc::new(Semaphore::new(web.max_connections));
    // Every connection holds a receiver: `closed()` tells when the last one has ended.
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (tracker, activity) = limits::ActivityTracker::new();
        let service = connection_service(app.clone(), router.clone(), budget.clone(), tracker);
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let mut stopped = stopped.clone();
        let (first, idle) = (web.header_read_timeout, web.idle_timeout);
        tokio::spawn(async move {
            tokio::pin!(conn);
            let mut watchdog = Box::pin(limits::idle(activity.clone(), first, idle));
            // Told to finish (graceful shutdown) already.
            let mut notified = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            debug!(%peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    why = watchdog.as_mut() => {
                        if why == limits::Idle::NeverServed {
                            debug!(%peer, timeout = ?first, "closing a connection that sent no request head in time");
                            break;
                        }
                        if notified {
                            debug!(%peer, "closing a connection that did not finish after being told to");
                            break;
                        }
                        debug!(%peer, timeout = ?idle, "closing an idle connection");
                        conn.as_mut().graceful_shutdown();
                        notified = true;
                        // It has `first` more to finish what it is doing (an HTTP/2 client
                        // answers the GOAWAY's ping), then it is dropped.
                        watchdog = Box::pin(limits::idle(activity.clone(), first, first));
                    }
                    _ = stopped.changed(), if !notified => {
                        conn.as_mut().graceful_shutdown();
                        notified = true;
                    }
                }
            }
            drop(permit);
        });
    }
    app.draining.store(true, Ordering::SeqCst);
    drop(listener);
    let _ = stop.send(true);
    drop(stopped);
    if tokio::time::timeout(grace, stop.closed()).await.is_err() {
        warn!("connections still open after the shutdown grace period, closing them");
    }
    Ok(())
}

/// One connection's service: every request is counted as activity while it is in progress,
/// its body guarded, and the answer corrected when a limit stopped the body.
fn connection_service(
    app: Arc<App>,
    router: Router,
    budget: limits::BodyBudget,
    tracker: limits::ActivityTracker,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let in_progress = tracker.begin();
        let max_body = app.runtime.load().config.web.max_body_bytes;
        let (parts, body) = req.into_parts();
        let (body, ledger) = budget.guard(body, max_body);
        let req = Request::from_parts(parts, Body::new(body));
        let router = router.clone();
        async move {
            let response = match router.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let response = ledger.correct(response);
            drop(in_progress);
            Ok(response)
        }
    })
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    if app.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else if let Some(master) = app.queue.store.sentinel_master() {
        // Redis Sentinel: which master this replica writes to, or that there is none.
        match master {
            Some(addr) => (StatusCode::OK, format!("ready: redis master {addr}\n")).into_response(),
            None => (StatusCode::SERVICE_UNAVAILABLE, "no redis master\n").into_response(),
        }
    } else if !app.queue.is_open() {
        (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
    } else if !app.queue.store.is_writable() {
        (StatusCode::SERVICE_UNAVAILABLE, "store refuses writes\n").into_response()
    } else {
        (StatusCode::OK, "OK\n").into_response()
    }
}

/// `/-/reload` needs credentials whenever any auth is configured: `auth.admin`'s, or the
/// webhook's — the bearer token or basic auth, or (with an HMAC secret only) a signature over
/// its body, as Grafana would send it. Open only when no auth at all is (warned at start-up).
async fn reload(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let rt = app.runtime.load_full();
    let auth = &rt.config.auth;
    if auth::check_admin(auth, &headers) != Some(true) {
        if auth.is_open() {
            // Only `auth.admin` is configured, and it did not match.
            if auth.admin.is_some() {
                return auth::Unauthorized.into_response();
            }
        } else {
            if let Err(r) = auth::check_head(auth, &headers) {
                return r.into_response();
            }
            let bytes = match read_body(body, &headers, rt.config.web.max_body_bytes).await {
                Ok(b) => b,
                Err((status, message)) => return (status, message).into_response(),
            };
            if let Err(r) = auth::check_webhook(auth, &headers, &bytes) {
                return r.into_response();
            }
        }
    }
    let app2 = app.clone();
    match tokio::task::spawn_blocking(move || app2.reload()).await {
        Ok(Ok(())) => (StatusCode::OK, "configuration reloaded\n").into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "reload task failed\n").into_response(),
    }
}

/// Reads a whole request body, at most `limit` bytes. The error is the answer to give: 413
/// over the limit, 408 past `web.body_read_timeout`, 503 over `web.max_inflight_body_bytes`,
/// 400 when the client broke off.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<bytes::Bytes, (StatusCode, String)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {limit} bytes\n"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // The limit is enforced while reading: a lying or absent Content-Length does not help.
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => match limits::BodyError::find(&*e) {
            Some(limits::BodyError::TooLarge(_)) => Err(too_large()),
            Some(b) => Err((b.status(), format!("{b}\n"))),
            None => Err((StatusCode::BAD_REQUEST, format!("cannot read body: {e}\n"))),
        },
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

async fn webhook_default(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    handle(app, None, headers, body).await
}

async fn webhook_named(
    State(app): State<Arc<App>>,
    Path(receiver): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(app, Some(receiver), headers, body).await
}

async fn handle(
    app: Arc<App>,
    receiver: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Source and group key are recorded once the payload parses.
    let span = tracing::info_span!(
        "webhook",
        receiver = receiver.as_deref().unwrap_or(""),
        source = tracing::field::Empty,
        group_key = tracing::field::Empty,
    );
    async move {
        let (source, status, message) =
            accept::accept(&app, receiver.as_deref(), &headers, body).await;
        app.metrics
            .webhooks_received
            .get_or_create(&WebhookLabels {
                source: source.map(Source::as_str).unwrap_or("unknown"),
                status: status_label(status),
            })
            .inc();
        if status.is_success() {
            debug!(status = status.as_u16(), "webhook accepted");
        } else {
            info!(status = status.as_u16(), reason = %message.trim_end(), "webhook refused");
        }
        (status, message).into_response()
    }
    .instrument(span)
    .await
}

fn status_label(s: StatusCode) -> &'static str {
    match s.as_u16() {
        200 => "200",
        400 => "400",
        401 => "401",
        408 => "408",
        404 => "404",
        413 => "413",
        415 => "415",
        503 => "503",
        _ => "500",
    }
}
