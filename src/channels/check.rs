//! What a channel's `*_configs` entry is checked and built with: the contract between the
//! loader and runtime, which walk a receiver's integrations once, and the channel folders,
//! which own everything about their entries ([`ChannelConfig`]).
//!
//! Secrets are recorded as they are read ([`Check::secret`]), so that the scrubber masks every
//! secret a check reads without a second list to keep in step.

use std::path::{Path, PathBuf};

use crate::channels::options::DeliveryOptions;
use crate::channels::state::Upstreams;
use crate::channels::{Globals, Kind};
use crate::secret::Secret;
use crate::template::Templates;

/// One `*_configs` entry, whatever its channel: what the loader checks and runtime builds.
pub trait ChannelConfig {
    /// The channel's kind name ([`Kind::name`]); its YAML key is `{kind}_configs`.
    fn kind(&self) -> &'static str;
    /// Whether resolved alerts are sent at all.
    fn send_resolved(&self) -> bool;
    /// Where a notification goes, once, when this integration gives up on it.
    fn fallback_receiver(&self) -> Option<&String>;
    /// Retries, rate limit and coalescing with the channel's defaults; problems go to `report`.
    fn delivery_options(&self, at: &str, report: &mut dyn FnMut(String, String))
    -> DeliveryOptions;
    /// Reads the entry's `*_file` secrets and checks what serde cannot.
    fn check(&mut self, cx: &mut Check<'_>);
    /// The integration, from an entry that passed its check.
    fn build(&self, cx: &mut Build<'_>) -> Kind;
    /// Things that are valid but probably wrong, printed by `check-config` without failing it.
    fn warnings(&self, _file: &str, _at: &str) -> Vec<String> {
        Vec::new()
    }
}

/// The context of one entry's check.
pub struct Check<'a> {
    /// Where relative `*_file` paths start.
    pub base: &'a Path,
    /// The entry's YAML path (`receivers[0].wxpusher_configs[1]`).
    pub at: String,
    pub globals: &'a Globals,
    pub report: &'a mut dyn FnMut(String, String),
    /// Every secret read so far, for the scrubber.
    pub secrets: &'a mut Vec<Secret>,
}

impl Check<'_> {
    pub fn report(&mut self, path: String, message: String) {
        (self.report)(path, message)
    }

    /// Fills `value` from `file` when given, checks that exactly one (or, if optional, at most
    /// one) of the two is set, and records the secret for masking.
    pub fn secret(
        &mut self,
        key: &str,
        value: &mut Option<Secret>,
        file: &Option<PathBuf>,
        required: bool,
    ) {
        crate::secret::resolve_secret(self.base, &self.at, key, value, file, required, self.report);
        self.secrets.extend(value.iter().cloned());
    }

    /// Records a secret read some other way.
    pub fn record(&mut self, secret: &Secret) {
        self.secrets.push(secret.clone());
    }
}

/// The context of one integration's construction.
pub struct Build<'a> {
    /// The entry's YAML path.
    pub at: String,
    pub globals: &'a Globals,
    /// Long-lived upstream state (token caches) shared across reloads.
    pub upstreams: &'a Upstreams,
    pub templates: &'a mut Templates,
    pub report: &'a mut dyn FnMut(String, String),
    /// The inline templates that did not compile, so the sample render does not report them
    /// a second time.
    pub uncompiled: &'a mut Vec<String>,
}

impl Build<'_> {
    /// The template named `default` when the entry gives none under `key`; otherwise the
    /// entry's inline template, compiled under its YAML path so that errors point there.
    pub fn template(&mut self, key: &str, src: Option<&String>, default: &str) -> String {
        match src {
            None => default.to_string(),
            Some(src) => {
                let path = format!("{}.{key}", self.at);
                if let Err(e) = self.templates.add(&path, src) {
                    (self.report)(path.clone(), e.message);
                    self.uncompiled.push(path.clone());
                }
                path
            }
        }
    }
}

/// `Ok` for an http(s) URL; otherwise what is wrong with it.
pub fn check_http_url(url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("{url:?} is not an http(s) URL"))
    }
}
