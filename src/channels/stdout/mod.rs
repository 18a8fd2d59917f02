//! Prints rendered messages to standard output: the built-in default, and a way to see what a
//! configuration produces without any WeChat account.
//!
//! Standard output is often the same stream as the logs, and alert text is untrusted: a label
//! could hold a newline followed by a forged `level=error …` line, or ANSI escapes that rewrite
//! the terminal. So every line of a printed message starts with [`MARGIN`] (no line of it can
//! pass for a log line), and control characters other than the message's own line breaks are
//! shown escaped (`\u{1b}`), as are Unicode line separators and bidirectional overrides.

pub mod config;
pub mod templates;

use std::io::Write;

use serde_json::json;

use super::{Env, Outbound};
use crate::channels::error::DeliveryError;
use crate::text;
use crate::webhook::Notification;

/// The channel's kind name: metric label, identity prefix, `console_configs` (the module is
/// `stdout`, so that the channel and the web console are told apart).
pub const KIND: &str = "console";

#[derive(Debug)]
pub struct Console {
    /// Template name of the preview line.
    pub summary: String,
    /// Template name of the body.
    pub text: String,
    pub summary_max: usize,
}

impl Console {
    fn render(&self, env: &Env<'_>, n: &Notification) -> Result<String, DeliveryError> {
        let ctx = env.templates.context(n, env.now);
        let summary = text::truncate(
            &text::one_line(&env.templates.render(&self.summary, &ctx)?),
            self.summary_max,
        );
        let body = env.templates.render(&self.text, &ctx)?;
        Ok(for_terminal(&format!("{summary}\n\n{}", body.trim_end())))
    }

    pub fn prepare(&self, env: &Env<'_>, n: &Notification) -> Result<Vec<Outbound>, DeliveryError> {
        Ok(vec![Outbound {
            method: "PRINT",
            url: "stdout".into(),
            body: json!(self.render(env, n)?),
        }])
    }

    pub fn send(&self, env: &Env<'_>, n: &Notification) -> Result<(), DeliveryError> {
        let rendered = self.render(env, n)?;
        let rule = "─".repeat(60);
        let mut out = std::io::stdout().lock();
        // Standard output going away (a closed pipe) is not worth retrying a console print for.
        let _ = write!(out, "{rule}\n{rendered}{rule}\n");
        let _ = out.flush();
        Ok(())
    }
}

/// What starts every printed line of a message.
pub const MARGIN: &str = "│ ";

/// `text` made safe to print among log lines: each line (`\n`, or `\r\n`) prefixed with
/// [`MARGIN`] and ended with `\n`; every other control character, Unicode line or paragraph
/// separator and bidirectional control written as a `\u{…}` escape.
pub fn for_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        out.push_str(if line.is_empty() {
            MARGIN.trim_end()
        } else {
            MARGIN
        });
        for c in line.chars() {
            let invisible = c.is_control()
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
                )
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c);
            if invisible {
                out.push_str(&c.escape_unicode().to_string());
            } else {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::for_terminal;

    #[test]
    fn alert_text_cannot_forge_a_log_line_or_reach_the_terminal_raw() {
        let hostile = "DiskFull\nlevel=error msg=\"forged\"\r\n\u{1b}[2J\u{1b}]0;title\u{7}\rover\u{9b}31m \u{202e}txt\ttab\u{2028}x";
        let out = for_terminal(hostile);
        assert_eq!(
            out,
            "│ DiskFull\n│ level=error msg=\"forged\"\n│ \\u{1b}[2J\\u{1b}]0;title\\u{7}\\u{d}over\\u{9b}31m \\u{202e}txt\\u{9}tab\\u{2028}x\n"
        );
        assert!(out.lines().all(|l| l.starts_with('│')), "{out}");
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        // The message's own blank lines stay, without trailing spaces.
        assert_eq!(for_terminal("a\n\nb"), "│ a\n│\n│ b\n");
    }
}

#[cfg(test)]
mod identity {
    use crate::channels::identity_of;

    /// Stored deliveries are bound to this identity: a change of its inputs re-sends every
    /// pending job after an upgrade, so its value is pinned and changing it is a decision.
    #[test]
    fn identity_is_pinned() {
        assert_eq!(
            identity_of::<super::config::ConsoleConfig>("{}"),
            "console-e3b0c44298fc1c14"
        );
    }
}
