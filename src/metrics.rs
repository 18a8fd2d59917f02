//! The Prometheus metrics registry and every metric family the service exports.
//!
//! Names are prefixed `alertmanager_wechat_`. Label values come from fixed sets (the config's
//! receiver names, integration types, [`crate::delivery::Reason`]); never from raw error text
//! or alert labels, whose cardinality nobody controls.

use std::sync::atomic::AtomicU64;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `alertmanager`, `grafana` or `unknown` (unparseable).
    pub source: &'static str,
    /// The HTTP status answered.
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    pub receiver: String,
    pub integration: &'static str,
    /// `success`, `failed` (gave up or permanent) or `dropped`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntegrationLabels {
    pub integration: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverIntegrationLabels {
    pub receiver: String,
    pub integration: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WindowLabels {
    pub receiver: String,
    /// `open`, `low` (the next message asks the user to reply) or `spent`.
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub integration: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyStateLabels {
    pub policy: String,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PageLabels {
    pub contact: String,
    pub result: &'static str,
}

fn ack_histogram() -> Histogram {
    Histogram::new([
        30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
    ])
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChatopsLabels {
    /// `silence`, `unsilence`, `ack`, `list`, `help`, `unknown`, or `subscribe` (a WxPusher
    /// subscriber enrolment).
    pub command: &'static str,
    /// `ok`, `denied`, `invalid`, `unknown_ref` or `failed`; for `subscribe`, `ok`, `capped`
    /// (over `chatops.max_subscribers_per_hour`) or `failed`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    pub revision: &'static str,
}

/// Every metric, registered once at start-up and shared by reference.
pub struct Metrics {
    registry: Registry,
    pub webhooks_received: Family<WebhookLabels, Counter>,
    pub alerts_received: Family<StatusLabels, Counter>,
    pub notifications: Family<NotificationLabels, Counter>,
    pub notification_latency: Family<IntegrationLabels, Histogram>,
    pub deliveries_failed: Family<FailureLabels, Counter>,
    pub deliveries_retried: Family<IntegrationLabels, Counter>,
    /// Template fields sent with a placeholder because what rendered could not fit the field.
    pub template_fields_degraded: Family<IntegrationLabels, Counter>,
    pub queue_depth: Family<IntegrationLabels, Gauge>,
    /// Webhooks accepted under load (appended as received) and not routed yet.
    pub webhooks_pending: Gauge,
    /// Notifications given up and kept in the store (`deadletters list`).
    pub dead_letters: Gauge,
    pub dedupe_suppressed: Family<ReasonLabels, Counter>,
    /// 1 when an integration's upstream answers its health probe, else 0 (weixin-gateway).
    pub integration_up: Family<ReceiverIntegrationLabels, Gauge>,
    /// Commands received from WeChat, by command and result.
    pub chatops_commands: Family<ChatopsLabels, Counter>,
    /// weixin-gateway users per receiver whose iLink send window is open, low or spent.
    pub window_users: Family<WindowLabels, Gauge>,
    /// The fewest sends any of a receiver's weixin-gateway users has left in their window.
    pub window_remaining: Family<ReceiverIntegrationLabels, Gauge>,
    pub config_last_reload_successful: Gauge,
    pub config_last_reload_success_timestamp_seconds: Gauge<f64, AtomicU64>,
    /// Incidents that entered a state, per policy.
    pub incidents: Family<PolicyStateLabels, Counter>,
    pub escalations: Family<PolicyLabels, Counter>,
    /// Time from opening to acknowledgement.
    pub incident_ack_seconds: Family<PolicyLabels, Histogram>,
    /// Incidents not resolved, per policy (read from the store, shared by replicas).
    pub incidents_open: Family<PolicyLabels, Gauge>,
    /// Pages by contact kind and result (sent, skipped_quiet, skipped, cancelled).
    pub oncall_pages: Family<PageLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0])
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        // The standard `process_*` families at the root, ours under the prefix.
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector));
        let registry = root.sub_registry_with_prefix("alertmanager_wechat");
        let m = Metrics {
            webhooks_received: Family::default(),
            alerts_received: Family::default(),
            notifications: Family::default(),
            notification_latency: Family::new_with_constructor(latency_histogram),
            deliveries_failed: Family::default(),
            deliveries_retried: Family::default(),
            template_fields_degraded: Family::default(),
            queue_depth: Family::default(),
            webhooks_pending: Gauge::default(),
            dead_letters: Gauge::default(),
            dedupe_suppressed: Family::default(),
            integration_up: Family::default(),
            chatops_commands: Family::default(),
            window_users: Family::default(),
            window_remaining: Family::default(),
            config_last_reload_successful: Gauge::default(),
            config_last_reload_success_timestamp_seconds: Gauge::default(),
            incidents: Family::default(),
            escalations: Family::default(),
            incident_ack_seconds: Family::new_with_constructor(ack_histogram),
            incidents_open: Family::default(),
            oncall_pages: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "incidents",
            "Incidents that entered a state, per escalation policy",
            m.incidents.clone(),
        );
        registry.register(
            "escalations",
            "Escalations to a next step, per escalation policy",
            m.escalations.clone(),
        );
        registry.register(
            "incident_ack_seconds",
            "Time from an incident's opening to its acknowledgement",
            m.incident_ack_seconds.clone(),
        );
        registry.register(
            "incidents_open",
            "Incidents not resolved, per escalation policy",
            m.incidents_open.clone(),
        );
        registry.register(
            "oncall_pages",
            "Pages to people, by contact kind and result",
            m.oncall_pages.clone(),
        );
        registry.register(
            "webhooks_received",
            "Webhook requests received, by sender and answered status",
            m.webhooks_received.clone(),
        );
        registry.register(
            "alerts_received",
            "Alerts received in accepted webhooks, by alert status",
            m.alerts_received.clone(),
        );
        registry.register(
            "notifications",
            "Notifications finished per receiver integration, by result",
            m.notifications.clone(),
        );
        registry.register(
            "notification_latency_seconds",
            "Time from acceptance to successful delivery",
            m.notification_latency.clone(),
        );
        registry.register(
            "deliveries_failed",
            "Failed delivery attempts, by reason",
            m.deliveries_failed.clone(),
        );
        registry.register(
            "deliveries_retried",
            "Delivery attempts scheduled again after a retryable failure",
            m.deliveries_retried.clone(),
        );
        registry.register(
            "template_fields_degraded",
            "Template fields sent with a placeholder because the rendered value could not fit",
            m.template_fields_degraded.clone(),
        );
        registry.register(
            "queue_depth",
            "Notifications waiting for delivery",
            m.queue_depth.clone(),
        );
        registry.register(
            "webhooks_pending",
            "Webhooks accepted under load and not routed yet (their deliveries are not queued yet)",
            m.webhooks_pending.clone(),
        );
        registry.register(
            "dead_letters",
            "Notifications given up after their retries, kept for `deadletters replay`",
            m.dead_letters.clone(),
        );
        registry.register(
            "dedupe_suppressed",
            "Notifications not sent because they repeat one already sent",
            m.dedupe_suppressed.clone(),
        );
        registry.register(
            "integration_up",
            "Whether an integration's upstream answers its health probe",
            m.integration_up.clone(),
        );
        registry.register(
            "chatops_commands",
            "Commands received from WeChat replies, by command and result",
            m.chatops_commands.clone(),
        );
        registry.register(
            "config_last_reload_successful",
            "Whether the last configuration load succeeded",
            m.config_last_reload_successful.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Time of the last successful configuration load",
            m.config_last_reload_success_timestamp_seconds.clone(),
        );
        let build_info: Family<BuildLabels, Gauge> = Family::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                revision: option_env!("AMW_GIT_REVISION").unwrap_or("unknown"),
            })
            .set(1);
        registry.register("build_info", "Version of this build", build_info);
        Metrics {
            registry: root,
            ..m
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Registers the shared store's Redis counters (their values live in the store):
    /// `redis_failovers_total` and `redis_wait_timeouts_total`.
    pub fn register_redis(&mut self, failovers: Counter, wait_timeouts: Counter) {
        let registry = self
            .registry
            .sub_registry_with_prefix("alertmanager_wechat");
        registry.register(
            "redis_failovers",
            "Times the Redis master changed and the new one was followed (Sentinel)",
            failovers,
        );
        registry.register(
            "redis_wait_timeouts",
            "Changes refused because fewer Redis replicas than redis_wait_replicas confirmed them in time",
            wait_timeouts,
        );
    }

    /// Registers a family a channel sets itself (a gauge of its upstream's state), under the
    /// service's prefix: the channel names and describes it, through the channels' registry.
    pub fn register_channel_family(
        &mut self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry
            .sub_registry_with_prefix("alertmanager_wechat")
            .register(name, help, metric);
    }

    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }
}

/// The `process_*` metrics every Prometheus client exports, read from `/proc/self` at each
/// scrape (Linux; elsewhere, or when a file cannot be read, those series are left out).
#[derive(Debug)]
struct ProcessCollector;

/// `/proc` reports CPU times in USER_HZ ticks, 100 per second on every Linux platform.
const TICKS_PER_SECOND: f64 = 100.0;

impl ProcessCollector {
    fn gauge(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: Option<f64>,
    ) -> Result<(), std::fmt::Error> {
        let Some(v) = value else {
            return Ok(());
        };
        let g = ConstGauge::new(v);
        g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
    }
}

/// The fields of `/proc/self/stat` after the command name (which may contain spaces).
fn proc_stat() -> Option<Vec<String>> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(String::from).collect())
}

/// A `Name:   123 kB` line of `/proc/self/status`, in bytes.
fn proc_status_bytes(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024.0)
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // After the command name: state is field 3 of stat(5), so field N is at N - 3.
        let stat = proc_stat();
        let field = |n: usize| -> Option<f64> { stat.as_ref()?.get(n - 3)?.parse().ok() };
        if let (Some(user), Some(system)) = (field(14), field(15)) {
            let c = ConstCounter::new((user + system) / TICKS_PER_SECOND);
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                c.metric_type(),
            )?)?;
        }
        let start = field(22)
            .zip(boot_time())
            .map(|(t, b)| b + t / TICKS_PER_SECOND);
        Self::gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            start,
        )?;
        Self::gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            proc_status_bytes("VmRSS:"),
        )?;
        Self::gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            field(23),
        )?;
        let open = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64);
        Self::gauge(
            &mut encoder,
            "process_open_fds",
            "Number of open file descriptors",
            open,
        )?;
        Self::gauge(
            &mut encoder,
            "process_max_fds",
            "Maximum number of open file descriptors",
            max_fds(),
        )?;
        Ok(())
    }
}
