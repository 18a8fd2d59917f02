//! The `official_account_configs` entries of a receiver: the YAML keys and their defaults, the
//! checks serde cannot make (reading the `*_file` secret), the warnings `check-config` prints
//! and the integration built from an entry.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::fields::{DEFAULT_MAX, FieldType};
use super::token::TokenEndpoint;
use super::{DEFAULT_DATA, MiniProgramConfig, OfficialAccount, OfficialAccountKind};
use crate::channels::options::{RateLimit, common_keys, default_true};
use crate::channels::{Build, ChannelConfig, Check, Kind, check_http_url};
use crate::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficialAccountConfig {
    /// The Service Account's AppID (`wx…`).
    pub app_id: String,
    /// AppSecret; exactly one of this and `app_secret_file`.
    pub app_secret: Option<Secret>,
    pub app_secret_file: Option<PathBuf>,
    /// The server URL's Token (基本配置 → 服务器配置): `/callback/official-account` checks
    /// pushes with it (delivery reports of template messages).
    pub callback_token: Option<Secret>,
    pub callback_token_file: Option<PathBuf>,
    /// The EncodingAESKey, for safe (or compatible) mode.
    pub callback_aes_key: Option<Secret>,
    pub callback_aes_key_file: Option<PathBuf>,
    #[serde(default)]
    pub kind: OfficialAccountKind,
    /// The template's id as the platform shows it.
    pub template_id: String,
    pub to_openids: Vec<String>,
    /// Tap-through link template (`page` for subscribe notifications); `{{externalURL}}` when
    /// absent, none when it renders empty.
    pub url: Option<String>,
    pub miniprogram: Option<MiniProgramConfig>,
    /// Field key → template. The key's type prefix (`thing`, `time`, …) sets the value rules.
    /// Defaults to `thing1`/`time2`/`phrase3` filled with the shipped `official_account.*`
    /// templates.
    pub data: Option<BTreeMap<String, String>>,
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Receiver that gets the notification when this integration gives up on it (or the
    /// account's daily quota is used up).
    pub fallback_receiver: Option<String>,
    /// `stable` (`/cgi-bin/stable_token`) or `classic` (`/cgi-bin/token`).
    #[serde(default)]
    pub token_endpoint: TokenEndpoint,
    /// Least time between two access token calls for this app, to save the daily quota.
    #[serde(default = "default_token_min_interval", with = "humantime_serde")]
    pub token_min_interval: Duration,
    /// Requests in flight at once for one notification.
    #[serde(default = "default_oa_max_concurrency")]
    pub max_concurrency: usize,
    /// Overrides `global.wechat_api_url`.
    pub api_url: Option<String>,
    /// Attempts before giving up (default 10).
    pub max_attempts: Option<u32>,
    /// Older than this since acceptance, a failing notification is given up (default 1h).
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Upstream requests allowed per second for this app id.
    pub rate_limit: Option<RateLimit>,
    /// A backlog that would take longer than this to send is merged into one digest (10s).
    #[serde(default, with = "humantime_serde")]
    pub coalesce_after: Option<Duration>,
}

fn default_token_min_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_oa_max_concurrency() -> usize {
    4
}

impl ChannelConfig for OfficialAccountConfig {
    common_keys!(super::KIND, None);

    fn check(&mut self, cx: &mut Check<'_>) {
        let at = cx.at.clone();
        self.delivery_options(&at, cx.report);
        cx.secret(
            "app_secret",
            &mut self.app_secret,
            &self.app_secret_file,
            true,
        );
        crate::channels::wxcrypt::check_callback_keys(
            cx,
            (&mut self.callback_token, &self.callback_token_file),
            (&mut self.callback_aes_key, &self.callback_aes_key_file),
            false,
        );
        for (key, value) in [("app_id", &self.app_id), ("template_id", &self.template_id)] {
            if value.trim().is_empty() {
                cx.report(format!("{at}.{key}"), "must not be empty".into());
            }
        }
        if self.to_openids.is_empty() {
            cx.report(
                format!("{at}.to_openids"),
                "needs at least one openid".into(),
            );
        }
        for (k, id) in self.to_openids.iter().enumerate() {
            if id.trim().is_empty() || id.contains('/') {
                cx.report(
                    format!("{at}.to_openids[{k}]"),
                    "must be a non-empty openid".into(),
                );
            }
        }
        if let Some(data) = &self.data {
            if data.is_empty() {
                cx.report(format!("{at}.data"), "needs at least one field".into());
            }
            for key in data.keys() {
                if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    cx.report(
                        format!("{at}.data"),
                        format!("{key:?} is not a template field key (like thing1)"),
                    );
                }
            }
        }
        if let Some(mp) = &self.miniprogram {
            for (key, value) in [("appid", &mp.appid), ("pagepath", &mp.pagepath)] {
                if value.trim().is_empty() {
                    cx.report(
                        format!("{at}.miniprogram.{key}"),
                        "must not be empty".into(),
                    );
                }
            }
        }
        if self.max_concurrency == 0 || self.max_concurrency > 64 {
            cx.report(
                format!("{at}.max_concurrency"),
                "must be between 1 and 64".into(),
            );
        }
        if let Some(url) = &self.api_url
            && let Err(m) = check_http_url(url)
        {
            cx.report(format!("{at}.api_url"), m);
        }
    }

    fn build(&self, cx: &mut Build<'_>) -> Kind {
        let api_url = self
            .api_url
            .clone()
            .unwrap_or_else(|| cx.globals.wechat_api_url.clone());
        let data = match &self.data {
            Some(map) => map
                .iter()
                .map(|(k, src)| (k.clone(), cx.template(&format!("data.{k}"), Some(src), "")))
                .collect(),
            None => DEFAULT_DATA
                .iter()
                .map(|(k, name)| (k.to_string(), name.to_string()))
                .collect(),
        };
        // Tokens outlive this runtime: the cache is the service's, keyed by app.
        let tokens = cx.upstreams.channels.official_account.source(
            &api_url,
            &self.app_id,
            self.app_secret.clone().unwrap_or_default(),
            self.token_endpoint,
            self.token_min_interval,
        );
        Kind::OfficialAccount(OfficialAccount {
            api_url,
            app_id: self.app_id.clone(),
            kind: self.kind,
            template_id: self.template_id.clone(),
            to_openids: self.to_openids.clone(),
            url: cx.template("url", self.url.as_ref(), "official_account.url"),
            miniprogram: self.miniprogram.clone(),
            data,
            max_concurrency: self.max_concurrency,
            tokens,
            rate_limit: self.delivery_options(&cx.at, &mut |_, _| {}).rate_limit,
        })
    }

    /// A `data` key of no known field type: its value is cut like a thing field.
    fn warnings(&self, file: &str, at: &str) -> Vec<String> {
        self.data
            .iter()
            .flat_map(|d| d.keys())
            .filter(|key| FieldType::of(key).is_none())
            .map(|key| {
                format!(
                    "{file}: {at}.data.{key}: warning: unknown field type; the value is cut to {DEFAULT_MAX} characters like a thing field"
                )
            })
            .collect()
    }
}
