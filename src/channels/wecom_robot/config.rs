//! `wecom_robot_configs` entries: the YAML keys, their defaults, the checks serde cannot make
//! (reading the `*_file` secret) and the integration built from an entry.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ROBOT_RATE, WecomRobot};
use crate::channels::options::{RateLimit, common_keys};
use crate::channels::{Build, ChannelConfig, Check, Kind};
use crate::secret::Secret;

/// Which robot message type is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RobotMsgType {
    /// WeCom's markdown subset with `<font color>`; 4096 bytes. Not shown from personal WeChat.
    #[default]
    Markdown,
    /// Newer markdown: tables, lists, code blocks, no font colours; 4096 bytes.
    MarkdownV2,
    /// Plain text, the type that reaches people in external groups and the WeChat plugin;
    /// 2048 bytes.
    Text,
}

impl RobotMsgType {
    pub fn as_str(self) -> &'static str {
        match self {
            RobotMsgType::Markdown => "markdown",
            RobotMsgType::MarkdownV2 => "markdown_v2",
            RobotMsgType::Text => "text",
        }
    }

    /// The content limit in UTF-8 bytes.
    pub fn max_bytes(self) -> usize {
        match self {
            RobotMsgType::Markdown | RobotMsgType::MarkdownV2 => super::MARKDOWN_MAX_BYTES,
            RobotMsgType::Text => super::TEXT_MAX_BYTES,
        }
    }
}

fn default_true() -> bool {
    true
}

/// One WeCom group robot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WecomRobotConfig {
    /// The `key=` of the robot's webhook URL, or the whole URL pasted; exactly one of this and
    /// `key_file`. Whoever has it can post to the group: a secret.
    pub key: Option<Secret>,
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub msgtype: RobotMsgType,
    /// Message template; defaults to `wecom.markdown`, `wecom.markdown_v2` or `wecom.text`.
    pub content: Option<String>,
    /// WeCom userids to mention (templated; `@all` for everyone). In markdown they are written
    /// as `<@userid>` into the content.
    #[serde(default)]
    pub mentioned_list: Vec<String>,
    /// Mobile numbers to mention (templated; `@all` for everyone).
    #[serde(default)]
    pub mentioned_mobiles: Vec<String>,
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
    /// Messages per second for this robot (default 20 a minute, WeCom's limit per robot).
    pub rate_limit: Option<RateLimit>,
    /// A backlog that would take longer than this to send is merged into one digest (10s).
    #[serde(default, with = "humantime_serde")]
    pub coalesce_after: Option<Duration>,
}

/// The key in what was configured: the key itself, or the `key=` of a pasted webhook URL.
/// Errors never repeat the value (it is a secret).
pub fn robot_key(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let key = if raw.starts_with("http://") || raw.starts_with("https://") {
        let query = raw.split_once('?').map(|(_, q)| q).unwrap_or("");
        match query
            .split('&')
            .find_map(|kv| kv.strip_prefix("key="))
            .filter(|k| !k.is_empty())
        {
            Some(k) => k.split('#').next().unwrap_or(k),
            None => {
                return Err(
                    "is a URL without key=: paste the robot's whole webhook URL or only its key"
                        .into(),
                );
            }
        }
    } else {
        raw
    };
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(
            "must be the robot's key (letters, digits and -, as in key=… of its webhook URL) or the whole URL"
                .into(),
        );
    }
    Ok(key.to_string())
}

impl WecomRobotConfig {
    /// Checks what serde cannot and replaces a pasted URL by its key; `key` was already read
    /// from `key_file` by the loader.
    fn check_fields(&mut self, at: &str, report: &mut dyn FnMut(String, String)) {
        let key_at = if self.key_file.is_some() {
            "key_file"
        } else {
            "key"
        };
        match self.key.as_ref().map(|k| robot_key(k.expose())) {
            Some(Ok(key)) => self.key = Some(Secret::new(key)),
            Some(Err(m)) => report(format!("{at}.{key_at}"), m),
            None => {}
        }
        for (name, list) in [
            ("mentioned_list", &self.mentioned_list),
            ("mentioned_mobiles", &self.mentioned_mobiles),
        ] {
            for (k, m) in list.iter().enumerate() {
                if m.trim().is_empty() {
                    report(format!("{at}.{name}[{k}]"), "must not be empty".into());
                }
            }
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

impl ChannelConfig for WecomRobotConfig {
    common_keys!(super::KIND, Some(ROBOT_RATE));

    fn check(&mut self, cx: &mut Check<'_>) {
        let at = cx.at.clone();
        self.delivery_options(&at, cx.report);
        cx.secret("key", &mut self.key, &self.key_file, true);
        self.check_fields(&at, cx.report);
        // A pasted URL was reduced to its key: that is what is sent, and masked, too.
        if let Some(key) = &self.key {
            cx.record(key);
        }
    }

    fn build(&self, cx: &mut Build<'_>) -> Kind {
        let default_content = match self.msgtype {
            RobotMsgType::Markdown => "wecom.markdown",
            RobotMsgType::MarkdownV2 => "wecom.markdown_v2",
            RobotMsgType::Text => "wecom.text",
        };
        let mut mention = |key: &str, list: &[String]| -> Vec<String> {
            list.iter()
                .enumerate()
                .map(|(k, src)| cx.template(&format!("{key}[{k}]"), Some(src), ""))
                .collect()
        };
        let mentioned_list = mention("mentioned_list", &self.mentioned_list);
        let mentioned_mobiles = mention("mentioned_mobiles", &self.mentioned_mobiles);
        let delivery = self.delivery_options(&cx.at, &mut |_, _| {});
        Kind::WecomRobot(WecomRobot {
            api_url: self
                .api_url
                .clone()
                .unwrap_or_else(|| cx.globals.wecom_api_url.clone()),
            key: self.key.clone().unwrap_or_default(),
            msgtype: self.msgtype,
            content: cx.template("content", self.content.as_ref(), default_content),
            summary: "wecom.summary".into(),
            mentioned_list,
            mentioned_mobiles,
            summary_max: cx.globals.summary_max_chars,
            rate_limit: delivery.rate_limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_or_whole_url() {
        assert_eq!(robot_key("693a91f6-7xxx").unwrap(), "693a91f6-7xxx");
        assert_eq!(
            robot_key(" https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx\n")
                .unwrap(),
            "693a91f6-7xxx"
        );
        assert_eq!(
            robot_key("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?debug=1&key=abc-1")
                .unwrap(),
            "abc-1"
        );
        let e = robot_key("https://qyapi.weixin.qq.com/cgi-bin/webhook/send").unwrap_err();
        assert!(e.contains("without key="), "{e}");
        let e = robot_key("not a key!").unwrap_err();
        assert!(!e.contains("not a key"), "the value is a secret: {e}");
    }
}
