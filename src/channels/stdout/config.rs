//! The `console_configs` entries of a receiver: the YAML keys, their defaults, their checks and
//! the integration built from an entry.

use std::time::Duration;

use serde::Deserialize;

use super::Console;
use crate::channels::options::{RateLimit, common_keys, default_true};
use crate::channels::{Build, ChannelConfig, Check, Kind};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Template of what is printed; defaults to the WxPusher markdown.
    pub text: Option<String>,
    #[serde(default = "default_true")]
    pub send_resolved: bool,
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
}

impl ChannelConfig for ConsoleConfig {
    common_keys!(super::KIND, None);

    fn check(&mut self, cx: &mut Check<'_>) {
        self.delivery_options(&cx.at, cx.report);
    }

    fn build(&self, cx: &mut Build<'_>) -> Kind {
        Kind::Console(Console {
            summary: crate::channels::SUMMARY_TEMPLATE.into(),
            text: cx.template("text", self.text.as_ref(), "console.text"),
            summary_max: cx.globals.summary_max_chars,
        })
    }
}
