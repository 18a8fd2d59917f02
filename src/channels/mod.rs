//! The integrations a receiver can hold, one file each, dispatched by `match`.
//!
//! An integration answers two questions: what exact upstream requests a notification becomes
//! ([`Integration::prepare`], which `render` prints) and how to send them
//! ([`Integration::send`]). Sending records each recipient that succeeded in a [`Progress`]
//! set, so that a retry after a partial failure only goes to those still missing.
//! Retry decisions are not made here: errors say whether they are retryable.

pub mod callbacks;
pub mod chatops;
pub mod check;
pub mod contact;
pub mod error;
pub mod http;
pub mod inbound;
pub mod official_account;
pub mod options;
pub mod preview;
pub mod ratelimit;
pub mod reach;
pub mod state;
pub mod stdout;
pub mod upstream;
pub mod voice;
pub mod wecom;
pub mod wecom_app;
pub mod wecom_robot;
pub mod weixin_gateway;
pub mod wxcrypt;
pub mod wxpusher;

#[cfg(test)]
mod tests;

use std::sync::Arc;

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
pub use check::{Build, ChannelConfig, Check, check_http_url};

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
    Console(stdout::Console),
    WeixinGateway(weixin_gateway::WeixinGateway),
    OfficialAccount(official_account::OfficialAccount),
    WecomRobot(wecom_robot::WecomRobot),
    WecomApp(wecom_app::WecomApp),
    /// A person's voice contact (`oncall.channels.voice`): pages only.
    Voice(voice::Voice),
}

/// Every channel's kind name, as used in metric labels, logs and identities.
pub const KINDS: &[&str] = &[
    wxpusher::KIND,
    stdout::KIND,
    weixin_gateway::KIND,
    official_account::KIND,
    wecom_robot::KIND,
    wecom_app::KIND,
];

/// What channels keep beyond one configuration ([`state::Upstreams`]): a field per channel
/// that keeps anything, each shared by every configuration the service compiles.
#[derive(Debug, Clone, Default)]
pub struct Kept {
    /// Access tokens, per app.
    pub official_account: Arc<official_account::token::TokenCache>,
    /// Access tokens, per (corp, secret).
    pub wecom_app: Arc<wecom_app::token::TokenCache>,
    /// Users refused for a while, and what was known of them then.
    pub weixin_gateway: Arc<weixin_gateway::Backoffs>,
}

// The contact kinds people are paged through (`oncall.channels.<kind>`,
// `people[].contacts.<kind>`), in the order a person's contacts are listed.
contact::contact_kinds! {
    WxPusher(wxpusher): wxpusher::config::WxPusherConfig,
    WecomApp(wecom_app): wecom_app::config::WecomAppConfig,
    WeixinGateway(weixin_gateway): weixin_gateway::config::WeixinGatewayConfig,
    OfficialAccount(official_account): official_account::config::OfficialAccountConfig,
    Voice(voice): voice::VoiceConfig,
}

// The on-call side of the channels people are paged through: what the callbacks name
// (contacts, pages), the keys they check, their endpoints, who sends pages itself and the
// status queries of pages. Each channel's handling is in its folder's `oncall.rs`.

/// The contact that acted, as the upstream names it ([`reach::OncallEvent`]); the engine
/// finds the person whose contact of that kind matches ([`Contact::among`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    /// `FromUserName` of a WeCom callback.
    WecomApp { userid: String },
    /// `FromUserName` of an Official Account push.
    OfficialAccount { openid: String },
    /// The number called, E.164 (`+8613800000000`), as far as the report gives it.
    Voice { number: String },
}

impl Contact {
    /// Whether a person's `contacts` name this contact.
    pub fn among(&self, contacts: &Contacts) -> bool {
        match self {
            Contact::WecomApp { userid } => wecom_app::oncall::among(contacts, userid),
            Contact::OfficialAccount { openid } => {
                official_account::oncall::among(contacts, openid)
            }
            Contact::Voice { number } => voice::oncall::among(contacts, number),
        }
    }
}

/// The page an event is about, by the upstream's own id for it (what the sender recorded
/// when the page went out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageRef {
    WecomCard(wecom_app::oncall::CardRef),
    OfficialAccount(official_account::oncall::MessageRef),
    Voice(voice::oncall::CallRef),
    WxPusher(wxpusher::oncall::RecordRef),
}

impl PageRef {
    /// How an act through this page came (the timeline's `contact` of an acknowledgement).
    pub fn via(&self) -> &'static str {
        match self {
            PageRef::WecomCard(_) => wecom_app::oncall::VIA,
            PageRef::OfficialAccount(_) => official_account::KIND,
            PageRef::Voice(_) => voice::KIND,
            PageRef::WxPusher(_) => wxpusher::KIND,
        }
    }

    /// The marker of the `sent` entry recording the page (a word of its detail), and the
    /// entry's contact kind.
    pub fn marker(&self) -> (String, &'static str) {
        match self {
            PageRef::WecomCard(p) => p.marker(),
            PageRef::OfficialAccount(p) => p.marker(),
            PageRef::Voice(p) => p.marker(),
            PageRef::WxPusher(p) => p.marker(),
        }
    }
}

/// The keys the callback endpoints check; an endpoint whose keys are absent answers 404.
#[derive(Debug, Clone, Default)]
pub struct CallbackKeys {
    /// `oncall.channels.wecom_app`'s callback token and EncodingAESKey, with its corp id.
    pub wecom: Option<wxcrypt::MsgCrypt>,
    /// `oncall.channels.official_account`'s callback token (plain mode) and, in safe mode,
    /// the crypto with the app id.
    pub official_account: Option<official_account::oncall::OfficialAccountKeys>,
    /// `oncall.channels.voice`'s provider and the secret path segment of its reports.
    pub voice: Option<(voice::Provider, Secret)>,
}

impl CallbackKeys {
    /// The keys of the `oncall.channels` entries given: every person's contact of a kind
    /// carries the same entry, so the first of each kind gives them.
    pub fn of<'a>(entries: impl IntoIterator<Item = &'a ContactEntry>) -> CallbackKeys {
        let mut keys = CallbackKeys::default();
        for entry in entries {
            match entry {
                ContactEntry::WecomApp(c) => wecom_app::oncall::keys(c, &mut keys.wecom),
                ContactEntry::OfficialAccount(c) => {
                    official_account::oncall::keys(c, &mut keys.official_account)
                }
                ContactEntry::Voice(c) => voice::oncall::keys(c, &mut keys.voice),
                _ => {}
            }
        }
        keys
    }
}

/// The on-call callback endpoints the channels serve ([`callbacks`]), each adding its routes.
pub const ONCALL_CALLBACKS: &[callbacks::Routes] = &[
    wecom_app::oncall::routes,
    official_account::oncall::routes,
    voice::oncall::routes,
];

/// A stored status query of a page ([`reach::STATUS_KIND`]), read back from its identity by
/// the channel whose prefix it bears.
pub fn status_query(id: &IntegrationId) -> Option<Box<dyn reach::StatusQuery>> {
    wxpusher::oncall::StatusJob::read(id)
}

/// The templates the channels ship ([`crate::template::Shipped`]), each declared in its folder.
pub const SHIPPED_TEMPLATES: &[&[crate::template::Shipped]] = &[
    wxpusher::templates::TEMPLATES,
    stdout::templates::TEMPLATES,
    weixin_gateway::templates::TEMPLATES,
    official_account::templates::TEMPLATES,
    wecom_robot::templates::TEMPLATES,
    wecom_app::templates::TEMPLATES,
];

/// The shipped templates for `locale`, the channels' included, with every helper registered.
pub fn templates(tz: chrono_tz::Tz, locale: crate::template::Locale) -> Templates {
    Templates::with_shipped(tz, locale, SHIPPED_TEMPLATES)
}

/// A code users subscribe through (WxPusher's parameter QR code), for a receiver.
pub use wxpusher::qrcode::{
    MAX_VALID as SUBSCRIPTION_CODE_MAX_VALID, for_receiver as subscription_code,
};

/// The callback endpoints the channels serve ([`inbound`]).
pub const INBOUND: &[inbound::Endpoint] = &[
    wxpusher::inbound::ENDPOINT,
    weixin_gateway::inbound::ENDPOINT,
];

/// The channels users write commands through, with their keys in the `chatops:` block
/// ([`chatops::CommandChannel`]), in the order the block lists them.
pub const CHATOPS: &[chatops::CommandChannel] =
    &[wxpusher::chatops::CHANNEL, weixin_gateway::chatops::CHANNEL];

/// Answers a user who wrote `msg`, on the channel it came through; `receiver` is the receiver
/// the message acted on, when it did (its integration is preferred). An error in words.
pub async fn reply(
    receivers: &std::collections::BTreeMap<String, Vec<Integration>>,
    env: &Env<'_>,
    msg: &inbound::Message,
    receiver: Option<&str>,
    text: &str,
) -> Result<(), String> {
    match msg.kind {
        wxpusher::KIND => wxpusher::inbound::reply(receivers, env, msg, receiver, text).await,
        weixin_gateway::KIND => weixin_gateway::inbound::reply(receivers, env, msg, text).await,
        other => Err(format!("{other} cannot reply")),
    }
}

/// What a channel does itself when a user writes through it, before the message is acted on.
pub async fn received(store: &Store, upstreams: &state::Upstreams, msg: &inbound::Message) {
    if msg.kind == weixin_gateway::KIND {
        weixin_gateway::inbound::received(store, upstreams, msg).await;
    }
}

/// The template of a notification's one-line summary and that of its link, shared by the
/// channels whose fields default to them (declared with WxPusher's, which had them first).
pub const SUMMARY_TEMPLATE: &str = wxpusher::templates::SUMMARY;
pub const URL_TEMPLATE: &str = wxpusher::templates::URL;

/// Shipped template names the console's playground gives as examples of what to override.
pub const EXAMPLE_TEMPLATES: &[&str] = &[
    "wxpusher.summary",
    "wxpusher.content",
    "gateway.text",
    "official_account.title",
];

/// The `global` settings integrations default to, and which channels' callbacks are
/// configured (`chatops`), taken from the configuration by the loader.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    pub summary_max_chars: usize,
    pub wxpusher_api_url: String,
    pub wechat_api_url: String,
    pub wecom_api_url: String,
    /// The kinds ([`KINDS`]) whose inbound callback is configured.
    pub callbacks: Vec<&'static str>,
}

impl Globals {
    /// Whether the inbound callback of channel `kind` is configured.
    pub fn callback(&self, kind: &str) -> bool {
        self.callbacks.contains(&kind)
    }
}

/// The kind an identity was made for (its prefix, see [`Integration::identity`]), as a metric
/// label; `unknown` for a position stored by an older version.
pub fn kind_of(id: &IntegrationId) -> &'static str {
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

impl Kind {
    /// The kind's name ([`KINDS`]).
    pub fn name(&self) -> &'static str {
        match self {
            Kind::WxPusher(_) => wxpusher::KIND,
            Kind::Console(_) => stdout::KIND,
            Kind::WeixinGateway(_) => weixin_gateway::KIND,
            Kind::OfficialAccount(_) => official_account::KIND,
            Kind::WecomRobot(_) => wecom_robot::KIND,
            Kind::WecomApp(_) => wecom_app::KIND,
            Kind::Voice(_) => voice::KIND,
        }
    }

    /// What the identity hashes, in order ([`Integration::identity`]).
    fn identity_parts(&self, parts: &mut Vec<String>) {
        match self {
            Kind::WxPusher(w) => w.identity(parts),
            Kind::Console(_) => {}
            Kind::WeixinGateway(g) => g.identity(parts),
            Kind::OfficialAccount(o) => o.identity(parts),
            Kind::WecomRobot(r) => r.identity(parts),
            Kind::WecomApp(a) => a.identity(parts),
            Kind::Voice(v) => v.identity(parts),
        }
    }
}

/// The channels' periodic upkeep over every receiver's integrations (today the gateway's
/// send-window gauges); answers when it is due again.
pub async fn upkeep(
    receivers: &std::collections::BTreeMap<String, Vec<Integration>>,
    store: &Store,
    metrics: &crate::metrics::Metrics,
) -> std::time::Duration {
    weixin_gateway::window::upkeep(receivers, store, metrics).await
}

/// Registers the metric families channels set themselves (the gateway's send-window gauges),
/// once, before the metrics are shared.
pub fn register_metrics(metrics: &mut crate::metrics::Metrics) {
    weixin_gateway::window::register_metrics(metrics);
}

/// Templates the channels need that neither the shipped set nor the configuration defined;
/// what cannot be compiled, in words.
pub fn complete_templates(templates: &mut Templates) -> Vec<String> {
    wxpusher::complete_templates(templates)
}

/// A credential in an identity: 8 bytes of its SHA-256, never the secret.
pub(crate) fn fingerprint(s: &Secret) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(s.expose().as_bytes())[..8])
}

/// Recipients in an identity: sorted and without repeats, so reordering them changes nothing.
pub(crate) fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

impl Integration {
    /// The integration's type, as used in metric labels and logs.
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// The identity of an integration of this kind: its kind, a fingerprint of its credential
    /// and its recipients (sorted, so reordering them changes nothing). The endpoint's URL is
    /// left out: moving to a proxy or a new address sends to the same people.
    pub fn identity(kind: &Kind) -> IntegrationId {
        use sha2::{Digest, Sha256};
        let mut parts: Vec<String> = Vec::new();
        kind.identity_parts(&mut parts);
        let mut h = Sha256::new();
        for p in &parts {
            h.update(p.as_bytes());
            h.update([0]);
        }
        let name = kind.name().replace('_', "-");
        IntegrationId(format!("{name}-{}", hex::encode(&h.finalize()[..8])))
    }

    /// The channel's own sending of on-call messages to a person's contact, for the kinds
    /// that keep their pages' ids with the incident.
    pub fn pager(&self) -> Option<&dyn reach::Pager> {
        match &self.kind {
            Kind::WxPusher(w) => Some(w),
            Kind::OfficialAccount(o) => Some(o),
            Kind::WecomApp(a) => Some(a),
            Kind::Voice(v) => Some(v),
            _ => None,
        }
    }

    /// The users subscribed to this integration (through WxPusher's `subscriber_tags`) that
    /// it does not list itself: sent to as well. Empty for kinds without subscribers.
    pub async fn subscribers(&self, store: &Store) -> Vec<String> {
        match &self.kind {
            Kind::WxPusher(w) => w.subscribers(store, &self.receiver).await,
            _ => Vec::new(),
        }
    }

    /// Who can answer a message of this integration (its recipients, with `subscribers`),
    /// `None` for kinds no reply comes back from.
    pub fn repliers(&self, subscribers: &[String]) -> Option<Vec<String>> {
        match &self.kind {
            Kind::WxPusher(w) => Some(w.uids.iter().chain(subscribers).cloned().collect()),
            Kind::WeixinGateway(g) => Some(g.to_user_ids.clone()),
            _ => None,
        }
    }

    /// What of `sample` the integration's templates cannot fit in its upstream's fields (the
    /// Official Account's), in words; empty for kinds without such fields.
    pub fn unfit_fields(&self, env: &Env<'_>, sample: &Notification) -> Vec<String> {
        match &self.kind {
            Kind::OfficialAccount(o) => o.unfit_fields(env, sample),
            _ => Vec::new(),
        }
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

    /// The notification as this integration should see it: without resolved alerts when
    /// `send_resolved` is off. `None` when nothing is left to send. When nothing is left out,
    /// the same notification (shared, not copied).
    pub fn filter(&self, n: &Arc<Notification>) -> Option<Arc<Notification>> {
        if self.send_resolved {
            return Some(n.clone());
        }
        // Every alert firing: what `subset` would make is the notification itself.
        if !n.alerts.is_empty()
            && n.status == Status::Firing
            && n.alerts.iter().all(|a| a.status == Status::Firing)
        {
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
            Some(Arc::new(n.subset(firing)))
        }
    }

    /// What a person sees of `requests` (this integration's, as [`Integration::prepare`]
    /// made them): the notification line cut to `max_chars`, the body, the link.
    pub fn preview(&self, requests: &[Outbound], max_chars: usize) -> preview::Preview {
        let mut p = match &self.kind {
            Kind::WxPusher(_) => wxpusher::preview(requests),
            Kind::Console(_) => preview::plain(requests, max_chars),
            Kind::WeixinGateway(_) => weixin_gateway::preview(requests, max_chars),
            Kind::OfficialAccount(_) => official_account::preview(requests, max_chars),
            Kind::WecomRobot(_) => wecom_robot::preview(requests, max_chars),
            Kind::WecomApp(_) => wecom_app::preview(requests, max_chars),
            Kind::Voice(_) => preview::plain(requests, max_chars),
        };
        p.line_chars = crate::text::visible_len(&p.line);
        p
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
            Kind::Voice(v) => Ok(v.prepare(env, n)),
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
            Kind::Voice(v) => v.send(env, n).await,
        }
    }
}

/// Test support: the identity of the integration built from one `*_configs` entry of kind
/// `T`, written as YAML, as the first entry of the first receiver.
#[cfg(test)]
pub(crate) fn identity_of<T: ChannelConfig + serde::de::DeserializeOwned>(entry: &str) -> String {
    let config: T = match yaml_serde::from_str(entry) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    identity_of_config(config)
}

/// Test support: the identity of the integration built from `config`, checked first.
#[cfg(test)]
pub(crate) fn identity_of_config<T: ChannelConfig>(mut config: T) -> String {
    let at = format!("receivers[0].{}_configs[0]", config.kind());
    let globals = Globals {
        summary_max_chars: 100,
        wxpusher_api_url: "https://wxpusher.zjiecode.com".into(),
        wechat_api_url: "https://api.weixin.qq.com".into(),
        wecom_api_url: "https://qyapi.weixin.qq.com".into(),
        callbacks: KINDS.to_vec(),
    };
    let mut errors = Vec::new();
    let mut report = |path: String, message: String| errors.push(format!("{path}: {message}"));
    config.check(&mut Check {
        base: std::path::Path::new("."),
        at: at.clone(),
        globals: &globals,
        report: &mut report,
        secrets: &mut Vec::new(),
    });
    let mut templates = templates(chrono_tz::Asia::Shanghai, Default::default());
    let kind = config.build(&mut Build {
        at,
        globals: &globals,
        upstreams: &state::Upstreams::local(),
        templates: &mut templates,
        report: &mut report,
        uncompiled: &mut Vec::new(),
    });
    assert!(errors.is_empty(), "{errors:?}");
    Integration::identity(&kind).as_str().to_string()
}
