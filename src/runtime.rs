//! A validated configuration turned into the running pieces: compiled templates, the route
//! tree, each receiver's integrations and the upstream HTTP client.
//!
//! A [`Runtime`] is immutable; reloading builds a new one and swaps it in whole, so a request
//! or a delivery always sees one consistent configuration.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

use crate::channels::official_account::OfficialAccount;
use crate::channels::options::DEFAULT_DAILY_BUDGET_PER_UID;
use crate::channels::state::Upstreams;
use crate::channels::weixin_gateway::WeixinGateway;
use crate::channels::wxpusher::spt::Spt;
use crate::channels::{Env, Integration, Kind, console::Console, wxpusher::WxPusher};
use crate::config::{Config, ConfigError, ConfigErrors, ContentType};
use crate::secret::Scrubber;
use crate::store::IntegrationId;
use crate::template::Templates;
use crate::webhook::Notification;
pub use crate::webhook::sample_notification;

/// The configuration in force, swapped whole on reload.
pub type Shared = Arc<ArcSwap<Runtime>>;

#[derive(Debug)]
pub struct Runtime {
    pub config: Config,
    pub templates: Templates,
    /// Receiver name → its integrations, in config order.
    pub receivers: BTreeMap<String, Vec<Integration>>,
    pub scrubber: Scrubber,
    pub client: reqwest::Client,
    /// Long-lived upstream state (token buckets, access tokens), handed in by whoever builds
    /// this configuration and shared with the one before it, so limits and tokens hold across
    /// a reload.
    pub upstreams: Upstreams,
}

/// The Official Account `data` used when a config gives none: the keys of the most common
/// alert template layout, filled with the shipped `official_account.*` templates.
pub const DEFAULT_OA_DATA: &[(&str, &str)] = &[
    ("thing1", "official_account.title"),
    ("time2", "official_account.time"),
    ("phrase3", "official_account.status"),
];

/// What a stored delivery's integration identity names in the configuration in force.
#[derive(Debug, Clone, Copy)]
pub enum Bound<'a> {
    /// The same identity, wherever it now sits in the receiver's list.
    Integration(&'a Integration),
    /// The receiver is still there but no integration has that identity any more (its
    /// credential or recipients changed): the receiver's current integrations.
    Changed(&'a [Integration]),
    /// The receiver was removed.
    ReceiverGone,
}

/// A notification's alerts for one receiver.
#[derive(Debug, Clone)]
pub struct Routed {
    pub receiver: String,
    pub notification: Notification,
}

/// Installs the TLS crypto provider once per process; later calls are no-ops.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Runtime {
    /// Compiles `config` with state of its own: for the command line and tests.
    pub fn build(config: Config) -> Result<Runtime, ConfigErrors> {
        Runtime::build_with(config, Upstreams::local())
    }

    /// Compiles `config` with the service's long-lived upstream state.
    pub fn build_with(config: Config, upstreams: Upstreams) -> Result<Runtime, ConfigErrors> {
        let file = config.source.clone();
        let mut errors = Vec::new();
        let mut report = |path: String, message: String| {
            errors.push(ConfigError {
                file: file.clone(),
                path,
                message,
            })
        };
        let g = &config.global;
        let mut templates = Templates::new(g.timezone, g.locale);
        for e in templates.add_files(&config.templates) {
            report("templates".into(), e.to_string());
        }
        // Inline templates are compiled under their YAML path, so errors point there.
        let mut inline = |path: String, src: &Option<String>, default: &str| -> String {
            match src {
                None => default.to_string(),
                Some(src) => {
                    if let Err(e) = templates.add(&path, src) {
                        report(path.clone(), e.message);
                    }
                    path
                }
            }
        };
        let gateway_callback = config.chatops.as_ref().is_some_and(|c| {
            c.weixin_gateway_secret.is_some() || c.weixin_gateway_secret_file.is_some()
        });
        let mut receivers = BTreeMap::new();
        for (i, r) in config.receivers.iter().enumerate() {
            let mut list = Vec::new();
            for (j, w) in r.wxpusher_configs.iter().enumerate() {
                let at = format!("receivers[{i}].wxpusher_configs[{j}]");
                let default_content = match w.content_type {
                    ContentType::Markdown => "wxpusher.content",
                    ContentType::Html => "wxpusher.html",
                    ContentType::Text => "wxpusher.text",
                };
                let kind = Kind::WxPusher(WxPusher {
                    api_url: w
                        .api_url
                        .clone()
                        .unwrap_or_else(|| g.wxpusher_api_url.clone()),
                    app_token: w.app_token.clone().unwrap_or_default(),
                    spts: w.spts.iter().cloned().map(Spt::new).collect(),
                    uids: w.uids.clone(),
                    topic_ids: w.topic_ids.clone(),
                    subscriber_tags: w.subscriber_tags.clone(),
                    content_type: w.content_type,
                    summary: inline(format!("{at}.summary"), &w.summary, "wxpusher.summary"),
                    content: inline(format!("{at}.content"), &w.content, default_content),
                    url: inline(format!("{at}.url"), &w.url, "wxpusher.url"),
                    summary_max: g.summary_max_chars,
                    rate_limit: w.delivery_options(&at, &mut |_, _| {}).rate_limit,
                    daily_budget: w
                        .daily_budget_per_uid
                        .unwrap_or(DEFAULT_DAILY_BUDGET_PER_UID)
                        .max(1),
                });
                let delivery = w.delivery_options(&at, &mut |_, _| {});
                list.push((w.send_resolved, w.fallback_receiver.clone(), delivery, kind));
            }
            for (j, c) in r.console_configs.iter().enumerate() {
                let at = format!("receivers[{i}].console_configs[{j}]");
                let kind = Kind::Console(Console {
                    summary: "wxpusher.summary".into(),
                    text: inline(format!("{at}.text"), &c.text, "console.text"),
                    summary_max: g.summary_max_chars,
                });
                let delivery = c.delivery_options(&at, &mut |_, _| {});
                list.push((c.send_resolved, c.fallback_receiver.clone(), delivery, kind));
            }
            for (j, w) in r.weixin_gateway_configs.iter().enumerate() {
                let at = format!("receivers[{i}].weixin_gateway_configs[{j}]");
                let kind = Kind::WeixinGateway(WeixinGateway {
                    url: w.url.clone(),
                    account_id: w.account_id.clone(),
                    to_user_ids: w.to_user_ids.clone(),
                    context_token: w.context_token.clone().unwrap_or_default(),
                    bearer_token: w.bearer_token.clone(),
                    text: inline(format!("{at}.text"), &w.text, "gateway.text"),
                    user_backoff: w.user_backoff,
                    health_interval: w.health_interval,
                    rate_limit: w.delivery_options(&at, &mut |_, _| {}).rate_limit,
                    window_size: w.window_size,
                    window_warn_at: w.window_warn_at,
                    replies_seen: gateway_callback,
                });
                let delivery = w.delivery_options(&at, &mut |_, _| {});
                list.push((w.send_resolved, w.fallback_receiver.clone(), delivery, kind));
            }
            for (j, o) in r.official_account_configs.iter().enumerate() {
                let at = format!("receivers[{i}].official_account_configs[{j}]");
                let api_url = o
                    .api_url
                    .clone()
                    .unwrap_or_else(|| g.wechat_api_url.clone());
                let data = match &o.data {
                    Some(map) => map
                        .iter()
                        .map(|(k, src)| {
                            (
                                k.clone(),
                                inline(format!("{at}.data.{k}"), &Some(src.clone()), ""),
                            )
                        })
                        .collect(),
                    None => DEFAULT_OA_DATA
                        .iter()
                        .map(|(k, name)| (k.to_string(), name.to_string()))
                        .collect(),
                };
                // Tokens outlive this runtime: the cache is the service's, keyed by app.
                let tokens = upstreams.tokens.source(
                    &api_url,
                    &o.app_id,
                    o.app_secret.clone().unwrap_or_default(),
                    o.token_endpoint,
                    o.token_min_interval,
                );
                let kind = Kind::OfficialAccount(OfficialAccount {
                    api_url,
                    app_id: o.app_id.clone(),
                    kind: o.kind,
                    template_id: o.template_id.clone(),
                    to_openids: o.to_openids.clone(),
                    url: inline(format!("{at}.url"), &o.url, "official_account.url"),
                    miniprogram: o.miniprogram.clone(),
                    data,
                    max_concurrency: o.max_concurrency,
                    tokens,
                    rate_limit: o.delivery_options(&at, &mut |_, _| {}).rate_limit,
                });
                let delivery = o.delivery_options(&at, &mut |_, _| {});
                list.push((o.send_resolved, o.fallback_receiver.clone(), delivery, kind));
            }
            for (j, w) in r.wecom_robot_configs.iter().enumerate() {
                let at = format!("receivers[{i}].wecom_robot_configs[{j}]");
                use crate::channels::wecom_robot::{RobotMsgType, WecomRobot};
                let default_content = match w.msgtype {
                    RobotMsgType::Markdown => "wecom.markdown",
                    RobotMsgType::MarkdownV2 => "wecom.markdown_v2",
                    RobotMsgType::Text => "wecom.text",
                };
                let mut mention = |key: &str, list: &[String]| -> Vec<String> {
                    list.iter()
                        .enumerate()
                        .map(|(k, src)| inline(format!("{at}.{key}[{k}]"), &Some(src.clone()), ""))
                        .collect()
                };
                let mentioned_list = mention("mentioned_list", &w.mentioned_list);
                let mentioned_mobiles = mention("mentioned_mobiles", &w.mentioned_mobiles);
                let delivery = w.delivery_options(&at, &mut |_, _| {});
                let kind = Kind::WecomRobot(WecomRobot {
                    api_url: w.api_url.clone().unwrap_or_else(|| g.wecom_api_url.clone()),
                    key: w.key.clone().unwrap_or_default(),
                    msgtype: w.msgtype,
                    content: inline(format!("{at}.content"), &w.content, default_content),
                    summary: "wecom.summary".into(),
                    mentioned_list,
                    mentioned_mobiles,
                    summary_max: g.summary_max_chars,
                    rate_limit: delivery.rate_limit,
                });
                list.push((w.send_resolved, w.fallback_receiver.clone(), delivery, kind));
            }
            for (j, w) in r.wecom_app_configs.iter().enumerate() {
                let at = format!("receivers[{i}].wecom_app_configs[{j}]");
                use crate::channels::wecom_app::{AppMsgType, WecomApp};
                let api_url = w.api_url.clone().unwrap_or_else(|| g.wecom_api_url.clone());
                // Tokens outlive this runtime: the cache is the service's, per (corp, secret).
                let tokens = upstreams.wecom_tokens.source(
                    &api_url,
                    &w.corp_id,
                    w.api_secret.clone().unwrap_or_default(),
                );
                let default_content = match w.msgtype {
                    AppMsgType::Markdown => "wecom.markdown",
                    _ => "wecom.text",
                };
                let mut target = |key: &str, src: &Option<String>| {
                    src.as_ref()
                        .map(|s| inline(format!("{at}.{key}"), &Some(s.clone()), ""))
                };
                let (to_user, to_party, to_tag) = (
                    target("to_user", &w.to_user),
                    target("to_party", &w.to_party),
                    target("to_tag", &w.to_tag),
                );
                let delivery = w.delivery_options(&at, &mut |_, _| {});
                let kind = Kind::WecomApp(WecomApp {
                    api_url,
                    corp_id: w.corp_id.clone(),
                    agent_id: w.agent_id,
                    to_user,
                    to_party,
                    to_tag,
                    msgtype: w.msgtype,
                    content: inline(format!("{at}.content"), &w.content, default_content),
                    summary: "wecom.summary".into(),
                    title: inline(format!("{at}.title"), &w.title, "wecom.textcard.title"),
                    description: inline(
                        format!("{at}.description"),
                        &w.description,
                        "wecom.textcard.description",
                    ),
                    url: inline(format!("{at}.url"), &w.url, "wxpusher.url"),
                    btntxt: w.btntxt.clone(),
                    duplicate_check_interval: w.duplicate_check_interval.as_secs().max(1),
                    summary_max: g.summary_max_chars,
                    tokens,
                    rate_limit: delivery.rate_limit,
                });
                list.push((w.send_resolved, w.fallback_receiver.clone(), delivery, kind));
            }
            let integrations = list
                .into_iter()
                .enumerate()
                .map(
                    |(index, (send_resolved, fallback_receiver, delivery, kind))| Integration {
                        receiver: r.name.clone(),
                        id: Integration::identity(&kind),
                        index,
                        send_resolved,
                        fallback_receiver,
                        delivery,
                        kind,
                    },
                )
                .collect();
            receivers.insert(r.name.clone(), integrations);
        }
        // The link template defaults to the sender's external URL.
        if !templates.has("wxpusher.url")
            && let Err(e) = templates.add("wxpusher.url", "{{externalURL}}")
        {
            report("templates".into(), e.to_string());
        }
        // Partial cycles, and nesting or size over the limits, show only with every template.
        for e in templates.refused() {
            report("templates".into(), e.to_string());
        }
        install_tls_provider();
        let client = match reqwest::Client::builder()
            .timeout(g.http_timeout)
            .connect_timeout(g.http_timeout.min(std::time::Duration::from_secs(5)))
            .user_agent(concat!("alertmanager-wechat/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                report(String::new(), format!("cannot build the HTTP client: {e}"));
                reqwest::Client::new()
            }
        };
        let mut secrets = config.secrets();
        for list in receivers.values() {
            for i in list {
                secrets.extend(Integration::secrets(i));
            }
        }
        let runtime = Runtime {
            scrubber: Scrubber::new(secrets),
            config,
            templates,
            receivers,
            client,
            upstreams,
        };
        // Every template must render the sample without error before this config may run.
        let sample = sample_notification();
        let env = runtime.env(Utc::now());
        for (name, list) in &runtime.receivers {
            for i in list {
                if let Err(e) = i.prepare(&env, &sample) {
                    report(
                        format!("receivers[{name}]"),
                        format!(
                            "{} integration does not render a sample notification: {e}",
                            i.name()
                        ),
                    );
                }
            }
        }
        if errors.is_empty() {
            Ok(runtime)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    pub fn env(&self, now: DateTime<Utc>) -> Env<'_> {
        Env {
            templates: &self.templates,
            now,
            client: &self.client,
            scrubber: &self.scrubber,
            limits: &self.upstreams.limits,
            upstreams: &self.upstreams,
            subscribers: &[],
            store: None,
            metrics: None,
        }
    }

    /// Where a stored delivery for `receiver` bound to `id` goes now (see [`Bound`]).
    pub fn resolve(&self, receiver: &str, id: &IntegrationId) -> Bound<'_> {
        let Some(list) = self.receivers.get(receiver) else {
            return Bound::ReceiverGone;
        };
        if let Some(i) = list.iter().find(|i| &i.id == id) {
            return Bound::Integration(i);
        }
        // A job stored by a version that named integrations by position.
        if let Some(i) = id.legacy_index().and_then(|n| list.get(n)) {
            return Bound::Integration(i);
        }
        Bound::Changed(list)
    }

    /// The integration `id` names in `receiver`, if it is still configured.
    pub fn integration(&self, receiver: &str, id: &IntegrationId) -> Option<&Integration> {
        match self.resolve(receiver, id) {
            Bound::Integration(i) => Some(i),
            _ => None,
        }
    }

    /// Splits a notification by receiver: to the named one, or through the route tree, each
    /// receiver getting only the alerts routed to it. `None` if the named receiver is unknown.
    pub fn route(&self, n: Notification, receiver: Option<&str>) -> Option<Vec<Routed>> {
        if let Some(r) = receiver {
            if !self.receivers.contains_key(r) {
                return None;
            }
            return Some(vec![Routed {
                receiver: r.to_string(),
                notification: n,
            }]);
        }
        let mut by_receiver: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, alert) in n.alerts.iter().enumerate() {
            for r in self.config.route.receivers_for(&alert.labels) {
                match by_receiver.iter_mut().find(|(name, _)| *name == r) {
                    Some((_, idx)) => idx.push(i),
                    None => by_receiver.push((r, vec![i])),
                }
            }
        }
        // One receiver for the whole group, the usual case: it gets the notification itself,
        // not a copy (a large group is not held twice while it is accepted).
        if by_receiver.len() == 1 && by_receiver[0].1.len() == n.alerts.len() {
            let (receiver, _) = by_receiver.remove(0);
            return Some(vec![Routed {
                receiver,
                notification: n,
            }]);
        }
        Some(
            by_receiver
                .into_iter()
                .map(|(receiver, idx)| {
                    let notification = if idx.len() == n.alerts.len() {
                        n.clone()
                    } else {
                        n.subset(idx.iter().map(|&i| n.alerts[i].clone()).collect())
                    };
                    Routed {
                        receiver,
                        notification,
                    }
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_parses() {
        assert_eq!(sample_notification().alerts.len(), 2);
    }

    #[test]
    fn bad_inline_template_is_a_config_error_at_its_path() {
        let c = Config::parse(
            "route: {receiver: a}\nreceivers:\n  - name: a\n    console_configs: [{text: '{{#if x}}'}]\n",
            "t.yml",
            std::path::Path::new("."),
        )
        .unwrap();
        let e = Runtime::build(c).unwrap_err();
        assert!(
            e.0[0]
                .to_string()
                .starts_with("t.yml: receivers[0].console_configs[0].text: "),
            "{e}"
        );
    }

    #[test]
    fn routing_splits_alerts_by_receiver() {
        let c = Config::parse(
            "route:\n  receiver: a\n  routes:\n    - matchers: ['severity=\"critical\"']\n      receiver: b\n      continue: true\nreceivers: [{name: a, console_configs: [{}]}, {name: b, console_configs: [{}]}]\n",
            "t.yml",
            std::path::Path::new("."),
        )
        .unwrap();
        let rt = Runtime::build(c).unwrap();
        let routed = rt.route(sample_notification(), None).unwrap();
        let names: Vec<(&str, usize)> = routed
            .iter()
            .map(|r| (r.receiver.as_str(), r.notification.alerts.len()))
            .collect();
        // The critical alert goes to b (and, as in Alertmanager, not also to the root's a);
        // the warning only to a.
        assert_eq!(names, [("b", 1), ("a", 1)]);
        assert!(rt.route(sample_notification(), Some("zzz")).is_none());
    }
}
