//! The `chatops:` block of the configuration and its validation.
//!
//! The `chatops:` section: its types and checks. Kept with the loader, below everything that
//! uses it, so that [`crate::chatops`] can read the running configuration.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{check_http_url, resolve_secret};
use crate::secret::Secret;

/// Shortest callback secret accepted: it is the only credential of the WxPusher callback.
pub const MIN_CALLBACK_SECRET: usize = 16;

/// Replies from WeChat: where silences go, how callbacks are authenticated, who may act.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatopsConfig {
    /// Base URL of the Alertmanager whose API v2 receives silences.
    pub alertmanager_url: String,
    /// The path segment of `POST /callback/wxpusher/{secret}` (WxPusher signs nothing).
    pub wxpusher_callback_secret: Option<Secret>,
    pub wxpusher_callback_secret_file: Option<PathBuf>,
    /// weixin-gateway's `UPSTREAM_SHARED_SECRET`, sent as `Authorization: Bearer …`.
    pub weixin_gateway_secret: Option<Secret>,
    pub weixin_gateway_secret_file: Option<PathBuf>,
    /// Who may run commands, per reply channel; others are refused. See [`Allowed`].
    #[serde(default)]
    pub allowed: Allowed,
    /// Subscriber enrolments (`app_subscribe` callbacks) accepted per callback secret per
    /// hour; past it they are refused (and counted as `result="enrol_capped"`), so that a
    /// leaked callback URL cannot enrol an unbounded audience for the next alert.
    #[serde(default = "default_max_subscribers_per_hour")]
    pub max_subscribers_per_hour: u32,
}

fn default_max_subscribers_per_hour() -> u32 {
    100
}

/// The channel a command arrived through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `POST /callback/wxpusher/{secret}`: the user is a WxPusher UID.
    WxPusher,
    /// `POST /callback/weixin-gateway`: the user is a gateway user id.
    WeixinGateway,
}

impl Channel {
    /// The channel of a channel kind ([`crate::channels::KINDS`]) commands can arrive through.
    pub fn of_kind(kind: &str) -> Option<Channel> {
        use crate::channels::{weixin_gateway, wxpusher};
        match kind {
            wxpusher::KIND => Some(Channel::WxPusher),
            weixin_gateway::KIND => Some(Channel::WeixinGateway),
            _ => None,
        }
    }

    /// The channel an id's shape says it belongs to: WxPusher UIDs start with `UID_`, gateway
    /// (WeChat iLink) user ids end with `@im.wechat`; `None` for any other id.
    pub fn of(id: &str) -> Option<Channel> {
        if id.starts_with("UID_") {
            Some(Channel::WxPusher)
        } else if id.ends_with("@im.wechat") {
            Some(Channel::WeixinGateway)
        } else {
            None
        }
    }
}

/// `chatops.allowed`: ids allowed to run commands, each valid on one channel only, so that a
/// gateway user id cannot act through the WxPusher callback, nor a UID through the gateway.
///
/// Two forms:
/// - a list (`allowed: [UID_xxx, user@im.wechat]`, the original form, still accepted): each
///   entry belongs to the channel its shape names — `UID_…` to WxPusher, `…@im.wechat` to
///   weixin-gateway. An entry of neither shape is accepted on both channels, as before, and
///   `check-config` warns about it;
/// - a map naming the channel of each id:
///   `allowed: { wxpusher: [UID_xxx], weixin_gateway: [user@im.wechat] }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    List(Vec<String>),
    PerChannel(AllowedPerChannel),
}

/// The map form of [`Allowed`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedPerChannel {
    /// WxPusher UIDs allowed through the WxPusher callback.
    #[serde(default)]
    pub wxpusher: Vec<String>,
    /// Gateway user ids allowed through the weixin-gateway callback.
    #[serde(default)]
    pub weixin_gateway: Vec<String>,
}

impl Default for Allowed {
    fn default() -> Allowed {
        Allowed::List(Vec::new())
    }
}

impl<'de> Deserialize<'de> for Allowed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Allowed, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Allowed;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of ids, or a map with wxpusher and weixin_gateway lists")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Allowed, A::Error> {
                Vec::<String>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(Allowed::List)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Allowed, A::Error> {
                AllowedPerChannel::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Allowed::PerChannel)
            }
        }
        d.deserialize_any(V)
    }
}

impl Allowed {
    /// Whether `user`, arriving through `channel`, may run commands.
    pub fn permits(&self, channel: Channel, user: &str) -> bool {
        match self {
            Allowed::List(ids) => ids
                .iter()
                .any(|a| a == user && Channel::of(a).is_none_or(|c| c == channel)),
            Allowed::PerChannel(p) => match channel {
                Channel::WxPusher => p.wxpusher.iter().any(|a| a == user),
                Channel::WeixinGateway => p.weixin_gateway.iter().any(|a| a == user),
            },
        }
    }

    /// Every entry with its path under `chatops.allowed`.
    fn entries(&self) -> Vec<(String, &str)> {
        match self {
            Allowed::List(ids) => ids
                .iter()
                .enumerate()
                .map(|(k, id)| (format!("[{k}]"), id.as_str()))
                .collect(),
            Allowed::PerChannel(p) => p
                .wxpusher
                .iter()
                .enumerate()
                .map(|(k, id)| (format!(".wxpusher[{k}]"), id.as_str()))
                .chain(
                    p.weixin_gateway
                        .iter()
                        .enumerate()
                        .map(|(k, id)| (format!(".weixin_gateway[{k}]"), id.as_str())),
                )
                .collect(),
        }
    }
}

impl ChatopsConfig {
    /// The channel kinds whose inbound callback is configured (a secret or its file given).
    pub fn callbacks(&self) -> Vec<&'static str> {
        use crate::channels::{weixin_gateway, wxpusher};
        let mut out = Vec::new();
        if self.wxpusher_callback_secret.is_some() || self.wxpusher_callback_secret_file.is_some() {
            out.push(wxpusher::KIND);
        }
        if self.weixin_gateway_secret.is_some() || self.weixin_gateway_secret_file.is_some() {
            out.push(weixin_gateway::KIND);
        }
        out
    }

    /// The secret of channel `kind`'s callback, when it is configured (read from its file once
    /// the configuration is loaded).
    pub fn callback_secret(&self, kind: &str) -> Option<&Secret> {
        use crate::channels::{weixin_gateway, wxpusher};
        match kind {
            wxpusher::KIND => self.wxpusher_callback_secret.as_ref(),
            weixin_gateway::KIND => self.weixin_gateway_secret.as_ref(),
            _ => None,
        }
    }

    /// Reads the `*_file` secrets and checks the block; problems go to `report`.
    pub fn resolve(&mut self, base: &Path, report: &mut dyn FnMut(String, String)) {
        let at = "chatops";
        if let Err(m) = check_http_url(&self.alertmanager_url) {
            report(format!("{at}.alertmanager_url"), m);
        }
        for (key, value, file) in [
            (
                "wxpusher_callback_secret",
                &mut self.wxpusher_callback_secret,
                &self.wxpusher_callback_secret_file,
            ),
            (
                "weixin_gateway_secret",
                &mut self.weixin_gateway_secret,
                &self.weixin_gateway_secret_file,
            ),
        ] {
            resolve_secret(base, at, key, value, file, false, report);
            let Some(s) = value else { continue };
            let s = s.expose();
            if s.len() < MIN_CALLBACK_SECRET {
                report(
                    format!("{at}.{key}"),
                    format!("must be at least {MIN_CALLBACK_SECRET} characters"),
                );
            } else if !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
            {
                // The WxPusher secret is a URL path segment; the same rule keeps both simple.
                report(
                    format!("{at}.{key}"),
                    "may only contain letters, digits and - _ . ~".into(),
                );
            }
        }
        if self.wxpusher_callback_secret.is_none()
            && self.wxpusher_callback_secret_file.is_none()
            && self.weixin_gateway_secret.is_none()
            && self.weixin_gateway_secret_file.is_none()
        {
            report(
                at.into(),
                "needs wxpusher_callback_secret or weixin_gateway_secret (or a _file twin): without one no reply can arrive".into(),
            );
        }
        let entries = self.allowed.entries();
        if entries.is_empty() {
            report(
                format!("{at}.allowed"),
                "needs at least one WxPusher UID or gateway user id".into(),
            );
        }
        for (k, u) in entries {
            if u.trim().is_empty() {
                report(format!("{at}.allowed{k}"), "must not be empty".into());
            }
        }
        if self.max_subscribers_per_hour == 0 {
            report(
                format!("{at}.max_subscribers_per_hour"),
                "must be at least 1".into(),
            );
        }
    }

    /// The callback secrets, for scrubbing text.
    pub fn secrets(&self) -> Vec<Secret> {
        self.wxpusher_callback_secret
            .iter()
            .chain(&self.weixin_gateway_secret)
            .cloned()
            .collect()
    }

    /// Whether `user`, arriving through `channel`, may run commands.
    pub fn is_allowed(&self, channel: Channel, user: &str) -> bool {
        self.allowed.permits(channel, user)
    }
}

pub use crate::channels::wxpusher::config::MAX_TAG;

/// A callback that is configured although no integration can answer on its channel: valid,
/// but every reply would be lost. Printed by `check-config`.
pub fn warnings(config: &crate::config::Config) -> Vec<String> {
    let Some(c) = &config.chatops else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let any = |f: fn(&crate::config::ReceiverConfig) -> bool| config.receivers.iter().any(f);
    if c.wxpusher_callback_secret.is_some() && !any(|r| !r.wxpusher_configs.is_empty()) {
        out.push(format!(
            "{}: chatops.wxpusher_callback_secret: warning: no receiver has wxpusher_configs, so commands from WxPusher cannot be answered",
            config.source
        ));
    }
    if let Allowed::List(ids) = &c.allowed {
        for (k, id) in ids.iter().enumerate() {
            if !id.trim().is_empty() && Channel::of(id).is_none() {
                out.push(format!(
                    "{}: chatops.allowed[{k}]: warning: neither a WxPusher UID (UID_…) nor a gateway user id (…@im.wechat), so it is allowed on both channels; name its channel with allowed: {{wxpusher: [...], weixin_gateway: [...]}}",
                    config.source
                ));
            }
        }
    }
    if c.weixin_gateway_secret.is_some() && !any(|r| !r.weixin_gateway_configs.is_empty()) {
        out.push(format!(
            "{}: chatops.weixin_gateway_secret: warning: no receiver has weixin_gateway_configs, so commands from the gateway cannot be answered",
            config.source
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    #[test]
    fn a_callback_nobody_can_answer_is_warned_about() {
        let c = Config::parse(
            "chatops: {alertmanager_url: 'http://am', weixin_gateway_secret: gateway-secret-0123456789, wxpusher_callback_secret: wxpusher-secret-0123456789, allowed: [UID_a]}\nroute: {receiver: a}\nreceivers:\n  - name: a\n    wxpusher_configs: [{app_token: AT_x, uids: [U]}]\n",
            "c.yml",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            super::warnings(&c),
            [
                "c.yml: chatops.weixin_gateway_secret: warning: no receiver has weixin_gateway_configs, so commands from the gateway cannot be answered"
            ]
        );
    }
}

#[cfg(test)]
mod allowed_tests {
    use std::path::Path;

    use super::{Allowed, Channel};
    use crate::config::Config;

    fn chatops(allowed: &str) -> Result<Config, String> {
        Config::parse(
            &format!("chatops: {{alertmanager_url: 'http://am', wxpusher_callback_secret: wxpusher-secret-0123456789, allowed: {allowed}}}\nroute: {{receiver: a}}\nreceivers: [{{name: a, wxpusher_configs: [{{app_token: AT_x, uids: [UID_a]}}]}}]\n"),
            "c.yml",
            Path::new("."),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn list_entries_belong_to_the_channel_their_shape_names() {
        let a = Allowed::List(vec!["UID_a".into(), "u@im.wechat".into(), "legacy".into()]);
        assert!(a.permits(Channel::WxPusher, "UID_a"));
        assert!(!a.permits(Channel::WeixinGateway, "UID_a"));
        assert!(a.permits(Channel::WeixinGateway, "u@im.wechat"));
        assert!(!a.permits(Channel::WxPusher, "u@im.wechat"));
        // Neither shape: both channels, as before (and warned about).
        assert!(
            a.permits(Channel::WxPusher, "legacy") && a.permits(Channel::WeixinGateway, "legacy")
        );
        assert!(!a.permits(Channel::WxPusher, "UID_b"));
    }

    #[test]
    fn the_map_form_names_each_ids_channel() {
        let c = chatops("{wxpusher: [UID_a, odd], weixin_gateway: [u@im.wechat]}").unwrap();
        let chat = c.chatops.as_ref().unwrap();
        assert!(chat.is_allowed(Channel::WxPusher, "odd"));
        assert!(!chat.is_allowed(Channel::WeixinGateway, "odd"));
        assert!(!chat.is_allowed(Channel::WxPusher, "u@im.wechat"));
        assert!(chat.is_allowed(Channel::WeixinGateway, "u@im.wechat"));
        assert!(super::warnings(&c).is_empty(), "{:?}", super::warnings(&c));
        assert_eq!(
            chatops("{wxpusher: ['']}").unwrap_err(),
            "c.yml: chatops.allowed.wxpusher[0]: must not be empty"
        );
        assert!(
            chatops("{wechat: [x]}")
                .unwrap_err()
                .starts_with("c.yml: chatops.allowed.wechat: unknown field `wechat`"),
        );
        assert!(chatops("{}").unwrap_err().contains(
            "c.yml: chatops.allowed: needs at least one WxPusher UID or gateway user id"
        ));
        let c = chatops("[UID_a]").unwrap();
        assert_eq!(c.chatops.as_ref().unwrap().max_subscribers_per_hour, 100);
        let e = Config::parse(
            "chatops: {alertmanager_url: 'http://am', wxpusher_callback_secret: wxpusher-secret-0123456789, allowed: [UID_a], max_subscribers_per_hour: 0}\nroute: {receiver: a}\nreceivers: [{name: a}]\n",
            "c.yml",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "c.yml: chatops.max_subscribers_per_hour: must be at least 1"
        );
        let c = chatops("[UID_a, legacy]").unwrap();
        assert_eq!(
            super::warnings(&c),
            [
                "c.yml: chatops.allowed[1]: warning: neither a WxPusher UID (UID_…) nor a gateway user id (…@im.wechat), so it is allowed on both channels; name its channel with allowed: {wxpusher: [...], weixin_gateway: [...]}"
            ]
        );
    }
}
