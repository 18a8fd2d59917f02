//! The `wxpusher_configs` entries of a receiver: the YAML keys and their defaults. The loader
//! ([`crate::config`]) reads the `*_file` secrets and checks what serde cannot.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ContentType;
use crate::channels::options::{RateLimit, default_true};
use crate::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WxPusherConfig {
    /// `AT_…`; exactly one of this and `app_token_file`.
    pub app_token: Option<Secret>,
    pub app_token_file: Option<PathBuf>,
    /// Simple-push tokens (`SPT_…`), instead of `app_token` with uids and topics: each one a
    /// person who opened WxPusher's simple push for themselves. At most one of this and
    /// `spts_file`.
    #[serde(default)]
    pub spts: Vec<Secret>,
    /// A file of SPTs, one a line (blank lines and `#` comments skipped).
    pub spts_file: Option<PathBuf>,
    #[serde(default)]
    pub uids: Vec<String>,
    #[serde(default)]
    pub topic_ids: Vec<i64>,
    /// Users who subscribed through a QR code whose `extra` is one of these also get the
    /// messages (learned from WxPusher's `app_subscribe` callback).
    #[serde(default)]
    pub subscriber_tags: Vec<String>,
    #[serde(default)]
    pub content_type: ContentType,
    /// Preview template; cut to `global.summary_max_chars` after rendering.
    pub summary: Option<String>,
    /// Body template; the default depends on `content_type`.
    pub content: Option<String>,
    /// Tap-through link template.
    pub url: Option<String>,
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Overrides `global.wxpusher_api_url`.
    pub api_url: Option<String>,
    /// Receiver that gets the notification when this integration gives up on it.
    pub fallback_receiver: Option<String>,
    /// Attempts before giving up (default 10).
    pub max_attempts: Option<u32>,
    /// Older than this since acceptance, a failing notification is given up (default 1h).
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Upstream requests allowed per second for this integration's credential.
    pub rate_limit: Option<RateLimit>,
    /// A backlog that would take longer than this to send is merged into one digest (10s).
    #[serde(default, with = "humantime_serde")]
    pub coalesce_after: Option<Duration>,
    /// Messages one UID may get from this app token per day (midnight to midnight,
    /// Asia/Shanghai); default 500. UIDs over it are left out until the next day.
    pub daily_budget_per_uid: Option<u32>,
}
