//! The YAML configuration: types, loading, `${VAR}` expansion, `*_file` secrets and validation.
//!
//! Loading is strict: unknown keys are errors, and every error names the file, the path in the
//! YAML (`receivers[0].wxpusher_configs[0].uids`) and what is wrong, so that `check-config`
//! can list them all. Past the first structural error (unknown key, wrong type, bad duration)
//! the offending node is taken out and parsing goes on (the `recover` submodule); the checks
//! serde cannot do then run on what is left. This module only describes and checks; building
//! the running pieces (templates, routes, integrations) from a valid config is
//! [`crate::runtime`]'s job.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use recover::Recovery;

use crate::channels::official_account::config::OfficialAccountConfig;
use crate::channels::stdout::config::ConsoleConfig;
use crate::channels::wecom_app::config::WecomAppConfig;
use crate::channels::wecom_robot::config::WecomRobotConfig;
use crate::channels::weixin_gateway::config::WeixinGatewayConfig;
use crate::channels::wxpusher::config::WxPusherConfig;
use crate::channels::{ChannelConfig, Check, Globals};
use crate::route::RouteConfig;
use crate::secret::Secret;
pub use crate::store::StorageConfig;
pub use crate::template::Locale;

pub mod chatops;
pub mod oncall;
mod recover;
mod timezone;

/// The built-in configuration used when no `--config.file` is given: every alert to the console.
pub const DEFAULT_CONFIG: &str = r#"# Built-in default: print every notification, rendered, to standard output.
storage:
  path: ./data
route:
  receiver: console
receivers:
  - name: console
    console_configs: [ {} ]
"#;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file it came from (`<built-in>` for the default).
    pub file: String,
    /// Where in the YAML, as `a.b[0].c`; empty for the document itself.
    pub path: String,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.message)
        }
    }
}

/// Every problem found in one configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Defaults shared by every receiver.
    #[serde(default)]
    pub global: Global,
    /// Who may post to `/webhook*`.
    #[serde(default)]
    pub auth: AuthConfig,
    /// The HTTP server's own limits.
    #[serde(default)]
    pub web: WebConfig,
    /// Where queue and state live.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Globs of `*.hbs` files; each file's name without `.hbs` is a template name.
    #[serde(default)]
    pub templates: Vec<String>,
    /// Duplicate suppression and resolved grouping.
    #[serde(default)]
    pub dedupe: DedupeConfig,
    /// Replies from WeChat (silence, acknowledge, list); off when absent.
    pub chatops: Option<crate::config::chatops::ChatopsConfig>,
    /// The route tree; its root names the default receiver.
    pub route: RouteConfig,
    /// Every receiver a route can name.
    pub receivers: Vec<ReceiverConfig>,
    /// On-call: named time intervals, the `oncall` block, people, schedules and escalation
    /// policies (see [`oncall`]).
    #[serde(default)]
    pub time_intervals: Vec<crate::oncall::timeinterval::NamedTimeInterval>,
    pub oncall: Option<oncall::OncallConfig>,
    #[serde(default)]
    pub people: Vec<oncall::Person>,
    #[serde(default)]
    pub schedules: Vec<crate::oncall::schedule::Schedule>,
    #[serde(default)]
    pub escalation_policies: Vec<oncall::EscalationPolicy>,
    /// The file this was read from, for messages and relative paths.
    #[serde(skip)]
    pub source: String,
    /// Every secret the channels' checks read, recorded as they read it, for the scrubber.
    #[serde(skip)]
    channel_secrets: Vec<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    /// Zone for times shown in messages.
    #[serde(
        default = "default_timezone",
        deserialize_with = "timezone::deserialize"
    )]
    pub timezone: chrono_tz::Tz,
    /// Language of the shipped templates.
    #[serde(default)]
    pub locale: Locale,
    /// Notification preview length, in user-visible characters.
    #[serde(default = "default_summary_max_chars")]
    pub summary_max_chars: usize,
    #[serde(default = "default_wxpusher_api_url")]
    pub wxpusher_api_url: String,
    #[serde(default = "default_wechat_api_url")]
    pub wechat_api_url: String,
    /// Base URL of WeCom's API (`qyapi`): group robots and application messages.
    #[serde(default = "default_wecom_api_url")]
    pub wecom_api_url: String,
    /// Timeout of one upstream HTTP request.
    #[serde(default = "default_http_timeout", with = "humantime_serde")]
    pub http_timeout: Duration,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            timezone: default_timezone(),
            locale: Locale::default(),
            summary_max_chars: default_summary_max_chars(),
            wxpusher_api_url: default_wxpusher_api_url(),
            wechat_api_url: default_wechat_api_url(),
            wecom_api_url: default_wecom_api_url(),
            http_timeout: default_http_timeout(),
        }
    }
}

fn default_timezone() -> chrono_tz::Tz {
    chrono_tz::Asia::Shanghai
}
fn default_summary_max_chars() -> usize {
    20
}
fn default_wxpusher_api_url() -> String {
    "https://wxpusher.zjiecode.com".into()
}
fn default_wechat_api_url() -> String {
    "https://api.weixin.qq.com".into()
}
fn default_wecom_api_url() -> String {
    "https://qyapi.weixin.qq.com".into()
}
fn default_http_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<PathBuf>,
    pub basic_auth: Option<BasicAuth>,
    pub grafana_hmac_secret: Option<Secret>,
    pub grafana_hmac_secret_file: Option<PathBuf>,
    /// Header carrying Grafana's signature (Grafana's `header` setting).
    #[serde(default = "default_grafana_hmac_header")]
    pub grafana_hmac_header: String,
    /// When set (Grafana's `timestampHeader`), the signature covers `"<unix ts>:<body>"` and
    /// the timestamp must be within `grafana_hmac_max_skew` of now: replays are refused.
    pub grafana_hmac_timestamp_header: Option<String>,
    #[serde(default = "default_grafana_hmac_max_skew", with = "humantime_serde")]
    pub grafana_hmac_max_skew: Duration,
    /// People's credentials, separate from the webhook's: `/-/reload` takes them (as well as
    /// the webhook's), and so will the console and `/api/v1/*`.
    pub admin: Option<AdminAuth>,
}

/// `auth.admin`: basic auth, or a bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminAuth {
    pub basic_auth: Option<BasicAuth>,
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<PathBuf>,
}

fn default_grafana_hmac_header() -> String {
    "X-Grafana-Alerting-Signature".into()
}
fn default_grafana_hmac_max_skew() -> Duration {
    Duration::from_secs(300)
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            bearer_token: None,
            bearer_token_file: None,
            basic_auth: None,
            grafana_hmac_secret: None,
            grafana_hmac_secret_file: None,
            grafana_hmac_header: default_grafana_hmac_header(),
            grafana_hmac_timestamp_header: None,
            grafana_hmac_max_skew: default_grafana_hmac_max_skew(),
            admin: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Largest webhook body accepted; larger ones get 413 while being read.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Open connections at once; more wait in the kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection that has not sent a complete request head this long after it was accepted
    /// is closed: silent sockets, slow headers (slowloris), an HTTP/2 preface and nothing more.
    /// On HTTP/1 it also bounds each later request head, from its first byte.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A request body not complete this long after its head arrived is refused with 408 (the
    /// connection is closed): a body trickling in at a byte a second holds nothing for long.
    #[serde(default = "default_body_read_timeout", with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// A keep-alive connection (HTTP/1 or HTTP/2) with no request in progress for this long is
    /// closed (HTTP/2: with a GOAWAY first).
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Request bodies held in memory at once, all connections and streams together, counted as
    /// they are read (or as declared by `Content-Length`); a request that would go over gets
    /// 503 with `Retry-After`, which Alertmanager retries. At least `max_body_bytes`.
    #[serde(default = "default_max_inflight_body_bytes")]
    pub max_inflight_body_bytes: usize,
    /// Requests at once on one HTTP/2 connection (hyper's own default is 200).
    #[serde(default = "default_http2_max_concurrent_streams")]
    pub http2_max_concurrent_streams: u32,
    /// An HTTP/2 connection is pinged after this long without a frame from the client…
    #[serde(
        default = "default_http2_keep_alive_interval",
        with = "humantime_serde"
    )]
    pub http2_keep_alive_interval: Duration,
    /// …and closed when the ping is not answered within this.
    #[serde(default = "default_http2_keep_alive_timeout", with = "humantime_serde")]
    pub http2_keep_alive_timeout: Duration,
    /// Serves the console (`/ui/`) and `/api/v1/*`; unset: on when `auth.admin` is set.
    pub console: Option<bool>,
    /// Serves every endpoint under this path (`/amw`), as Alertmanager's
    /// `--web.route-prefix`; the console's pages use relative URLs, so a proxy that strips
    /// the prefix works too.
    pub route_prefix: Option<String>,
    /// Delivery history older than this is pruned (on write).
    #[serde(default = "default_history_retention", with = "humantime_serde")]
    pub history_retention: Duration,
    /// At most this many delivery history records are kept; the oldest go first.
    #[serde(default = "default_history_max")]
    pub history_max: usize,
}

impl WebConfig {
    /// Whether `/ui/` and `/api/v1/*` are served.
    pub fn console_enabled(&self, auth: &AuthConfig) -> bool {
        self.console.unwrap_or(auth.admin.is_some())
    }

    /// `route_prefix` as `/a/b` (no trailing slash), `None` for the root.
    pub fn prefix(&self) -> Option<String> {
        let p = self.route_prefix.as_deref()?.trim_matches('/');
        (!p.is_empty()).then(|| format!("/{p}"))
    }
}

fn default_history_retention() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn default_history_max() -> usize {
    10_000
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            max_body_bytes: default_max_body_bytes(),
            max_connections: default_max_connections(),
            header_read_timeout: default_header_read_timeout(),
            body_read_timeout: default_body_read_timeout(),
            idle_timeout: default_idle_timeout(),
            max_inflight_body_bytes: default_max_inflight_body_bytes(),
            http2_max_concurrent_streams: default_http2_max_concurrent_streams(),
            http2_keep_alive_interval: default_http2_keep_alive_interval(),
            http2_keep_alive_timeout: default_http2_keep_alive_timeout(),
            console: None,
            route_prefix: None,
            history_retention: default_history_retention(),
            history_max: default_history_max(),
        }
    }
}

impl WebConfig {
    /// What serde cannot check; `report(path, message)` for each problem.
    fn check(&self, report: &mut dyn FnMut(String, String)) {
        for (key, d) in [
            ("web.header_read_timeout", self.header_read_timeout),
            ("web.body_read_timeout", self.body_read_timeout),
            ("web.idle_timeout", self.idle_timeout),
            (
                "web.http2_keep_alive_interval",
                self.http2_keep_alive_interval,
            ),
            (
                "web.http2_keep_alive_timeout",
                self.http2_keep_alive_timeout,
            ),
        ] {
            if d.is_zero() {
                report(key.into(), "must be longer than 0s".into());
            }
        }
        if self.max_inflight_body_bytes < self.max_body_bytes {
            report(
                "web.max_inflight_body_bytes".into(),
                format!(
                    "must be at least web.max_body_bytes ({}), or no body that large is ever accepted",
                    self.max_body_bytes
                ),
            );
        }
        // Counted with a semaphore, whose requests are u32.
        if self.max_inflight_body_bytes > u32::MAX as usize {
            report(
                "web.max_inflight_body_bytes".into(),
                format!("must be at most {}", u32::MAX),
            );
        }
        if self.http2_max_concurrent_streams == 0 {
            report(
                "web.http2_max_concurrent_streams".into(),
                "must be at least 1".into(),
            );
        }
    }
}

fn default_body_read_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_inflight_body_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_http2_max_concurrent_streams() -> u32 {
    16
}
fn default_http2_keep_alive_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_http2_keep_alive_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_max_connections() -> usize {
    1024
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupeConfig {
    /// The same notification (group key, status, alerts) again within this is not pushed
    /// twice; `0s` turns duplicate suppression off.
    #[serde(default = "default_dedupe_window", with = "humantime_serde")]
    pub window: Duration,
    /// Resolved-only notifications wait this long so that those arriving meanwhile go out as
    /// one message; `0s` sends them at once.
    #[serde(default = "default_resolved_group_wait", with = "humantime_serde")]
    pub resolved_group_wait: Duration,
}

impl Default for DedupeConfig {
    fn default() -> Self {
        DedupeConfig {
            window: default_dedupe_window(),
            resolved_group_wait: default_resolved_group_wait(),
        }
    }
}

fn default_dedupe_window() -> Duration {
    Duration::from_secs(300)
}
fn default_resolved_group_wait() -> Duration {
    Duration::from_secs(30)
}

/// A named set of integrations; routes point at receivers by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: String,
    #[serde(default)]
    pub wxpusher_configs: Vec<WxPusherConfig>,
    #[serde(default)]
    pub console_configs: Vec<ConsoleConfig>,
    #[serde(default)]
    pub weixin_gateway_configs: Vec<WeixinGatewayConfig>,
    #[serde(default)]
    pub official_account_configs: Vec<OfficialAccountConfig>,
    #[serde(default)]
    pub wecom_robot_configs: Vec<WecomRobotConfig>,
    #[serde(default)]
    pub wecom_app_configs: Vec<WecomAppConfig>,
    /// The on-call policy for this receiver's groups when the route names none.
    pub escalation_policy: Option<String>,
}

impl ReceiverConfig {
    pub fn integration_count(&self) -> usize {
        self.integrations().len()
    }

    /// Every integration entry with its YAML key (`wxpusher_configs[0]`), in the order the
    /// integrations are built (each channel's list in turn).
    pub fn integrations(&self) -> Vec<(String, &dyn ChannelConfig)> {
        fn each<'a, T: ChannelConfig>(
            out: &mut Vec<(String, &'a dyn ChannelConfig)>,
            key: &str,
            list: &'a [T],
        ) {
            for (j, c) in list.iter().enumerate() {
                out.push((format!("{key}[{j}]"), c));
            }
        }
        let mut out = Vec::new();
        each(&mut out, "wxpusher_configs", &self.wxpusher_configs);
        each(&mut out, "console_configs", &self.console_configs);
        each(
            &mut out,
            "weixin_gateway_configs",
            &self.weixin_gateway_configs,
        );
        each(
            &mut out,
            "official_account_configs",
            &self.official_account_configs,
        );
        each(&mut out, "wecom_robot_configs", &self.wecom_robot_configs);
        each(&mut out, "wecom_app_configs", &self.wecom_app_configs);
        out
    }

    /// [`ReceiverConfig::integrations`], to check (and complete) each entry.
    fn integrations_mut(&mut self) -> Vec<(String, &mut dyn ChannelConfig)> {
        fn each<'a, T: ChannelConfig>(
            out: &mut Vec<(String, &'a mut dyn ChannelConfig)>,
            key: &str,
            list: &'a mut [T],
        ) {
            for (j, c) in list.iter_mut().enumerate() {
                out.push((format!("{key}[{j}]"), c));
            }
        }
        let mut out = Vec::new();
        each(&mut out, "wxpusher_configs", &mut self.wxpusher_configs);
        each(&mut out, "console_configs", &mut self.console_configs);
        each(
            &mut out,
            "weixin_gateway_configs",
            &mut self.weixin_gateway_configs,
        );
        each(
            &mut out,
            "official_account_configs",
            &mut self.official_account_configs,
        );
        each(
            &mut out,
            "wecom_robot_configs",
            &mut self.wecom_robot_configs,
        );
        each(&mut out, "wecom_app_configs", &mut self.wecom_app_configs);
        out
    }
}

impl Config {
    /// Reads, expands, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        match Config::load_checked(path) {
            (Some(config), errors) if errors.is_empty() => Ok(config),
            (_, errors) => Err(ConfigErrors(errors)),
        }
    }

    /// Reads, expands, parses and validates a file, answering every error found and, when the
    /// file parsed whole (its errors are all from the checks after parsing), the
    /// configuration as read: later stages (compiling its templates) can then list their
    /// errors in the same run.
    pub fn load_checked(path: &Path) -> (Option<Config>, Vec<ConfigError>) {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                let e = ConfigError {
                    file: name,
                    path: String::new(),
                    message: format!("cannot read: {e}"),
                };
                return (None, vec![e]);
            }
        };
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse_checked(&text, &name, base)
    }

    /// The configuration used when no file is given.
    pub fn builtin() -> Result<Config, ConfigErrors> {
        Config::parse(DEFAULT_CONFIG, "<built-in>", Path::new("."))
    }

    /// Parses text as if read from `file`; relative `*_file` paths and template globs are
    /// resolved against `base`.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Config, ConfigErrors> {
        match Config::parse_checked(text, file, base) {
            (Some(config), errors) if errors.is_empty() => Ok(config),
            (_, errors) => Err(ConfigErrors(errors)),
        }
    }

    /// [`Config::parse`] answering every error and, when the text parsed whole, the
    /// configuration as read (see [`Config::load_checked`]).
    pub fn parse_checked(
        text: &str,
        file: &str,
        base: &Path,
    ) -> (Option<Config>, Vec<ConfigError>) {
        let expanded = match expand_env(text) {
            Ok(expanded) => expanded,
            Err(message) => {
                let e = ConfigError {
                    file: file.to_string(),
                    path: String::new(),
                    message,
                };
                return (None, vec![e]);
            }
        };
        let de = yaml_serde::Deserializer::from_str(&expanded);
        let first = match serde_path_to_error::deserialize::<_, Config>(de) {
            Ok(config) => {
                let (config, errors) = config.validate(file, base, None);
                return (Some(config), errors);
            }
            Err(e) => e,
        };
        (None, Config::list_past_first(&expanded, file, base, first))
    }

    /// Every error of a text that did not parse whole, past the `first`: each structural
    /// error's node is taken out and the text parsed again, then the checks run on what is
    /// left.
    fn list_past_first(
        expanded: &str,
        file: &str,
        base: &Path,
        first: serde_path_to_error::Error<yaml_serde::Error>,
    ) -> Vec<ConfigError> {
        let at = recover::segs(first.path());
        let path = first.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message =
            recover::redact_values(&strip_path_prefix(&first.into_inner().to_string(), &path));
        let mut errors = vec![ConfigError {
            file: file.to_string(),
            path,
            message,
        }];
        // Keep going past the first structural error, so that every one is listed.
        let Some(mut rec) = Recovery::new(expanded) else {
            return errors;
        };
        if !rec.neutralise(&at) {
            return errors;
        }
        for _ in 0..recover::MAX_ROUNDS {
            match rec.next() {
                Ok(config) => {
                    errors.extend(config.validate(file, base, Some(&rec)).1);
                    return errors;
                }
                Err(found) => {
                    let missing = found.current.as_deref().and_then(|at| {
                        let field = recover::missing_field(&found.message)?;
                        Some((at.to_vec(), field.to_string()))
                    });
                    if let Some((at, field)) = &missing
                        && rec.caused_missing(at, field)
                    {
                        // A key this listing removed, not one the file lacks: put it back.
                        if rec.restore(at, field) {
                            continue;
                        }
                        return errors;
                    }
                    let message = match recover::locate(expanded, &found.original) {
                        Some((line, column)) => {
                            format!("{} at line {line} column {column}", found.message)
                        }
                        None => found.message,
                    };
                    let e = ConfigError {
                        file: file.to_string(),
                        path: recover::render(&found.original),
                        message,
                    };
                    if !errors.contains(&e) {
                        errors.push(e);
                    }
                    let restored = match missing {
                        Some((at, field)) => rec.restore(&at, &field),
                        None => false,
                    };
                    match found.current {
                        _ if restored => {}
                        Some(current) if rec.neutralise(&current) => {}
                        _ => return errors,
                    }
                }
            }
        }
        errors.push(ConfigError {
            file: file.to_string(),
            path: String::new(),
            message: format!(
                "more errors may follow (stopped looking after {})",
                errors.len()
            ),
        });
        errors
    }

    /// Runs the checks serde cannot on a deserialized config. After a repaired parse (`rec`),
    /// paths are mapped back to the file as written and errors about repaired nodes dropped.
    fn validate(
        mut self,
        file: &str,
        base: &Path,
        rec: Option<&Recovery>,
    ) -> (Config, Vec<ConfigError>) {
        self.source = file.to_string();
        let mut errors = Vec::new();
        self.resolve(base, &mut |path, message| {
            let path = match rec {
                Some(rec) => {
                    let path = rec.original_text(&path);
                    if rec.is_patched(&path) {
                        return;
                    }
                    path
                }
                None => path,
            };
            errors.push(ConfigError {
                file: file.to_string(),
                path,
                message,
            })
        });
        (self, errors)
    }

    /// Reads `*_file` secrets, resolves relative paths and checks what serde cannot.
    fn resolve(&mut self, base: &Path, report: &mut dyn FnMut(String, String)) {
        let g = &self.global;
        if g.summary_max_chars == 0 || g.summary_max_chars > 100 {
            report(
                "global.summary_max_chars".into(),
                "must be between 1 and 100 (WxPusher's summary limit)".into(),
            );
        }
        for (key, url) in [
            ("global.wxpusher_api_url", &g.wxpusher_api_url),
            ("global.wechat_api_url", &g.wechat_api_url),
            ("global.wecom_api_url", &g.wecom_api_url),
        ] {
            if let Err(m) = check_http_url(url) {
                report(key.into(), m);
            }
        }
        if self.web.max_body_bytes < 1024 {
            report("web.max_body_bytes".into(), "must be at least 1024".into());
        }
        if self.web.max_connections == 0 {
            report("web.max_connections".into(), "must be at least 1".into());
        }
        self.web.check(report);
        if self.storage.queue_capacity == 0 {
            report("storage.queue_capacity".into(), "must be at least 1".into());
        }
        let storage = &mut self.storage;
        resolve_secret(
            base,
            "storage",
            "redis_url",
            &mut storage.redis_url,
            &storage.redis_url_file,
            false,
            report,
        );
        if let Some(url) = &storage.redis_url
            && let Err(m) = crate::store::redis::check_url(url)
        {
            let key = if storage.redis_url_file.is_some() {
                "storage.redis_url_file"
            } else {
                "storage.redis_url"
            };
            report(key.into(), m);
        }
        if storage.redis_prefix.is_empty() || storage.redis_prefix.contains(char::is_whitespace) {
            report(
                "storage.redis_prefix".into(),
                "must be non-empty and without spaces".into(),
            );
        }
        if storage.redis_visibility_timeout < Duration::from_secs(1) {
            report(
                "storage.redis_visibility_timeout".into(),
                "must be at least 1s".into(),
            );
        }
        if let Some(s) = &mut storage.redis_sentinel {
            let at = "storage.redis_sentinel";
            let (p, pf) = (&mut s.password, &s.password_file);
            resolve_secret(base, at, "password", p, pf, false, report);
            let (p, pf) = (&mut s.sentinel_password, &s.sentinel_password_file);
            resolve_secret(base, at, "sentinel_password", p, pf, false, report);
            s.check(at, report);
            if storage.redis_url.is_some() || storage.redis_url_file.is_some() {
                report(
                    "storage".into(),
                    "redis_url and redis_sentinel are mutually exclusive".into(),
                );
            }
        }
        let redis = storage.redis_url.is_some() || storage.redis_sentinel.is_some();
        if storage.redis_wait_replicas > 0 && !redis {
            report(
                "storage.redis_wait_replicas".into(),
                "needs redis_url or redis_sentinel (the embedded store has no replicas)".into(),
            );
        }
        if storage.redis_wait_replicas > 0 && storage.redis_wait_timeout.is_zero() {
            report(
                "storage.redis_wait_timeout".into(),
                "must be more than 0 (WAIT 0 waits for ever)".into(),
            );
        }
        self.templates = self
            .templates
            .iter()
            .map(|t| base.join(t).to_string_lossy().into_owned())
            .collect();

        let auth = &mut self.auth;
        resolve_secret(
            base,
            "auth",
            "bearer_token",
            &mut auth.bearer_token,
            &auth.bearer_token_file,
            false,
            report,
        );
        if let Some(basic) = &mut auth.basic_auth {
            resolve_secret(
                base,
                "auth.basic_auth",
                "password",
                &mut basic.password,
                &basic.password_file,
                true,
                report,
            );
            if auth.bearer_token.is_some() {
                report(
                    "auth".into(),
                    "bearer_token and basic_auth are mutually exclusive".into(),
                );
            }
        }
        resolve_secret(
            base,
            "auth",
            "grafana_hmac_secret",
            &mut auth.grafana_hmac_secret,
            &auth.grafana_hmac_secret_file,
            false,
            report,
        );
        if let Some(admin) = &mut auth.admin {
            resolve_secret(
                base,
                "auth.admin",
                "bearer_token",
                &mut admin.bearer_token,
                &admin.bearer_token_file,
                false,
                report,
            );
            match (&mut admin.basic_auth, admin.bearer_token.is_some()) {
                (Some(_), true) => report(
                    "auth.admin".into(),
                    "bearer_token and basic_auth are mutually exclusive".into(),
                ),
                (Some(basic), false) => resolve_secret(
                    base,
                    "auth.admin.basic_auth",
                    "password",
                    &mut basic.password,
                    &basic.password_file,
                    true,
                    report,
                ),
                (None, false) if admin.bearer_token_file.is_none() => report(
                    "auth.admin".into(),
                    "one of basic_auth, bearer_token and bearer_token_file is required".into(),
                ),
                (None, _) => {}
            }
        }

        if let Some(c) = &mut self.chatops {
            c.resolve(base, report);
        }
        oncall::check(self, base, report);

        let globals = self.channel_globals();
        let mut names = HashSet::new();
        for (i, r) in self.receivers.iter_mut().enumerate() {
            let at = format!("receivers[{i}]");
            if r.name.is_empty() {
                report(format!("{at}.name"), "must not be empty".into());
            } else if !names.insert(r.name.clone()) {
                report(
                    format!("{at}.name"),
                    format!("duplicate receiver name {:?}", r.name),
                );
            }
            for (key, c) in r.integrations_mut() {
                c.check(&mut Check {
                    base,
                    at: format!("{at}.{key}"),
                    globals: &globals,
                    report,
                    secrets: &mut self.channel_secrets,
                });
            }
        }
        if self.receivers.is_empty() {
            report(
                "receivers".into(),
                "at least one receiver is required".into(),
            );
        }
        for (i, r) in self.receivers.iter().enumerate() {
            for (key, c) in r.integrations() {
                let Some(f) = c.fallback_receiver() else {
                    continue;
                };
                let at = format!("receivers[{i}].{key}.fallback_receiver");
                if !names.contains(f) {
                    report(at, format!("unknown receiver {f:?}"));
                } else if f == &r.name {
                    report(at, "a receiver cannot be its own fallback".into());
                }
            }
        }
        self.route.validate("route", &names, true, report);
    }

    /// The `global` settings and `chatops` callbacks the channels read.
    pub fn channel_globals(&self) -> Globals {
        let g = &self.global;
        Globals {
            summary_max_chars: g.summary_max_chars,
            wxpusher_api_url: g.wxpusher_api_url.clone(),
            wechat_api_url: g.wechat_api_url.clone(),
            wecom_api_url: g.wecom_api_url.clone(),
            callbacks: self
                .chatops
                .as_ref()
                .map(|c| c.callbacks())
                .unwrap_or_default(),
        }
    }

    pub fn receiver(&self, name: &str) -> Option<&ReceiverConfig> {
        self.receivers.iter().find(|r| r.name == name)
    }

    /// Every secret in the configuration, for scrubbing text.
    pub fn secrets(&self) -> Vec<Secret> {
        let mut out = Vec::new();
        if let Some(url) = &self.storage.redis_url {
            out.push(url.clone());
            out.extend(crate::store::redis::url_password(url));
        }
        if let Some(s) = &self.storage.redis_sentinel {
            out.extend(s.secrets());
        }
        let a = &self.auth;
        out.extend(a.bearer_token.clone());
        out.extend(a.grafana_hmac_secret.clone());
        if let Some(b) = &a.basic_auth {
            out.extend(b.password.clone());
        }
        if let Some(admin) = &a.admin {
            out.extend(admin.bearer_token.clone());
            out.extend(admin.basic_auth.as_ref().and_then(|b| b.password.clone()));
        }
        if let Some(c) = &self.chatops {
            out.extend(c.secrets());
        }
        out.extend(self.channel_secrets.iter().cloned());
        out.extend(oncall::secrets(self));
        out
    }
}

/// The YAML parser prefixes its messages with the (parent) path; the error already names it.
fn strip_path_prefix(message: &str, path: &str) -> String {
    if let Some((head, rest)) = message.split_once(": ")
        && !head.contains(' ')
        && path.starts_with(head)
    {
        return rest.to_string();
    }
    message.to_string()
}

pub(crate) use crate::channels::check::check_http_url;
pub(crate) use crate::secret::resolve_secret;

/// Replaces `${VAR}` with the environment variable's value; `$$` is a literal `$`. YAML
/// comments are left as they are, so documentation in them can mention `${VAR}`.
pub fn expand_env(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let (code, comment) = line.split_at(comment_start(line));
        out.push_str(&expand_line(code, n + 1)?);
        out.push_str(comment);
    }
    Ok(out)
}

/// Byte offset of a line's `#` comment (outside quotes, at the start or after a blank), or
/// the line's length.
fn comment_start(line: &str) -> usize {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single && prev != '\\' => double = !double,
            '#' if !single && !double && (prev == ' ' || prev == '\t' || i == 0) => return i,
            _ => {}
        }
        prev = c;
    }
    line.len()
}

fn expand_line(text: &str, line: usize) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err(format!("line {line}: unterminated ${{"));
            };
            let name = &body[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "line {line}: ${{{name}}} is not a valid environment variable reference"
                ));
            }
            match std::env::var(name) {
                Ok(v) => out.push_str(&v),
                Err(_) => {
                    return Err(format!(
                        "line {line}: environment variable {name} is not set"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Scrubber;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse(text, "test.yml", Path::new("."))
    }

    fn first_error(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.0[0].to_string(),
        }
    }

    #[test]
    fn builtin_default_is_valid() {
        let c = Config::builtin().unwrap();
        assert_eq!(c.route.receiver.as_deref(), Some("console"));
        assert_eq!(c.global.summary_max_chars, 20);
        assert_eq!(c.web.max_body_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn a_time_zone_that_is_not_an_iana_name_gets_a_hint() {
        let e = first_error(
            "global: {timezone: Beijing}\nroute: {receiver: a}\nreceivers:\n  - name: a\n    console_configs: [{}]\n",
        );
        assert!(
            e.starts_with(
                "test.yml: global.timezone: unknown time zone \"Beijing\": use an IANA time zone name such as Asia/Shanghai (did you mean Asia/Shanghai?)"
            ),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_names_file_path_and_line() {
        let e = first_error(
            "route: {receiver: a}\nreceivers:\n  - name: a\n    console_configs:\n      - colour: red\n",
        );
        assert!(
            e.starts_with(
                "test.yml: receivers[0].console_configs[0].colour: unknown field `colour`"
            ),
            "{e}"
        );
        assert!(e.contains("line 5"), "{e}");
    }

    #[test]
    fn every_structural_and_semantic_error_is_listed() {
        let err = parse(
            "dedupe:\n  window: 5 parsecs\nroute:\n  receiver: a\n  routes:\n    - matchers: ['team=~\"(db\"']\n      receiver: a\nreceivers:\n  - name: a\n    colour: red\n    console_configs: [{fallback_receiver: zz, speed: 3}]\n",
        )
        .unwrap_err();
        let all: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            all,
            [
                "test.yml: dedupe.window: invalid value: a string, expected a duration at line 2 column 11",
                "test.yml: route.routes[0].matchers[0]: matcher \"team=~\\\"(db\\\"\": invalid regex: unclosed group at line 6 column 18",
                "test.yml: receivers[0].colour: unknown field `colour`, expected one of `name`, `wxpusher_configs`, `console_configs`, `weixin_gateway_configs`, `official_account_configs`, `wecom_robot_configs`, `wecom_app_configs`, `escalation_policy` at line 10 column 5",
                "test.yml: receivers[0].console_configs[0].speed: unknown field `speed`, expected one of `text`, `send_resolved`, `fallback_receiver`, `max_attempts`, `max_age`, `rate_limit`, `coalesce_after` at line 11 column 47",
                "test.yml: receivers[0].console_configs[0].fallback_receiver: unknown receiver \"zz\"",
            ]
        );
    }

    #[test]
    fn repairs_do_not_invent_errors_or_shift_paths() {
        // A required key of the wrong type is reported once, not again as missing, and the
        // semantic checks do not complain about the placeholder that stood in for it.
        let err = parse(
            "route: {receiver: b}\nreceivers:\n  - {name: [1], console_configs: [{}]}\n  - {name: b, console_configs: [{}]}\n",
        )
        .unwrap_err();
        let all: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            all,
            [
                "test.yml: receivers[0].name: invalid type: sequence, expected a string at line 3 column 12"
            ]
        );
        // An element that had to go does not renumber the ones after it.
        let err = parse(
            "route: {receiver: b}\nreceivers:\n  - {colour: x}\n  - name: b\n    wxpusher_configs: [{uids: [U]}, {app_token: AT_x, uids: [U], bogus: 1}]\n",
        )
        .unwrap_err();
        let all: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(all.len(), 4, "{all:?}");
        assert!(all[0].starts_with("test.yml: receivers[0].colour: unknown field `colour`"));
        assert_eq!(
            all[1],
            "test.yml: receivers[0]: missing field `name` at line 3 column 5"
        );
        assert!(
            all[2].starts_with(
                "test.yml: receivers[1].wxpusher_configs[1].bogus: unknown field `bogus`"
            ) && all[2].ends_with(" at line 5 column 66"),
            "{all:?}"
        );
        assert_eq!(
            all[3],
            "test.yml: receivers[1].wxpusher_configs[0]: one of app_token, app_token_file, spts and spts_file is required"
        );
        // A required key that no placeholder can stand in for (`route:` with nothing under
        // it) is reported once, wherever it falls among the others: not again as missing from
        // the document, and the errors after it are still listed.
        for text in [
            "zz_unknown_key: 1\nroute:\nreceiver: b\nreceivers:\n  - {name: b, console_configs: [{}], colour: x}\n",
            "zz_unknown_key: 1\nreceiver: b\nreceivers:\n  - {name: b, console_configs: [{}], colour: x}\nroute:\n",
            "route:\nreceiver: b\nreceivers:\n  - {name: b, console_configs: [{}], colour: x}\n",
        ] {
            let err = parse(text).unwrap_err();
            let mut paths: Vec<&str> = err.0.iter().map(|e| e.path.as_str()).collect();
            paths.sort_unstable();
            let want = if text.starts_with("zz") {
                vec!["receiver", "receivers[0].colour", "route", "zz_unknown_key"]
            } else {
                vec!["receiver", "receivers[0].colour", "route"]
            };
            assert_eq!(paths, want, "{text}: {err}");
        }
        // Not one mapping: nothing to repair, the one error stands.
        assert_eq!(
            parse("- a\n").unwrap_err().to_string(),
            "test.yml: invalid type: sequence, expected struct Config"
        );
    }

    #[test]
    fn listing_stops_after_a_bounded_number_of_rounds() {
        let keys: String = (0..80).map(|i| format!("k{i}: 1\n")).collect();
        let err = parse(&format!(
            "{keys}route: {{receiver: a}}\nreceivers: [{{name: a}}]\n"
        ))
        .unwrap_err();
        let n = recover::MAX_ROUNDS + 1;
        assert_eq!(err.0.len(), n + 1);
        assert_eq!(err.0[1].to_string().split(':').nth(1), Some(" k1"));
        assert_eq!(
            err.0[n].to_string(),
            format!("test.yml: more errors may follow (stopped looking after {n})")
        );
    }

    #[test]
    fn bad_matcher_names_its_path() {
        let e = first_error(
            "route:\n  receiver: a\n  routes:\n    - matchers: ['severity=~\"(\"']\n      receiver: a\nreceivers: [{name: a}]\n",
        );
        assert!(
            e.starts_with("test.yml: route.routes[0].matchers[0]: "),
            "{e}"
        );
        assert!(e.contains("invalid regex"), "{e}");
    }

    #[test]
    fn daily_budget_per_uid_must_be_positive() {
        let e = first_error(
            "route: {receiver: a}\nreceivers:\n  - name: a\n    wxpusher_configs: [{app_token: AT_x, uids: [U], daily_budget_per_uid: 0}]\n",
        );
        assert_eq!(
            e,
            "test.yml: receivers[0].wxpusher_configs[0].daily_budget_per_uid: must be at least 1"
        );
        let c = parse(
            "route: {receiver: a}\nreceivers:\n  - name: a\n    wxpusher_configs: [{app_token: AT_x, uids: [U], daily_budget_per_uid: 3}]\n",
        )
        .unwrap();
        assert_eq!(
            c.receivers[0].wxpusher_configs[0].daily_budget_per_uid,
            Some(3)
        );
    }

    #[test]
    fn unknown_receiver_and_missing_token_are_all_listed() {
        let err = parse(
            "route: {receiver: nope}\nreceivers:\n  - name: a\n    wxpusher_configs: [{uids: [UID_1]}]\n",
        )
        .unwrap_err();
        let all: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
        assert!(all.contains(&"test.yml: receivers[0].wxpusher_configs[0]: one of app_token, app_token_file, spts and spts_file is required".to_string()), "{all:?}");
        assert!(
            all.contains(&"test.yml: route.receiver: unknown receiver \"nope\"".to_string()),
            "{all:?}"
        );
    }

    #[test]
    fn fallback_receiver_must_exist_and_differ() {
        let err = parse("route: {receiver: a}\nreceivers:\n  - name: a\n    console_configs: [{fallback_receiver: a}, {fallback_receiver: zz}]\n").unwrap_err();
        let all: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            all,
            [
                "test.yml: receivers[0].console_configs[0].fallback_receiver: a receiver cannot be its own fallback",
                "test.yml: receivers[0].console_configs[1].fallback_receiver: unknown receiver \"zz\"",
            ]
        );
    }

    #[test]
    fn weixin_gateway_defaults_and_validation() {
        let c = parse("route: {receiver: a}\nreceivers:\n  - name: a\n    weixin_gateway_configs: [{url: 'http://gw:8787', account_id: wx-1, to_user_ids: [u@im.wechat], bearer_token: tok-secret}]\n").unwrap();
        let g = &c.receivers[0].weixin_gateway_configs[0];
        assert_eq!(g.user_backoff, Duration::from_secs(1800));
        assert_eq!(g.health_interval, Duration::from_secs(30));
        assert!(g.send_resolved);
        assert!(c.secrets().iter().any(|s| s.expose() == "tok-secret"));
        let err = parse("route: {receiver: a}\nreceivers:\n  - name: a\n    weixin_gateway_configs: [{url: 'gw:8787', account_id: '', to_user_ids: [], user_backoff: 0s, health_interval: 10ms, fallback_receiver: b}]\n").unwrap_err();
        let all: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            all,
            [
                "test.yml: receivers[0].weixin_gateway_configs[0].url: \"gw:8787\" is not an http(s) URL",
                "test.yml: receivers[0].weixin_gateway_configs[0].account_id: must not be empty",
                "test.yml: receivers[0].weixin_gateway_configs[0].to_user_ids: needs at least one user",
                "test.yml: receivers[0].weixin_gateway_configs[0].user_backoff: must be longer than 0s",
                "test.yml: receivers[0].weixin_gateway_configs[0].health_interval: must be at least 100ms",
                "test.yml: receivers[0].weixin_gateway_configs[0].fallback_receiver: unknown receiver \"b\"",
            ]
        );
    }

    #[test]
    fn official_account_errors_name_their_paths() {
        let err = parse("route: {receiver: a}\nreceivers:\n  - name: a\n    official_account_configs:\n      - {app_id: '', template_id: T, to_openids: [], data: {}, max_concurrency: 0, fallback_receiver: zz, miniprogram: {appid: wx1, pagepath: ''}}\n").unwrap_err();
        let all: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
        let at = "test.yml: receivers[0].official_account_configs[0]";
        assert_eq!(
            all,
            [
                format!("{at}: one of app_secret and app_secret_file is required"),
                format!("{at}.app_id: must not be empty"),
                format!("{at}.to_openids: needs at least one openid"),
                format!("{at}.data: needs at least one field"),
                format!("{at}.miniprogram.pagepath: must not be empty"),
                format!("{at}.max_concurrency: must be between 1 and 64"),
                format!("{at}.fallback_receiver: unknown receiver \"zz\""),
            ]
        );
        let e = first_error(
            "route: {receiver: a}\nreceivers:\n  - name: a\n    official_account_configs: [{app_id: wx1, app_secret: abcd, template_id: T, to_openids: [o], kind: news}]\n",
        );
        assert!(
            e.starts_with(
                "test.yml: receivers[0].official_account_configs[0].kind: unknown variant, expected `template` or `subscribe`"
            ),
            "{e}"
        );
    }

    #[test]
    fn every_channel_secret_is_recorded_for_masking() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "robot-key-from-file\n").unwrap();
        let text = "route: {receiver: a}\nreceivers:\n  - name: a\n    wxpusher_configs: [{app_token: AT_token1, uids: [U]}, {spts: [SPT_simple1]}]\n    weixin_gateway_configs: [{url: 'http://gw', account_id: b, to_user_ids: [u], bearer_token: gw-bearer}]\n    official_account_configs: [{app_id: wx1, app_secret: oa-secret, template_id: T, to_openids: [o]}]\n    wecom_robot_configs: [{key_file: key}, {key: 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=pasted-key'}]\n    wecom_app_configs: [{corp_id: ww, agent_id: 1, api_secret: app-secret, to_user: '@all'}]\n";
        let c = Config::parse(text, "t.yml", dir.path()).unwrap();
        let secrets: Vec<String> = c.secrets().iter().map(|s| s.expose().to_string()).collect();
        for want in [
            "AT_token1",
            "SPT_simple1",
            "gw-bearer",
            "oa-secret",
            "robot-key-from-file",
            "pasted-key",
            "app-secret",
        ] {
            assert!(
                secrets.iter().any(|s| s == want),
                "{want} not in {secrets:?}"
            );
        }
    }

    #[test]
    fn secret_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "AT_fromfile\n").unwrap();
        let c = Config::parse(
            "route: {receiver: a}\nreceivers:\n  - name: a\n    wxpusher_configs: [{app_token_file: tok, uids: [U]}]\n",
            "x.yml",
            dir.path(),
        )
        .unwrap();
        let tok = c.receivers[0].wxpusher_configs[0]
            .app_token
            .as_ref()
            .unwrap();
        assert_eq!(tok.expose(), "AT_fromfile");
    }

    #[test]
    fn env_expansion() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("AMW_TEST_TZ", "UTC") };
        assert_eq!(expand_env("a ${AMW_TEST_TZ} $$5").unwrap(), "a UTC $5");
        assert!(
            expand_env("x: ${AMW_SURELY_UNSET_VAR}")
                .unwrap_err()
                .contains("AMW_SURELY_UNSET_VAR is not set")
        );
        assert!(expand_env("x: ${bad-name}").is_err());
        assert_eq!(
            expand_env("a: 1 # see ${NOT_SET_ANYWHERE}\n").unwrap(),
            "a: 1 # see ${NOT_SET_ANYWHERE}\n"
        );
        assert_eq!(expand_env("a: '#${AMW_TEST_TZ}'").unwrap(), "a: '#UTC'");
    }

    #[test]
    fn durations_and_locale_are_human() {
        let c = parse("global: {locale: en}\ndedupe: {window: 2m, resolved_group_wait: 10s}\nroute: {receiver: a}\nreceivers: [{name: a}]\n").unwrap();
        assert_eq!(c.global.locale, Locale::En);
        assert_eq!(c.dedupe.window, Duration::from_secs(120));
        let e = first_error("global: {locale: fr}\nroute: {receiver: a}\nreceivers: [{name: a}]\n");
        assert!(
            e.starts_with("test.yml: global.locale: unknown variant, expected"),
            "{e}"
        );
    }

    #[test]
    fn redis_url_is_a_checked_secret_with_a_file_twin() {
        let tail = "route: {receiver: a}\nreceivers: [{name: a}]\n";
        let c = parse(&format!(
            "storage: {{redis_url: 'redis://:pa55-w0rd@redis:6379/0', redis_visibility_timeout: 5s}}\n{tail}"
        ))
        .unwrap();
        assert_eq!(c.storage.redis_prefix, "amw:");
        assert_eq!(c.storage.redis_visibility_timeout, Duration::from_secs(5));
        // Never printed, and masked (whole and the password alone) wherever text is scrubbed.
        assert!(!format!("{c:?}").contains("pa55-w0rd"));
        let scrubber = Scrubber::new(c.secrets());
        assert_eq!(
            scrubber.scrub("auth pa55-w0rd failed"),
            "auth <secret> failed"
        );
        let e = first_error(&format!(
            "storage: {{redis_url: 'http://:pa55-w0rd@redis:6379'}}\n{tail}"
        ));
        assert_eq!(
            e,
            "test.yml: storage.redis_url: must be a redis:// or rediss:// URL"
        );
        let e = first_error(&format!(
            "storage: {{redis_prefix: '', redis_visibility_timeout: 10ms}}\n{tail}"
        ));
        assert_eq!(
            e,
            "test.yml: storage.redis_prefix: must be non-empty and without spaces"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("url"), "rediss://:pw-from-file@r:6380/1\n").unwrap();
        let c = Config::parse(
            &format!("storage: {{redis_url_file: url}}\n{tail}"),
            "x.yml",
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            c.storage.redis_url.as_ref().map(|u| u.expose()),
            Some("rediss://:pw-from-file@r:6380/1")
        );
        let e = Config::parse(
            &format!("storage: {{redis_url: 'redis://r', redis_url_file: url}}\n{tail}"),
            "x.yml",
            dir.path(),
        )
        .unwrap_err();
        assert_eq!(
            e.0[0].to_string(),
            "x.yml: storage: redis_url and redis_url_file are mutually exclusive"
        );
    }

    #[test]
    fn redis_sentinel_is_checked_and_its_passwords_read_from_files() {
        let tail = "route: {receiver: a}\nreceivers: [{name: a}]\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("redis-pw"), "data-pa55word\n").unwrap();
        std::fs::write(dir.path().join("sentinel-pw"), "sentinel-pa55word\n").unwrap();
        let c = Config::parse(
            &format!(
                "storage:\n  redis_sentinel:\n    master_name: mymaster\n    sentinels: [\"s0:26379\", \"s1:26379\", \"[::1]:26379\"]\n    password_file: redis-pw\n    sentinel_password_file: sentinel-pw\n    db: 2\n  redis_wait_replicas: 1\n  redis_wait_timeout: 250ms\n{tail}"
            ),
            "x.yml",
            dir.path(),
        )
        .unwrap();
        let s = c.storage.redis_sentinel.as_ref().unwrap();
        assert_eq!(s.master_name, "mymaster");
        assert_eq!(s.db, 2);
        assert_eq!(
            s.password.as_ref().map(|p| p.expose()),
            Some("data-pa55word")
        );
        assert_eq!(
            s.sentinel_password.as_ref().map(|p| p.expose()),
            Some("sentinel-pa55word")
        );
        assert_eq!(c.storage.redis_wait_replicas, 1);
        assert_eq!(c.storage.redis_wait_timeout, Duration::from_millis(250));
        assert!(!format!("{c:?}").contains("pa55word"));
        let scrubber = Scrubber::new(c.secrets());
        assert_eq!(
            scrubber.scrub("auth data-pa55word / sentinel-pa55word"),
            "auth <secret> / <secret>"
        );

        let e = first_error(&format!(
            "storage:\n  redis_url: 'redis://r:6379'\n  redis_sentinel: {{master_name: m, sentinels: ['s:26379']}}\n{tail}"
        ));
        assert_eq!(
            e,
            "test.yml: storage: redis_url and redis_sentinel are mutually exclusive"
        );
        let e = first_error(&format!(
            "storage:\n  redis_sentinel: {{master_name: m, sentinels: []}}\n{tail}"
        ));
        assert_eq!(
            e,
            "test.yml: storage.redis_sentinel.sentinels: must name at least one sentinel (host:port)"
        );
        let e = first_error(&format!(
            "storage:\n  redis_sentinel: {{master_name: m, sentinels: ['s:26379', 'redis://s:26379']}}\n{tail}"
        ));
        assert_eq!(
            e,
            "test.yml: storage.redis_sentinel.sentinels[1]: \"redis://s:26379\" is not host:port"
        );
        let e = first_error(&format!(
            "storage:\n  redis_sentinel: {{master_name: '', sentinels: ['s:26379']}}\n{tail}"
        ));
        assert_eq!(
            e,
            "test.yml: storage.redis_sentinel.master_name: must be non-empty"
        );
        let e = first_error(&format!("storage: {{redis_wait_replicas: 1}}\n{tail}"));
        assert_eq!(
            e,
            "test.yml: storage.redis_wait_replicas: needs redis_url or redis_sentinel (the embedded store has no replicas)"
        );
        let e = first_error(&format!(
            "storage: {{redis_url: 'redis://r:6379', redis_wait_replicas: 1, redis_wait_timeout: 0s}}\n{tail}"
        ));
        assert_eq!(
            e,
            "test.yml: storage.redis_wait_timeout: must be more than 0 (WAIT 0 waits for ever)"
        );
        let e = first_error(&format!(
            "storage:\n  redis_sentinel: {{master_name: m, sentinels: ['s:26379'], password: x}}\n{tail}"
        ));
        assert_eq!(
            e,
            "test.yml: storage.redis_sentinel.password: is too short to be a real secret (at least 4 characters)"
        );
        let e = first_error(&format!(
            "storage:\n  redis_sentinel: {{master_name: m, sentinel: ['s:26379']}}\n{tail}"
        ));
        assert!(
            e.starts_with("test.yml: storage.redis_sentinel.sentinel: unknown field `sentinel`, expected one of `master_name`, `sentinels`"),
            "{e}"
        );
    }

    #[test]
    fn chatops_block_is_validated_and_its_secrets_scrubbed() {
        let c = parse("chatops:\n  alertmanager_url: http://am:9093\n  wxpusher_callback_secret: cb-secret-0123456789\n  weixin_gateway_secret: gw-secret-0123456789\n  allowed: [UID_a, u@im.wechat]\nroute: {receiver: a}\nreceivers:\n  - name: a\n    wxpusher_configs: [{app_token: AT_x, subscriber_tags: [team-db]}]\n").unwrap();
        let chat = c.chatops.as_ref().unwrap();
        use crate::config::chatops::Channel;
        assert!(
            chat.is_allowed(Channel::of_kind("weixin_gateway").unwrap(), "u@im.wechat")
                && !chat.is_allowed(Channel::of_kind("wxpusher").unwrap(), "UID_b")
        );
        assert_eq!(
            c.receivers[0].wxpusher_configs[0].subscriber_tags,
            ["team-db"]
        );
        let secrets: Vec<String> = c.secrets().iter().map(|s| s.expose().to_string()).collect();
        assert!(secrets.contains(&"cb-secret-0123456789".to_string()));
        assert!(secrets.contains(&"gw-secret-0123456789".to_string()));
        assert!(!format!("{chat:?}").contains("cb-secret"));

        let err = parse("chatops:\n  alertmanager_url: am:9093\n  wxpusher_callback_secret: short\n  weixin_gateway_secret: 'has/slash-0123456789'\n  allowed: ['']\nroute: {receiver: a}\nreceivers: [{name: a}]\n").unwrap_err();
        let all: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            all,
            [
                "test.yml: chatops.alertmanager_url: \"am:9093\" is not an http(s) URL",
                "test.yml: chatops.wxpusher_callback_secret: must be at least 16 characters",
                "test.yml: chatops.weixin_gateway_secret: may only contain letters, digits and - _ . ~",
                "test.yml: chatops.allowed[0]: must not be empty",
            ]
        );
        let err = parse("chatops: {alertmanager_url: 'http://am', allowed: []}\nroute: {receiver: a}\nreceivers: [{name: a}]\n").unwrap_err();
        let all: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            all,
            [
                "test.yml: chatops: needs wxpusher_callback_secret or weixin_gateway_secret (or a _file twin): without one no reply can arrive",
                "test.yml: chatops.allowed: needs at least one WxPusher UID or gateway user id",
            ]
        );
        let e = first_error(
            "chatops: {alertmanager_url: 'http://am', allowed: [U], colour: red}\nroute: {receiver: a}\nreceivers: [{name: a}]\n",
        );
        assert!(
            e.starts_with("test.yml: chatops.colour: unknown field `colour`"),
            "{e}"
        );
        // Subscriber tags need the WxPusher callback, which is how subscribers are learned.
        let err = parse("route: {receiver: a}\nreceivers:\n  - name: a\n    wxpusher_configs: [{app_token: AT_x, subscriber_tags: ['']}]\n").unwrap_err();
        let all: Vec<String> = err.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            all,
            [
                "test.yml: receivers[0].wxpusher_configs[0].subscriber_tags[0]: must be 1 to 64 characters",
                "test.yml: receivers[0].wxpusher_configs[0].subscriber_tags: needs chatops.wxpusher_callback_secret: subscribers are learned from WxPusher's callback",
            ]
        );
    }

    #[test]
    fn web_limits_have_defaults_and_are_checked() {
        let c = Config::builtin().unwrap();
        assert_eq!(c.web.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.web.body_read_timeout, Duration::from_secs(30));
        assert_eq!(c.web.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.web.max_inflight_body_bytes, 64 * 1024 * 1024);
        assert_eq!(c.web.http2_max_concurrent_streams, 16);
        assert_eq!(c.web.http2_keep_alive_interval, Duration::from_secs(30));
        assert_eq!(c.web.http2_keep_alive_timeout, Duration::from_secs(10));
        let route = "route: {receiver: a}\nreceivers: [{name: a, console_configs: [{}]}]\n";
        let errors = |web: &str| -> Vec<String> {
            match parse(&format!("web: {web}\n{route}")) {
                Ok(_) => vec![],
                Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
            }
        };
        assert_eq!(
            errors("{max_body_bytes: 2000000, max_inflight_body_bytes: 1000000}"),
            [
                "test.yml: web.max_inflight_body_bytes: must be at least web.max_body_bytes (2000000), or no body that large is ever accepted"
            ]
        );
        assert_eq!(
            errors("{max_inflight_body_bytes: 5000000000}"),
            ["test.yml: web.max_inflight_body_bytes: must be at most 4294967295"]
        );
        assert_eq!(
            errors("{http2_max_concurrent_streams: 0}"),
            ["test.yml: web.http2_max_concurrent_streams: must be at least 1"]
        );
        assert_eq!(
            errors("{header_read_timeout: 0s, body_read_timeout: 0s, idle_timeout: 0s}"),
            [
                "test.yml: web.header_read_timeout: must be longer than 0s",
                "test.yml: web.body_read_timeout: must be longer than 0s",
                "test.yml: web.idle_timeout: must be longer than 0s",
            ]
        );
        assert!(
            errors("{body_read_timeout: 300ms, idle_timeout: 2m, http2_max_concurrent_streams: 4}")
                .is_empty()
        );
    }

    #[test]
    fn admin_credentials_are_checked() {
        let route = "route: {receiver: a}\nreceivers: [{name: a, console_configs: [{}]}]\n";
        let errors = |admin: &str| -> Vec<String> {
            match parse(&format!("auth: {{ admin: {admin} }}\n{route}")) {
                Ok(_) => vec![],
                Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
            }
        };
        assert_eq!(
            errors("{}"),
            [
                "test.yml: auth.admin: one of basic_auth, bearer_token and bearer_token_file is required"
            ]
        );
        assert_eq!(
            errors("{bearer_token: tok-admin, basic_auth: {username: sre, password: pw-admin}}"),
            ["test.yml: auth.admin: bearer_token and basic_auth are mutually exclusive"]
        );
        assert_eq!(
            errors("{basic_auth: {username: sre}}"),
            ["test.yml: auth.admin.basic_auth: one of password and password_file is required"]
        );
        assert!(errors("{basic_auth: {username: sre, password: pw-admin}}").is_empty());
        assert!(errors("{bearer_token: tok-admin}").is_empty());
    }
}
