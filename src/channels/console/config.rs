//! The `console_configs` entries of a receiver: the YAML keys and their defaults. The loader
//! ([`crate::config`]) reads the `*_file` secrets and checks what serde cannot.

use std::time::Duration;

use serde::Deserialize;

use crate::channels::options::{RateLimit, default_true};

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
