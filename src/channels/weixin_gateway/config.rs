//! The `weixin_gateway_configs` entries of a receiver: the YAML keys and their defaults, the
//! checks serde cannot make (reading the `*_file` secret) and the integration built from an
//! entry.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::WeixinGateway;
use crate::channels::options::{RateLimit, common_keys, default_true};
use crate::channels::{Build, ChannelConfig, Check, Kind, check_http_url};
use crate::secret::Secret;

/// A weixin-gateway bridge: `POST {url}/send` as a logged-in personal WeChat bot account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeixinGatewayConfig {
    /// Base URL of the gateway (`http://weixin-gateway:8787`); `/send` and `/health` are appended.
    pub url: String,
    /// The bot account the gateway sends as (its `account_id`).
    pub account_id: String,
    /// WeChat user ids (`…@im.wechat`) that get every message, one request each.
    pub to_user_ids: Vec<String>,
    /// Passed through as `context_token`; the bridge works without one (empty string).
    pub context_token: Option<String>,
    /// For a gateway behind an auth proxy: sent as `Authorization: Bearer …`. The gateway itself
    /// has no authentication.
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<PathBuf>,
    /// Plain-text message template; defaults to `{{> gateway.text}}`.
    pub text: Option<String>,
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Receiver that gets the notification when this integration gives up on it, at once when a
    /// user's send window is exhausted.
    pub fallback_receiver: Option<String>,
    /// After the upstream refuses a user (`ret=-2`, `rate limited`), sends to that user fail at
    /// once, without a request, for this long.
    #[serde(default = "default_user_backoff", with = "humantime_serde")]
    pub user_backoff: Duration,
    /// How often `GET {url}/health` is probed for the `integration_up` metric (and the
    /// window metrics read).
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub health_interval: Duration,
    /// Messages a user can get between two of their own (iLink's window, about 10); with
    /// that many sent since the user last wrote, alerts go to the fallback receiver without a
    /// call. 0: not counted. A user's message, seen through the gateway's callback
    /// (`chatops.weixin_gateway_secret`), resets the count; without the callback a spent
    /// window is given `user_backoff` to reopen.
    #[serde(default = "default_window_size")]
    pub window_size: u32,
    /// From this many sent, each message asks the user to reply; 0: never.
    #[serde(default = "default_window_warn_at")]
    pub window_warn_at: u32,
    /// Attempts before giving up (default 10).
    pub max_attempts: Option<u32>,
    /// Older than this since acceptance, a failing notification is given up (default 1h).
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Upstream requests allowed per second through this gateway.
    pub rate_limit: Option<RateLimit>,
    /// A backlog that would take longer than this to send is merged into one digest (10s).
    #[serde(default, with = "humantime_serde")]
    pub coalesce_after: Option<Duration>,
}

fn default_user_backoff() -> Duration {
    Duration::from_secs(30 * 60)
}

fn default_health_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_window_size() -> u32 {
    crate::channels::weixin_gateway::window::DEFAULT_WINDOW_SIZE
}

fn default_window_warn_at() -> u32 {
    crate::channels::weixin_gateway::window::DEFAULT_WINDOW_WARN_AT
}

impl ChannelConfig for WeixinGatewayConfig {
    common_keys!(super::KIND, None);

    fn check(&mut self, cx: &mut Check<'_>) {
        let at = cx.at.clone();
        self.delivery_options(&at, cx.report);
        cx.secret(
            "bearer_token",
            &mut self.bearer_token,
            &self.bearer_token_file,
            false,
        );
        if let Err(m) = check_http_url(&self.url) {
            cx.report(format!("{at}.url"), m);
        }
        if self.account_id.trim().is_empty() {
            cx.report(format!("{at}.account_id"), "must not be empty".into());
        }
        if self.to_user_ids.is_empty() {
            cx.report(
                format!("{at}.to_user_ids"),
                "needs at least one user".into(),
            );
        }
        for (k, u) in self.to_user_ids.iter().enumerate() {
            if u.trim().is_empty() {
                cx.report(format!("{at}.to_user_ids[{k}]"), "must not be empty".into());
            }
        }
        if self.user_backoff.is_zero() {
            cx.report(
                format!("{at}.user_backoff"),
                "must be longer than 0s".into(),
            );
        }
        if self.window_size > 0 && self.window_warn_at > self.window_size {
            cx.report(
                format!("{at}.window_warn_at"),
                format!(
                    "must not be more than window_size ({}); 0 turns the reminder off",
                    self.window_size
                ),
            );
        }
        if self.health_interval < Duration::from_millis(100) {
            cx.report(
                format!("{at}.health_interval"),
                "must be at least 100ms".into(),
            );
        }
    }

    fn build(&self, cx: &mut Build<'_>) -> Kind {
        Kind::WeixinGateway(WeixinGateway {
            url: self.url.clone(),
            account_id: self.account_id.clone(),
            to_user_ids: self.to_user_ids.clone(),
            context_token: self.context_token.clone().unwrap_or_default(),
            bearer_token: self.bearer_token.clone(),
            text: cx.template("text", self.text.as_ref(), "gateway.text"),
            user_backoff: self.user_backoff,
            health_interval: self.health_interval,
            rate_limit: self.delivery_options(&cx.at, &mut |_, _| {}).rate_limit,
            window_size: self.window_size,
            window_warn_at: self.window_warn_at,
            replies_seen: cx.globals.callback(super::KIND),
        })
    }
}
