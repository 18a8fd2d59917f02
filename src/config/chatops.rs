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
    /// WxPusher UIDs and gateway user ids that may run commands; others are refused.
    #[serde(default)]
    pub allowed: Vec<String>,
}

impl ChatopsConfig {
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
        if self.allowed.is_empty() {
            report(
                format!("{at}.allowed"),
                "needs at least one WxPusher UID or gateway user id".into(),
            );
        }
        for (k, u) in self.allowed.iter().enumerate() {
            if u.trim().is_empty() {
                report(format!("{at}.allowed[{k}]"), "must not be empty".into());
            }
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

    pub fn is_allowed(&self, user: &str) -> bool {
        self.allowed.iter().any(|a| a == user)
    }
}

/// Longest `extra` WxPusher accepts on a QR code, so the longest tag that can match one.
pub const MAX_TAG: usize = 64;

/// A WxPusher config's `subscriber_tags`: non-empty, at most 64 characters, and only useful
/// when WxPusher's callback can tell who subscribed.
pub fn check_subscriber_tags(
    at: &str,
    tags: &[String],
    chatops: Option<&ChatopsConfig>,
    report: &mut dyn FnMut(String, String),
) {
    for (k, t) in tags.iter().enumerate() {
        if t.trim().is_empty() || t.chars().count() > MAX_TAG {
            report(
                format!("{at}.subscriber_tags[{k}]"),
                format!("must be 1 to {MAX_TAG} characters"),
            );
        }
    }
    let has_callback = chatops.is_some_and(|c| {
        c.wxpusher_callback_secret.is_some() || c.wxpusher_callback_secret_file.is_some()
    });
    if !tags.is_empty() && !has_callback {
        report(
            format!("{at}.subscriber_tags"),
            "needs chatops.wxpusher_callback_secret: subscribers are learned from WxPusher's callback".into(),
        );
    }
}

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
            "chatops: {alertmanager_url: 'http://am', weixin_gateway_secret: gateway-secret-0123456789, wxpusher_callback_secret: wxpusher-secret-0123456789, allowed: [U]}\nroute: {receiver: a}\nreceivers:\n  - name: a\n    wxpusher_configs: [{app_token: AT_x, uids: [U]}]\n",
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
