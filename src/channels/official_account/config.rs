//! The `official_account_configs` entries of a receiver: the YAML keys and their defaults. The loader
//! ([`crate::config`]) reads the `*_file` secrets and checks what serde cannot.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::token::TokenEndpoint;
use super::{MiniProgramConfig, OfficialAccountKind};
use crate::channels::options::{RateLimit, default_true};
use crate::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficialAccountConfig {
    /// The Service Account's AppID (`wx…`).
    pub app_id: String,
    /// AppSecret; exactly one of this and `app_secret_file`.
    pub app_secret: Option<Secret>,
    pub app_secret_file: Option<PathBuf>,
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
