//! The `wxpusher_configs` entries of a receiver: the YAML keys and their defaults, the checks
//! serde cannot make (reading the `*_file` secrets) and the integration built from an entry.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ContentType, WxPusher, spt};
use crate::channels::options::{RateLimit, common_keys, default_true};
use crate::channels::{Build, ChannelConfig, Check, Kind, check_http_url};
use crate::secret::Secret;

/// WxPusher's documented limit is about 20 calls per 10 s per app.
pub const WXPUSHER_RATE: RateLimit = RateLimit {
    rate: 2.0,
    burst: 2,
};
/// WxPusher stops notifying a UID after a few thousand messages a day; 500 keeps well clear.
pub const DEFAULT_DAILY_BUDGET_PER_UID: u32 = 500;

/// Longest `extra` WxPusher accepts on a QR code, so the longest tag that can match one.
pub const MAX_TAG: usize = 64;

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

impl ChannelConfig for WxPusherConfig {
    common_keys!(super::KIND, Some(WXPUSHER_RATE));

    fn check(&mut self, cx: &mut Check<'_>) {
        let at = cx.at.clone();
        let simple = spt::resolve_config(
            cx.base,
            &at,
            spt::SptKeys {
                spts: &mut self.spts,
                spts_file: &self.spts_file,
                app_keys: [
                    ("app_token", self.app_token.is_some()),
                    ("app_token_file", self.app_token_file.is_some()),
                    ("uids", !self.uids.is_empty()),
                    ("topic_ids", !self.topic_ids.is_empty()),
                    ("subscriber_tags", !self.subscriber_tags.is_empty()),
                ],
            },
            cx.report,
        );
        for s in &self.spts {
            cx.record(s);
        }
        if !simple {
            cx.secret("app_token", &mut self.app_token, &self.app_token_file, true);
        }
        if !simple
            && self.uids.is_empty()
            && self.topic_ids.is_empty()
            && self.subscriber_tags.is_empty()
        {
            cx.report(
                at.clone(),
                "needs at least one of uids, topic_ids and subscriber_tags".into(),
            );
        }
        for (k, t) in self.subscriber_tags.iter().enumerate() {
            if t.trim().is_empty() || t.chars().count() > MAX_TAG {
                cx.report(
                    format!("{at}.subscriber_tags[{k}]"),
                    format!("must be 1 to {MAX_TAG} characters"),
                );
            }
        }
        if !self.subscriber_tags.is_empty() && !cx.globals.callback(super::KIND) {
            cx.report(
                format!("{at}.subscriber_tags"),
                "needs chatops.wxpusher_callback_secret: subscribers are learned from WxPusher's callback".into(),
            );
        }
        for (k, uid) in self.uids.iter().enumerate() {
            if uid.trim().is_empty() {
                cx.report(format!("{at}.uids[{k}]"), "must not be empty".into());
            }
        }
        if let Some(url) = &self.api_url
            && let Err(m) = check_http_url(url)
        {
            cx.report(format!("{at}.api_url"), m);
        }
        if self.daily_budget_per_uid == Some(0) {
            cx.report(
                format!("{at}.daily_budget_per_uid"),
                "must be at least 1".into(),
            );
        }
        self.delivery_options(&at, cx.report);
    }

    fn build(&self, cx: &mut Build<'_>) -> Kind {
        let default_content = match self.content_type {
            ContentType::Markdown => "wxpusher.content",
            ContentType::Html => "wxpusher.html",
            ContentType::Text => "wxpusher.text",
        };
        Kind::WxPusher(WxPusher {
            api_url: self
                .api_url
                .clone()
                .unwrap_or_else(|| cx.globals.wxpusher_api_url.clone()),
            app_token: self.app_token.clone().unwrap_or_default(),
            spts: self.spts.iter().cloned().map(spt::Spt::new).collect(),
            uids: self.uids.clone(),
            topic_ids: self.topic_ids.clone(),
            subscriber_tags: self.subscriber_tags.clone(),
            content_type: self.content_type,
            summary: cx.template("summary", self.summary.as_ref(), "wxpusher.summary"),
            content: cx.template("content", self.content.as_ref(), default_content),
            url: cx.template("url", self.url.as_ref(), "wxpusher.url"),
            summary_max: cx.globals.summary_max_chars,
            rate_limit: self.delivery_options(&cx.at, &mut |_, _| {}).rate_limit,
            daily_budget: self
                .daily_budget_per_uid
                .unwrap_or(DEFAULT_DAILY_BUDGET_PER_UID)
                .max(1),
        })
    }
}
