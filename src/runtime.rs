//! A validated configuration turned into the running pieces: compiled templates, the route
//! tree, each receiver's integrations and the upstream HTTP client.
//!
//! A [`Runtime`] is immutable; reloading builds a new one and swaps it in whole, so a request
//! or a delivery always sees one consistent configuration.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

use crate::channels::preview::Preview;
use crate::channels::state::Upstreams;
use crate::channels::{Build, Env, Integration, Outbound};
use crate::config::{Config, ConfigError, ConfigErrors};
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
    /// Person → one integration per contact kind (`oncall.channels` with the person's
    /// recipient), under the receiver name [`contact_receiver`]: where pages go.
    pub contacts: BTreeMap<String, Vec<Integration>>,
    pub scrubber: Scrubber,
    pub client: reqwest::Client,
    /// Long-lived upstream state (token buckets, access tokens), handed in by whoever builds
    /// this configuration and shared with the one before it, so limits and tokens hold across
    /// a reload.
    pub upstreams: Upstreams,
}

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

/// Receiver names starting with this are a person's contacts ([`Runtime::contacts`]); the
/// loader refuses receivers named so.
pub use crate::config::oncall::CONTACT_PREFIX;

/// The receiver name of a person's contacts: what their pages are stored under.
pub fn contact_receiver(person: &str) -> String {
    format!("{CONTACT_PREFIX}{person}")
}

/// A notification's alerts for one receiver.
#[derive(Debug, Clone)]
pub struct Routed {
    pub receiver: String,
    pub notification: Notification,
    /// The escalation policy its groups become incidents under: the route's (inherited down
    /// the tree), else the receiver's own.
    pub policy: Option<String>,
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
        let mut templates = crate::channels::templates(g.timezone, g.locale);
        for e in templates.add_files(&config.templates) {
            report("templates".into(), e.to_string());
        }
        let globals = config.channel_globals();
        // Inline templates that did not compile: said at their place, not again by the sample.
        let mut uncompiled: Vec<String> = Vec::new();
        let mut receivers = BTreeMap::new();
        for (i, r) in config.receivers.iter().enumerate() {
            let mut list = Vec::new();
            for (index, (key, c)) in r.integrations().into_iter().enumerate() {
                let at = format!("receivers[{i}].{key}");
                let delivery = c.delivery_options(&at, &mut |_, _| {});
                let kind = c.build(&mut Build {
                    at,
                    globals: &globals,
                    upstreams: &upstreams,
                    templates: &mut templates,
                    report: &mut report,
                    uncompiled: &mut uncompiled,
                });
                list.push(Integration {
                    receiver: r.name.clone(),
                    id: Integration::identity(&kind),
                    index,
                    send_resolved: c.send_resolved(),
                    fallback_receiver: c.fallback_receiver().cloned(),
                    delivery,
                    kind,
                });
            }
            receivers.insert(r.name.clone(), list);
        }
        let mut contacts: BTreeMap<String, Vec<Integration>> = BTreeMap::new();
        for c in config.oncall.iter().flat_map(|o| &o.contacts) {
            let entry = c.entry.as_channel();
            let delivery = entry.delivery_options(&c.at, &mut |_, _| {});
            let kind = entry.build(&mut Build {
                at: c.at.clone(),
                globals: &globals,
                upstreams: &upstreams,
                templates: &mut templates,
                report: &mut report,
                uncompiled: &mut uncompiled,
            });
            let list = contacts.entry(c.person.clone()).or_default();
            list.push(Integration {
                receiver: contact_receiver(&c.person),
                id: Integration::identity(&kind),
                index: list.len(),
                send_resolved: true,
                fallback_receiver: None,
                delivery,
                kind,
            });
        }
        for e in crate::channels::complete_templates(&mut templates) {
            report("templates".into(), e);
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
        let runtime = Runtime {
            scrubber: Scrubber::new(config.secrets()),
            config,
            templates,
            receivers,
            contacts,
            client,
            upstreams,
        };
        // Every template must render the sample without error before this config may run.
        let sample = sample_notification();
        let env = runtime.env(Utc::now());
        for (name, list) in runtime.receivers.iter().chain(&runtime.contacts) {
            for i in list {
                if let Err(e) = i.prepare(&env, &sample) {
                    // A template that did not compile is missing here: already said, at its
                    // place, above.
                    let said = e.to_string();
                    if uncompiled
                        .iter()
                        .any(|t| said.contains(&format!("not found {t}")))
                    {
                        continue;
                    }
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
        let list = match receiver.strip_prefix(CONTACT_PREFIX) {
            Some(person) => self.contacts.get(person),
            None => self.receivers.get(receiver),
        };
        let Some(list) = list else {
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

    /// The policy of `receiver`'s groups: the route's, else the receiver's own.
    fn receiver_policy(&self, receiver: &str, route: Option<String>) -> Option<String> {
        route.or_else(|| {
            self.config
                .receivers
                .iter()
                .find(|r| r.name == receiver)
                .and_then(|r| r.escalation_policy.clone())
        })
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
                policy: self.receiver_policy(r, None),
            }]);
        }
        let mut by_receiver: Vec<(String, Vec<usize>)> = Vec::new();
        let mut policies: BTreeMap<String, Option<String>> = BTreeMap::new();
        for (i, alert) in n.alerts.iter().enumerate() {
            for (r, policy) in self.config.route.targets_for(&alert.labels) {
                policies.entry(r.clone()).or_insert(policy);
                match by_receiver.iter_mut().find(|(name, _)| *name == r) {
                    Some((_, idx)) => idx.push(i),
                    None => by_receiver.push((r, vec![i])),
                }
            }
        }
        let policy = |r: &str| self.receiver_policy(r, policies.get(r).cloned().flatten());
        // One receiver for the whole group, the usual case: it gets the notification itself,
        // not a copy (a large group is not held twice while it is accepted).
        if by_receiver.len() == 1 && by_receiver[0].1.len() == n.alerts.len() {
            let (receiver, _) = by_receiver.remove(0);
            return Some(vec![Routed {
                policy: policy(&receiver),
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
                        policy: policy(&receiver),
                        receiver,
                        notification,
                    }
                })
                .collect(),
        )
    }
}

/// One integration's requests for `render` and the console, and what a person sees of them.
#[derive(Debug, serde::Serialize)]
pub struct Rendered {
    pub receiver: String,
    /// `kind[position]`.
    pub integration: String,
    pub requests: Vec<Outbound>,
    /// The integration's kind name.
    #[serde(skip)]
    pub kind: &'static str,
    /// What the phone shows ([`Integration::preview`]); the console's, not `render`'s.
    #[serde(skip)]
    pub preview: Preview,
}

/// Why `render` (and `/api/v1/render`) could not render.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    /// The payload is not an Alertmanager or Grafana notification.
    #[error("{0}")]
    Payload(String),
    #[error("unknown receiver {0:?}")]
    UnknownReceiver(String),
    /// A template failed to compile or render: its name and handlebars' message (with the
    /// line and column).
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    #[error("{0}")]
    Other(String),
}

impl Runtime {
    /// The exact requests each routed receiver integration would send for `payload`, secrets
    /// masked, with what a person sees of them: for `render` and `/api/v1/render`.
    pub fn render(
        &self,
        payload: &[u8],
        receiver: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Rendered>, RenderError> {
        let rt = self;
        let n = Notification::parse(payload).map_err(|e| RenderError::Payload(e.to_string()))?;
        let routed = rt
            .route(n, receiver)
            .ok_or_else(|| RenderError::UnknownReceiver(receiver.unwrap_or("").to_string()))?;
        let env = rt.env(now);
        let mut out = Vec::new();
        for r in routed {
            let notification = std::sync::Arc::new(r.notification);
            for i in rt.receivers.get(&r.receiver).into_iter().flatten() {
                let Some(n) = i.filter(&notification) else {
                    continue;
                };
                out.push(rt.render_one(&env, i, &n, &r.receiver)?);
            }
        }
        Ok(out)
    }

    /// What `i` (of `receiver`) would send for `n`, secrets masked, and its preview.
    pub fn render_one(
        &self,
        env: &Env<'_>,
        i: &Integration,
        n: &Notification,
        receiver: &str,
    ) -> Result<Rendered, RenderError> {
        let mut requests = i.prepare(env, n).map_err(|e| match e {
            crate::channels::error::DeliveryError::Render(t) => RenderError::Template(t),
            e => RenderError::Other(self.scrubber.scrub(&e.to_string())),
        })?;
        for req in &mut requests {
            self.scrubber.scrub_json(&mut req.body);
            req.url = self.scrubber.scrub(&req.url);
        }
        let preview = i.preview(&requests, self.config.global.summary_max_chars);
        Ok(Rendered {
            receiver: receiver.to_string(),
            integration: format!("{}[{}]", i.name(), i.index),
            requests,
            kind: i.name(),
            preview,
        })
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
