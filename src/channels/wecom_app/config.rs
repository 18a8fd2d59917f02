//! `wecom_app_configs` entries: the YAML keys, their defaults and the checks serde cannot
//! make. The `*_file` secret is read by the config loader; what is checked here needs no I/O.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{APP_RATE, WecomApp};
use crate::channels::options::{RateLimit, common_keys};
use crate::channels::{Build, ChannelConfig, Check, Kind};
use crate::secret::Secret;

/// Which application message type is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppMsgType {
    /// Plain text, 2048 bytes: the one that reaches the WeChat plugin.
    #[default]
    Text,
    /// Markdown, 2048 bytes; shown only in the WeCom client.
    Markdown,
    /// A card: title ≤ 128 bytes, description ≤ 512 bytes, a url, a button text ≤ 4 characters.
    Textcard,
}

impl AppMsgType {
    pub fn as_str(self) -> &'static str {
        match self {
            AppMsgType::Text => "text",
            AppMsgType::Markdown => "markdown",
            AppMsgType::Textcard => "textcard",
        }
    }
}

fn default_true() -> bool {
    true
}

/// WeCom drops a repeat of the same content within this (at most four hours).
fn default_duplicate_check_interval() -> Duration {
    Duration::from_secs(1800)
}

/// One WeCom application.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WecomAppConfig {
    /// The corp's id (`ww…`), from 我的企业 → 企业信息.
    pub corp_id: String,
    /// The application's AgentId.
    pub agent_id: i64,
    /// The application's Secret; exactly one of this and `api_secret_file`.
    pub api_secret: Option<Secret>,
    pub api_secret_file: Option<PathBuf>,
    /// The callback's Token (接收消息 → 设置API接收): with `callback_aes_key`, pages to people
    /// are button cards and `/callback/wecom` takes their clicks; without, textcards.
    pub callback_token: Option<Secret>,
    pub callback_token_file: Option<PathBuf>,
    /// The callback's EncodingAESKey (43 characters).
    pub callback_aes_key: Option<Secret>,
    pub callback_aes_key_file: Option<PathBuf>,
    /// Userids separated by `|` (templated); `@all` for everyone in the app's range.
    pub to_user: Option<String>,
    /// Department ids separated by `|` (templated).
    pub to_party: Option<String>,
    /// Tag ids separated by `|` (templated).
    pub to_tag: Option<String>,
    #[serde(default)]
    pub msgtype: AppMsgType,
    /// Text or markdown template; defaults to `wecom_app.text` or `wecom_app.markdown`.
    pub content: Option<String>,
    /// Textcard title template (≤ 128 bytes; the preview shows its first 20 characters).
    pub title: Option<String>,
    /// Textcard description template (≤ 512 bytes).
    pub description: Option<String>,
    /// Textcard link template; `{{externalURL}}` when absent.
    pub url: Option<String>,
    /// Textcard button text, at most 4 characters (WeCom's default: 详情).
    pub btntxt: Option<String>,
    /// WeCom drops the same content sent again within this (≤ 4h), so a send retried after
    /// a timeout is not shown twice.
    #[serde(default = "default_duplicate_check_interval", with = "humantime_serde")]
    pub duplicate_check_interval: Duration,
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Receiver that gets the notification when this integration gives up on it.
    pub fallback_receiver: Option<String>,
    /// Overrides `global.wecom_api_url`.
    pub api_url: Option<String>,
    /// Attempts before giving up (default 10).
    pub max_attempts: Option<u32>,
    /// Older than this since acceptance, a failing notification is given up (default 1h).
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Send calls per second for this application (default 30 a minute).
    pub rate_limit: Option<RateLimit>,
    /// A backlog that would take longer than this to send is merged into one digest (10s).
    #[serde(default, with = "humantime_serde")]
    pub coalesce_after: Option<Duration>,
}

impl WecomAppConfig {
    /// Checks what serde cannot; the secret was already read from its file by the loader.
    fn check_fields(&self, at: &str, report: &mut dyn FnMut(String, String)) {
        if self.corp_id.trim().is_empty() {
            report(format!("{at}.corp_id"), "must not be empty".into());
        }
        if self.agent_id <= 0 {
            report(
                format!("{at}.agent_id"),
                "must be the application's AgentId (a positive number)".into(),
            );
        }
        let targets = [&self.to_user, &self.to_party, &self.to_tag];
        if targets
            .iter()
            .all(|t| t.as_deref().is_none_or(|t| t.trim().is_empty()))
        {
            report(
                at.to_string(),
                "needs at least one of to_user, to_party and to_tag".into(),
            );
        }
        if let Some(b) = &self.btntxt
            && (b.trim().is_empty() || b.chars().count() > super::BTNTXT_MAX_CHARS)
        {
            report(format!("{at}.btntxt"), "must be 1 to 4 characters".into());
        }
        if self.msgtype != AppMsgType::Textcard {
            for (key, v) in [
                ("title", &self.title),
                ("description", &self.description),
                ("url", &self.url),
                ("btntxt", &self.btntxt),
            ] {
                if v.is_some() {
                    report(
                        format!("{at}.{key}"),
                        "only applies to msgtype: textcard".into(),
                    );
                }
            }
        } else if self.content.is_some() {
            report(
                format!("{at}.content"),
                "does not apply to msgtype: textcard (use title and description)".into(),
            );
        }
        if self.duplicate_check_interval.is_zero()
            || self.duplicate_check_interval > Duration::from_secs(4 * 3600)
        {
            report(
                format!("{at}.duplicate_check_interval"),
                "must be between 1s and 4h".into(),
            );
        }
        if let Some(url) = &self.api_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            report(
                format!("{at}.api_url"),
                format!("{url:?} is not an http(s) URL"),
            );
        }
    }
}

impl ChannelConfig for WecomAppConfig {
    common_keys!(super::KIND, Some(APP_RATE));

    fn check(&mut self, cx: &mut Check<'_>) {
        let at = cx.at.clone();
        self.delivery_options(&at, cx.report);
        cx.secret(
            "api_secret",
            &mut self.api_secret,
            &self.api_secret_file,
            true,
        );
        crate::channels::wxcrypt::check_callback_keys(
            cx,
            (&mut self.callback_token, &self.callback_token_file),
            (&mut self.callback_aes_key, &self.callback_aes_key_file),
            true,
        );
        self.check_fields(&at, cx.report);
    }

    fn build(&self, cx: &mut Build<'_>) -> Kind {
        let api_url = self
            .api_url
            .clone()
            .unwrap_or_else(|| cx.globals.wecom_api_url.clone());
        // Tokens outlive this runtime: the cache is the service's, per (corp, secret).
        let tokens = cx.upstreams.channels.wecom_app.source(
            &api_url,
            &self.corp_id,
            self.api_secret.clone().unwrap_or_default(),
        );
        let default_content = match self.msgtype {
            AppMsgType::Markdown => "wecom.markdown",
            _ => "wecom.text",
        };
        let mut target =
            |key: &str, src: &Option<String>| src.as_ref().map(|s| cx.template(key, Some(s), ""));
        let (to_user, to_party, to_tag) = (
            target("to_user", &self.to_user),
            target("to_party", &self.to_party),
            target("to_tag", &self.to_tag),
        );
        let delivery = self.delivery_options(&cx.at, &mut |_, _| {});
        Kind::WecomApp(WecomApp {
            api_url,
            corp_id: self.corp_id.clone(),
            agent_id: self.agent_id,
            to_user,
            to_party,
            to_tag,
            msgtype: self.msgtype,
            content: cx.template("content", self.content.as_ref(), default_content),
            summary: "wecom.summary".into(),
            title: cx.template("title", self.title.as_ref(), "wecom.textcard.title"),
            description: cx.template(
                "description",
                self.description.as_ref(),
                "wecom.textcard.description",
            ),
            url: cx.template("url", self.url.as_ref(), crate::channels::URL_TEMPLATE),
            btntxt: self.btntxt.clone(),
            duplicate_check_interval: self.duplicate_check_interval.as_secs().max(1),
            summary_max: cx.globals.summary_max_chars,
            tokens,
            rate_limit: delivery.rate_limit,
        })
    }
}
