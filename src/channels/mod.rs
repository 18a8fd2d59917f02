//! The integrations a receiver can hold, one file each, dispatched by `match`.
//!
//! An integration answers two questions: what exact upstream requests a notification becomes
//! ([`Integration::prepare`], which `render` prints) and how to send them
//! ([`Integration::send`]). Sending records each recipient that succeeded in a [`Progress`]
//! set, so that a retry after a partial failure only goes to those still missing.
//! Retry decisions are not made here: errors say whether they are retryable.

pub mod console;
pub mod official_account;
pub mod weixin_gateway;
pub mod wxpusher;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::delivery::DeliveryError;
use crate::delivery::options::DeliveryOptions;
use crate::delivery::ratelimit::RateLimits;
use crate::secret::{Scrubber, Secret};
use crate::store::Store;
use crate::template::Templates;
use crate::webhook::{Notification, Status};

/// Recipients (per message part) already delivered for one job.
pub type Progress = BTreeSet<String>;

/// What an integration needs from the running configuration to render.
pub struct Env<'a> {
    pub templates: &'a Templates,
    pub now: DateTime<Utc>,
    pub client: &'a reqwest::Client,
    /// Masks secrets in upstream text kept in errors.
    pub scrubber: &'a Scrubber,
    /// Token buckets per upstream credential; integrations acquire before each request.
    pub limits: &'a RateLimits,
    /// UIDs subscribed through a WxPusher integration's `subscriber_tags`, looked up by the
    /// worker before a delivery (see [`crate::chatops::prepare_delivery`]); sent to as well.
    pub subscribers: &'a [String],
    /// The durable store, for per-recipient daily budgets; `None` outside the delivery
    /// workers (`render`, `send-test`, config checks), where nothing is counted.
    pub store: Option<&'a Store>,
}

/// One request as it would go on the wire.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outbound {
    pub method: &'static str,
    pub url: String,
    pub body: Value,
}

/// One configured integration of a receiver.
#[derive(Debug)]
pub struct Integration {
    /// The receiver it belongs to.
    pub receiver: String,
    /// Its position among the receiver's integrations; stable across reloads of the same file.
    pub index: usize,
    /// Whether resolved alerts are sent at all.
    pub send_resolved: bool,
    /// Where a notification goes, once, when this integration gives up on it.
    pub fallback_receiver: Option<String>,
    /// Retries, rate limit and coalescing.
    pub delivery: DeliveryOptions,
    pub kind: Kind,
}

#[derive(Debug)]
pub enum Kind {
    WxPusher(wxpusher::WxPusher),
    Console(console::Console),
    WeixinGateway(weixin_gateway::WeixinGateway),
    OfficialAccount(official_account::OfficialAccount),
}

impl Integration {
    /// The integration's type, as used in metric labels and logs.
    pub fn name(&self) -> &'static str {
        match &self.kind {
            Kind::WxPusher(_) => "wxpusher",
            Kind::Console(_) => "console",
            Kind::WeixinGateway(_) => "weixin_gateway",
            Kind::OfficialAccount(_) => "official_account",
        }
    }

    /// Secrets this integration sends upstream.
    pub fn secrets(&self) -> Vec<Secret> {
        match &self.kind {
            Kind::WxPusher(w) => std::iter::once(w.app_token.clone())
                .chain(w.spts.iter().map(|s| s.token.clone()))
                .collect(),
            Kind::Console(_) => vec![],
            Kind::WeixinGateway(g) => g.bearer_token.iter().cloned().collect(),
            Kind::OfficialAccount(o) => vec![o.tokens.app_secret().clone()],
        }
    }

    /// The notification as this integration should see it: without resolved alerts when
    /// `send_resolved` is off. `None` when nothing is left to send.
    pub fn filter(&self, n: &Notification) -> Option<Notification> {
        if self.send_resolved {
            return Some(n.clone());
        }
        let firing: Vec<_> = n
            .alerts
            .iter()
            .filter(|a| a.status == Status::Firing)
            .cloned()
            .collect();
        if firing.is_empty() {
            None
        } else {
            Some(n.subset(firing))
        }
    }

    /// The exact requests a notification becomes, secrets included (callers mask them).
    pub fn prepare(&self, env: &Env<'_>, n: &Notification) -> Result<Vec<Outbound>, DeliveryError> {
        match &self.kind {
            Kind::WxPusher(w) => w.prepare(env, n, &Progress::new()),
            Kind::Console(c) => c.prepare(env, n),
            Kind::WeixinGateway(g) => g.prepare(env, n, &Progress::new()),
            Kind::OfficialAccount(o) => o.prepare(env, n, &Progress::new()),
        }
    }

    pub async fn send(
        &self,
        env: &Env<'_>,
        n: &Notification,
        progress: &mut Progress,
    ) -> Result<(), DeliveryError> {
        match &self.kind {
            Kind::WxPusher(w) => w.send(env, n, progress).await,
            Kind::Console(c) => c.send(env, n),
            Kind::WeixinGateway(g) => g.send(env, n, progress).await,
            Kind::OfficialAccount(o) => o.send(env, n, progress).await,
        }
    }
}
