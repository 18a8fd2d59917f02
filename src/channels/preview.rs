//! What a person sees of a notification on their phone, read off the requests exactly as
//! they would be sent: the console's playground shows it beside the requests. Each channel
//! reads its own requests (`preview` in its folder); [`crate::channels::Integration::preview`]
//! picks the channel's.

use serde::Serialize;
use serde_json::Value;

use crate::channels::Outbound;
use crate::text;

/// What the phone shows of one integration's requests.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Preview {
    /// The lock-screen notification line, as sent (WxPusher's `summary`; the first text
    /// otherwise, cut to `global.summary_max_chars` the way the channels cut it).
    pub line: String,
    /// Its length in visible characters.
    pub line_chars: usize,
    /// `markdown`, `html` or `text`.
    pub format: String,
    /// The message body as the reader sees it after tapping.
    pub body: String,
    /// Official Account card fields after their type rules: `[key, value]` in order.
    pub card: Vec<(String, String)>,
    /// The link the message opens.
    pub url: Option<String>,
    /// Channels that split a message: the text of each part, in order (to the first
    /// recipient).
    pub parts: Vec<String>,
}

/// A string field of a request body; empty when absent.
pub(crate) fn str_of(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or("").to_string()
}

/// `text` on one line, cut to `max_chars` visible characters: a notification line.
pub(crate) fn line_of(text: &str, max_chars: usize) -> String {
    text::truncate(&text::one_line(text), max_chars)
}

/// `text` without its `<…>` tags (`<font color>`, `<div class>`: styling the reader does
/// not see as such).
pub(crate) fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Markdown as read: without tags, emphasis marks, heading and quote markers, and with each
/// link's text for the link.
pub(crate) fn markdown_text(text: &str) -> String {
    let text = strip_tags(text).replace("**", "");
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.lines().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let line = line.trim_start().trim_start_matches('#').trim_start();
        let line = line.strip_prefix('>').unwrap_or(line).trim_start();
        let mut rest = line;
        while let Some(open) = rest.find('[') {
            let Some(close) = rest[open..].find("](").map(|c| open + c) else {
                break;
            };
            let Some(end) = rest[close..].find(')').map(|e| close + e) else {
                break;
            };
            out.push_str(&rest[..open]);
            out.push_str(&rest[open + 1..close]);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
    }
    out
}

/// A message printed as it is (the first request's body as text), for channels whose request
/// is the message itself.
pub(crate) fn plain(requests: &[Outbound], max_chars: usize) -> Preview {
    let body = match requests.first().map(|r| &r.body) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
        None => String::new(),
    };
    Preview {
        line: line_of(&body, max_chars),
        format: "text".into(),
        body,
        ..Preview::default()
    }
}
