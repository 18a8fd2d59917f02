//! What WeCom's group robot and its applications share of its message API: the
//! `{msgtype, <msgtype>: {content}}` bodies and what a person sees of them, the byte limits
//! met by splitting on alert boundaries into "(i/n)" parts, and the wait its frequency limit
//! (45009) asks for. Each channel folder (`wecom_robot/`, `wecom_app/`) uses these; neither
//! reaches into the other.

use serde_json::Value;

use super::error::DeliveryError;
use super::{Env, Outbound};
use crate::template::Locale;
use crate::text;
use crate::webhook::Notification;

/// Room kept in each part for its "(i/n)" line.
const PART_HEADER_ROOM: usize = 32;
/// 45009 says "retry after the minute": the minute window must pass first.
pub const FREQ_LIMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `render(n)` when it fits in `max` UTF-8 bytes; otherwise the alerts split into consecutive
/// groups whose renderings fit, as few as possible, each headed "(i/n)". A single alert too
/// long alone is cut on a character boundary with an ellipsis.
///
/// A storm digest's line can name hundreds of groups and outgrow a part by itself: when it
/// leaves less than half a part for the alerts, it is paged first, at its item boundaries,
/// onto parts of its own, and the alerts follow without it. Every group is named, none is cut.
///
/// `render(part, titled)` renders `part` with the preview line of `titled`.
pub(crate) fn split_by_bytes(
    env: &Env<'_>,
    n: &Notification,
    max: usize,
    render: impl Fn(&Notification, &Notification) -> Result<String, DeliveryError>,
) -> Result<Vec<String>, DeliveryError> {
    let content = render(n, n)?;
    if content.len() <= max {
        return Ok(vec![content]);
    }
    let limit = max.saturating_sub(PART_HEADER_ROOM);
    let (mut bodies, rest) = match digest_pages(n, limit, &render)? {
        Some((pages, rest)) => (pages, Some(rest)),
        None => (Vec::new(), None),
    };
    let n = rest.as_ref().unwrap_or(n);
    if !n.alerts.is_empty() || bodies.is_empty() {
        bodies.extend(split_alerts(n, limit, &render)?);
    }
    let total = bodies.len();
    let locale = env.templates.locale();
    Ok(bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let header = match locale {
                Locale::ZhCn => format!("（{}/{total}）", i + 1),
                Locale::En => format!("({}/{total})", i + 1),
            };
            format!("{header}\n{body}")
        })
        .collect())
}

/// The alerts of `n` in consecutive groups whose renderings fit in `limit` bytes.
fn split_alerts(
    n: &Notification,
    limit: usize,
    render: &impl Fn(&Notification, &Notification) -> Result<String, DeliveryError>,
) -> Result<Vec<String>, DeliveryError> {
    let part = |from: usize, to: usize| -> Result<String, DeliveryError> {
        let p = n.subset(n.alerts[from..to].to_vec());
        render(&p, &p)
    };
    // Halve until every piece fits (or is a single alert), then merge neighbours back while
    // the merged rendering still fits.
    let mut pending = vec![(0, n.alerts.len())];
    let mut leaves: Vec<(usize, usize, String)> = Vec::new();
    while let Some((from, to)) = pending.pop() {
        let body = part(from, to)?;
        if body.len() <= limit {
            leaves.push((from, to, body));
        } else if to - from <= 1 {
            leaves.push((from, to, text::truncate_bytes(&body, limit)));
        } else {
            let mid = from + (to - from) / 2;
            // Pushed in reverse so the stack pops them in alert order.
            pending.push((mid, to));
            pending.push((from, mid));
        }
    }
    let mut merged: Vec<(usize, usize, String)> = Vec::new();
    for (from, to, body) in leaves {
        if let Some(last) = merged.last_mut() {
            let both = part(last.0, to)?;
            if both.len() <= limit {
                *last = (last.0, to, both);
                continue;
            }
        }
        merged.push((from, to, body));
    }
    Ok(merged.into_iter().map(|(_, _, body)| body).collect())
}

/// A digest whose line leaves less than half of `limit` for the alerts: the line in pages that
/// each fit a part of their own (no alerts, the whole digest's preview), and the digest without
/// its line for the alerts that follow. `None` for anything else.
fn digest_pages(
    n: &Notification,
    limit: usize,
    render: &impl Fn(&Notification, &Notification) -> Result<String, DeliveryError>,
) -> Result<Option<(Vec<String>, Notification)>, DeliveryError> {
    let Some(line) = n.digest.as_deref() else {
        return Ok(None);
    };
    let mut page = n.without_alerts();
    page.truncated_alerts = 0;
    let mut render_page = |text: &str| -> Result<String, DeliveryError> {
        page.digest = Some(text.to_string());
        render(&page, n)
    };
    if render_page(line)?.len() <= limit / 2 {
        return Ok(None);
    }
    // Items end after ", " or " · ": a page boundary never falls inside a name.
    let mut items: Vec<&str> = Vec::new();
    let mut start = 0;
    for (i, _) in line.match_indices([',', '·']) {
        let end = (i + line[i..].chars().next().map_or(1, char::len_utf8) + 1).min(line.len());
        if line.is_char_boundary(end) && end > start {
            items.push(&line[start..end]);
            start = end;
        }
    }
    if start < line.len() {
        items.push(&line[start..]);
    }
    // Greedy by bytes, each page checked by rendering it (templates may escape): a page over
    // the limit gives back its last item, a single item over it is cut with an ellipsis.
    let mut pages = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let mut j = i + 1;
        let mut bytes = items[i].len();
        while j < items.len() && bytes + items[j].len() <= limit {
            bytes += items[j].len();
            j += 1;
        }
        loop {
            let body = render_page(items[i..j].concat().trim())?;
            if body.len() <= limit {
                pages.push(body);
                break;
            }
            if j - i == 1 {
                pages.push(text::truncate_bytes(&body, limit));
                break;
            }
            j -= 1;
        }
        i = j;
    }
    let mut rest = n.clone();
    rest.digest = None;
    Ok(Some((pages, rest)))
}

/// What the group sees: each message's text in order (a split message's parts, then the
/// message that mentions people), the first as the notification line; markdown when the
/// messages are markdown. WeCom apps send the same `{msgtype, <msgtype>: {content}}` shape.
pub fn preview(requests: &[Outbound], max_chars: usize) -> crate::channels::preview::Preview {
    use crate::channels::preview::{Preview, line_of, markdown_text, str_of};
    let mut p = Preview {
        format: "text".into(),
        ..Preview::default()
    };
    for r in requests {
        let msgtype = r.body.get("msgtype").and_then(Value::as_str).unwrap_or("");
        if msgtype.starts_with("markdown") && p.parts.is_empty() {
            p.format = "markdown".into();
        }
        p.parts
            .push(str_of(r.body.get(msgtype).and_then(|m| m.get("content"))));
    }
    p.body = p.parts.join("\n");
    let first = p.parts.first().map_or("", String::as_str);
    p.line = if p.format == "markdown" {
        // The notification shows the text, not its markup.
        let read = markdown_text(first);
        line_of(read.trim(), max_chars)
    } else {
        line_of(first, max_chars)
    };
    p
}
