//! The integrations a receiver can hold, one file each, dispatched by `match`.
//!
//! An integration answers two questions: what exact upstream requests a notification becomes
//! ([`Integration::prepare`], which `render` prints) and how to send them
//! ([`Integration::send`]). Sending records each recipient that succeeded in a [`Progress`]
//! set, so that a retry after a partial failure only goes to those still missing.
//! Retry decisions are not made here: errors say whether they are retryable.

pub mod console;
pub mod error;
pub mod http;
pub mod official_account;
pub mod options;
pub mod ratelimit;
pub mod state;
pub mod wecom_app;
pub mod wecom_robot;
pub mod weixin_gateway;
pub mod wxpusher;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::channels::error::DeliveryError;
use crate::channels::options::DeliveryOptions;
use crate::channels::ratelimit::RateLimits;
use crate::secret::{Scrubber, Secret};
use crate::store::{IntegrationId, Store};
use crate::template::Templates;
use crate::webhook::{Notification, Status};

pub use crate::store::Progress;
pub use crate::store::progress::{Entry, Recipient};

/// What an integration needs from the running configuration to render.
pub struct Env<'a> {
    pub templates: &'a Templates,
    pub now: DateTime<Utc>,
    pub client: &'a reqwest::Client,
    /// Masks secrets in upstream text kept in errors.
    pub scrubber: &'a Scrubber,
    /// Token buckets per upstream credential; integrations acquire before each request.
    pub limits: &'a RateLimits,
    /// The rest of the long-lived upstream state ([`state::Upstreams`]).
    pub upstreams: &'a state::Upstreams,
    /// UIDs subscribed through a WxPusher integration's `subscriber_tags`, looked up by the
    /// worker before a delivery (see [`crate::chatops::prepare_delivery`]); sent to as well.
    pub subscribers: &'a [String],
    /// The durable store, for per-recipient daily budgets; `None` outside the delivery
    /// workers (`render`, `send-test`, config checks), where nothing is counted.
    pub store: Option<&'a Store>,
    /// Where a delivery counts what it had to degrade; `None` outside the delivery workers.
    pub metrics: Option<&'a crate::metrics::Metrics>,
}

impl Env<'_> {
    /// The template context of `part` with a `preview` line: the `summary` template rendered
    /// for `titled`, on one line, cut to `max_chars` visible characters. A split message's
    /// parts pass themselves; a storm digest's pages (no alerts) pass the whole digest.
    pub fn context_with_preview(
        &self,
        part: &Notification,
        titled: &Notification,
        summary: &str,
        max_chars: usize,
    ) -> Result<Value, DeliveryError> {
        let mut ctx = self.templates.context(part, self.now);
        let other;
        let of_title = if std::ptr::eq(part, titled) {
            &ctx
        } else {
            other = self.templates.context(titled, self.now);
            &other
        };
        let line = crate::text::one_line(&self.templates.render(summary, of_title)?);
        let preview = crate::text::truncate(&line, max_chars);
        if let Value::Object(m) = &mut ctx {
            m.insert("preview".into(), Value::String(preview));
        }
        Ok(ctx)
    }
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
    /// What it sends to, as stored with each delivery: a delivery stays bound to this, never
    /// to a position in the receiver's list ([`Integration::identity`]).
    pub id: IntegrationId,
    /// Its position among the receiver's integrations, for people (`render`, `send-test`).
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
    WecomRobot(wecom_robot::WecomRobot),
    WecomApp(wecom_app::WecomApp),
}

/// The kind an identity was made for (its prefix, see [`Integration::identity`]), as a metric
/// label; `unknown` for a position stored by an older version.
pub fn kind_of(id: &IntegrationId) -> &'static str {
    const KINDS: &[&str] = &[
        "wxpusher",
        "console",
        "weixin_gateway",
        "official_account",
        "wecom_robot",
        "wecom_app",
    ];
    KINDS
        .iter()
        .find(|k| {
            id.as_str()
                .strip_prefix(&k.replace('_', "-"))
                .is_some_and(|rest| rest.starts_with('-'))
        })
        .copied()
        .unwrap_or("unknown")
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::WxPusher(_) => "wxpusher",
        Kind::Console(_) => "console",
        Kind::WeixinGateway(_) => "weixin_gateway",
        Kind::OfficialAccount(_) => "official_account",
        Kind::WecomRobot(_) => "wecom_robot",
        Kind::WecomApp(_) => "wecom_app",
    }
}

impl Integration {
    /// The integration's type, as used in metric labels and logs.
    pub fn name(&self) -> &'static str {
        kind_name(&self.kind)
    }

    /// The identity of an integration of this kind: its kind, a fingerprint of its credential
    /// and its recipients (sorted, so reordering them changes nothing). The endpoint's URL is
    /// left out: moving to a proxy or a new address sends to the same people.
    pub fn identity(kind: &Kind) -> IntegrationId {
        use sha2::{Digest, Sha256};
        let fingerprint = |s: &Secret| hex::encode(&Sha256::digest(s.expose().as_bytes())[..8]);
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        };
        let mut parts: Vec<String> = Vec::new();
        match kind {
            Kind::WxPusher(w) => {
                parts.push(fingerprint(&w.app_token));
                parts.extend(sorted(&w.uids).into_iter().map(|u| format!("uid={u}")));
                let topics: Vec<String> =
                    w.topic_ids.iter().map(|t| format!("topic={t}")).collect();
                parts.extend(sorted(&topics));
                parts.extend(
                    sorted(&w.subscriber_tags)
                        .into_iter()
                        .map(|t| format!("tag={t}")),
                );
                // Simple push: each SPT by its id (a hash, not the secret).
                let spts: Vec<String> = w.spts.iter().map(|s| format!("spt={}", s.id)).collect();
                parts.extend(sorted(&spts));
            }
            Kind::Console(_) => {}
            Kind::WeixinGateway(g) => {
                parts.push(format!("account={}", g.account_id));
                parts.extend(g.bearer_token.iter().map(fingerprint));
                parts.extend(
                    sorted(&g.to_user_ids)
                        .into_iter()
                        .map(|u| format!("user={u}")),
                );
            }
            Kind::OfficialAccount(o) => {
                parts.push(format!("app={}", o.app_id));
                parts.push(fingerprint(o.tokens.app_secret()));
                parts.push(format!("kind={:?}", o.kind));
                parts.extend(
                    sorted(&o.to_openids)
                        .into_iter()
                        .map(|u| format!("openid={u}")),
                );
            }
            // The key is the robot: whoever holds it posts to that one group.
            Kind::WecomRobot(r) => parts.push(fingerprint(&r.key)),
            Kind::WecomApp(a) => {
                parts.push(format!("corp={}", a.corp_id));
                parts.push(format!("agent={}", a.agent_id));
                parts.push(fingerprint(a.tokens.secret()));
                for (k, t) in [
                    ("user", &a.to_user),
                    ("party", &a.to_party),
                    ("tag", &a.to_tag),
                ] {
                    let ids: Vec<String> = t
                        .iter()
                        .flat_map(|t| t.split('|'))
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                    parts.extend(sorted(&ids).into_iter().map(|i| format!("{k}={i}")));
                }
            }
        }
        let mut h = Sha256::new();
        for p in &parts {
            h.update(p.as_bytes());
            h.update([0]);
        }
        let name = kind_name(kind).replace('_', "-");
        IntegrationId(format!("{name}-{}", hex::encode(&h.finalize()[..8])))
    }

    /// How often the upstream's health endpoint is probed, for integrations that have one.
    pub fn health_interval(&self) -> Option<std::time::Duration> {
        match &self.kind {
            Kind::WeixinGateway(g) => Some(g.health_interval),
            _ => None,
        }
    }

    /// Whether the upstream answers its health endpoint (`false` for kinds without one).
    pub async fn probe(&self, client: &reqwest::Client) -> bool {
        match &self.kind {
            Kind::WeixinGateway(g) => g.probe(client).await,
            _ => false,
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
            Kind::WecomRobot(r) => r.secrets(),
            Kind::WecomApp(a) => a.secrets(),
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
            Kind::WecomRobot(r) => r.prepare(env, n, &Progress::new()),
            Kind::WecomApp(a) => a.prepare(env, n, &Progress::new()),
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
            Kind::WecomRobot(r) => r.send(env, n, progress).await,
            Kind::WecomApp(a) => a.send(env, n, progress).await,
        }
    }
}
