//! The web console at `/ui/`: the template playground, the deliveries and the dead letters.
//!
//! Pages are rendered here as plain HTML; a little vanilla JavaScript (`assets/console.js`,
//! served as a file so the Content-Security-Policy forbids every inline script) calls the
//! JSON API ([`super::api`]) with `fetch`. Assets are compiled in with `include_str!`: the
//! build needs no JavaScript toolchain. Every URL in a page is relative, so the console works
//! under `web.route_prefix` and behind a proxy that strips a prefix. The same
//! [`super::api::guard`] as the API decides who may see a page; no page carries a secret
//! (identities and URLs only, errors scrubbed when recorded).

// A refusal is the answer itself, built at most once per request: boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::fmt::Write;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::App;
use super::api::guard;
use crate::store::history::{Delivery, DeliveryState, HistoryFilter};

const JS: &str = include_str!("assets/console.js");
const CSS: &str = include_str!("assets/console.css");

/// No inline script or style, nothing from elsewhere, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(root))
        // Relative: `/prefix/ui` → `/prefix/ui/`.
        .route("/ui", get(|| async { redirect("ui/") }))
        .route("/ui/", get(playground))
        .route("/ui/deliveries", get(deliveries))
        .route("/ui/deadletters", get(dead_letters))
        .route("/ui/assets/console.js", get(js))
        .route("/ui/assets/console.css", get(css))
}

/// `GET /`: a person who opens the bare address is sent to the console when it is on (the
/// console asks for credentials itself); otherwise there is nothing here.
pub(super) async fn root(State(app): State<Arc<App>>) -> Response {
    let rt = app.runtime.load();
    if !rt.config.web.console_enabled(&rt.config.auth) {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    // Under `web.route_prefix` the full path is known (`/prefix` → `/prefix/ui/`); without
    // one the target stays relative, like every URL of the console, so that it also works
    // behind a proxy that strips a prefix (`/prefix/` → `/prefix/ui/`).
    let to = match rt.config.web.prefix() {
        Some(p) => format!("{p}/ui/"),
        None => "ui/".to_string(),
    };
    match HeaderValue::from_str(&to) {
        Ok(to) => (StatusCode::FOUND, [(header::LOCATION, to)]).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

fn redirect(to: &'static str) -> Response {
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, HeaderValue::from_static(to))],
    )
        .into_response()
}

/// The headers every console answer carries.
pub fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn checked(app: &App, headers: &HeaderMap) -> Result<(), Response> {
    guard(&app.runtime.load(), headers).map_err(secure)
}

async fn js(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = checked(&app, &headers) {
        return r;
    }
    secure(
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            JS,
        )
            .into_response(),
    )
}

async fn css(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = checked(&app, &headers) {
        return r;
    }
    secure(([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response())
}

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    // Control and bidi characters as `\u{…}` first: they cannot reorder what a reader sees.
    for c in crate::webhook::escape_controls(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, current: &str, body: &str) -> Response {
    let nav = [
        ("./", "playground", "Playground"),
        ("deliveries", "deliveries", "Deliveries"),
        ("deadletters", "deadletters", "Dead letters"),
    ]
    .iter()
    .map(|(href, key, label)| {
        let cur = if *key == current {
            " aria-current=\"page\""
        } else {
            ""
        };
        format!("<a href=\"{href}\"{cur}>{label}</a>")
    })
    .collect::<String>();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · alertmanager-wechat</title>\
<link rel=\"stylesheet\" href=\"assets/console.css\">\
<script src=\"assets/console.js\" defer></script></head>\
<body data-page=\"{current}\"><header><strong>alertmanager-wechat</strong><nav>{nav}</nav></header>\
<main>{body}</main></body></html>\n",
        title = esc(title),
    );
    secure(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

async fn playground(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = checked(&app, &headers) {
        return r;
    }
    let rt = app.runtime.load();
    let mut receivers = String::from("<option value=\"\">all the route tree picks</option>");
    for name in rt.receivers.keys() {
        let _ = write!(receivers, "<option>{}</option>", esc(name));
    }
    let examples: String = crate::channels::EXAMPLE_TEMPLATES
        .iter()
        .map(|name| format!("<code>{}</code>, ", esc(name)))
        .collect();
    let body = format!(
        r#"<h1>Template playground</h1>
<p class="note">Nothing is sent from here, except through <em>Send test</em>.</p>
<section class="controls">
<label>Receiver <select id="receiver">{receivers}</select></label>
<label>Payload <select id="example"><option value="">pick an example or a recent notification…</option></select></label>
<label class="wide">Payload JSON <textarea id="payload" rows="10" spellcheck="false"></textarea></label>
<details id="templates-box"><summary>Templates</summary>
<p class="note">Override a template by name ({examples}or an inline template's YAML path).</p>
<div id="templates"></div>
<button type="button" id="add-template">Add a template</button>
</details>
<div class="buttons"><button type="button" id="render">Render</button>
<button type="button" id="send-test" class="danger">Send test to receiver…</button></div>
</section>
<p id="error" class="error" role="alert" hidden></p>
<p id="status" class="note" role="status"></p>
<section id="results"></section>"#
    );
    page("Playground", "playground", &body)
}

#[derive(Debug, Default, Deserialize)]
struct DeliveriesQuery {
    receiver: Option<String>,
    status: Option<String>,
    alertname: Option<String>,
    limit: Option<usize>,
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| {
        format!(
            "<time datetime=\"{0}\">{0}</time>",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    })
    .unwrap_or_default()
}

fn state_cell(d: &Delivery) -> String {
    let s = d.state.as_str();
    let detail = match d.state {
        DeliveryState::Sent => format!(" at {}", time(d.sent_at)),
        DeliveryState::Retrying => format!(
            ", next attempt {}<br><span class=\"err\">{}</span>",
            time(d.next_attempt),
            esc(d.last_error.as_deref().unwrap_or(""))
        ),
        DeliveryState::Dead => format!(
            "<br><span class=\"err\">{}</span>",
            esc(d.last_error.as_deref().unwrap_or(""))
        ),
        DeliveryState::Merged => format!(" into digest {}", d.digest.unwrap_or_default()),
        DeliveryState::Suppressed => " as a duplicate".into(),
        DeliveryState::Queued => match d.merged {
            Some(n) => format!(" (digest of {n})"),
            None => String::new(),
        },
    };
    format!("<span class=\"state state-{s}\">{s}</span>{detail}")
}

async fn deliveries(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(r) = checked(&app, &headers) {
        return r;
    }
    let q: DeliveriesQuery = raw
        .as_deref()
        .and_then(|r| Query::<DeliveriesQuery>::try_from_uri(&format!("/?{r}").parse().ok()?).ok())
        .map(|Query(q)| q)
        .unwrap_or_default();
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let state = nonempty(&q.status).and_then(|s| DeliveryState::parse(&s));
    let filter = HistoryFilter {
        receiver: nonempty(&q.receiver),
        state,
        alertname: nonempty(&q.alertname),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let rt = app.runtime.load();
    let mut body = String::from(
        "<h1>Deliveries</h1>\n<form class=\"filters\" method=\"get\" action=\"deliveries\">",
    );
    let mut receivers = String::from("<option value=\"\">any receiver</option>");
    for name in rt.receivers.keys() {
        let sel = if filter.receiver.as_deref() == Some(name) {
            " selected"
        } else {
            ""
        };
        let _ = write!(receivers, "<option{sel}>{}</option>", esc(name));
    }
    let mut states = String::from("<option value=\"\">any status</option>");
    for s in ["queued", "sent", "retrying", "dead", "suppressed", "merged"] {
        let sel = if state.map(DeliveryState::as_str) == Some(s) {
            " selected"
        } else {
            ""
        };
        let _ = write!(states, "<option{sel}>{s}</option>");
    }
    let _ = writeln!(
        body,
        "<label>Receiver <select name=\"receiver\">{receivers}</select></label>\
<label>Status <select name=\"status\">{states}</select></label>\
<label>Alert name <input name=\"alertname\" value=\"{}\"></label>\
<button type=\"submit\">Filter</button></form>",
        esc(filter.alertname.as_deref().unwrap_or(""))
    );
    let list = match app.queue.store.history(filter).await {
        Ok(l) => l,
        Err(e) => {
            let _ = write!(body, "<p class=\"error\">{}</p>", esc(&e.to_string()));
            return page("Deliveries", "deliveries", &body);
        }
    };
    if list.is_empty() {
        body.push_str(
            "<p class=\"note\" id=\"empty\">No deliveries recorded (yet) for this filter.</p>",
        );
        return page("Deliveries", "deliveries", &body);
    }
    body.push_str(
        "<div class=\"table\"><table id=\"deliveries\"><thead><tr><th>#</th><th>Accepted</th><th>Receiver</th>\
<th>Alerts</th><th>Status</th><th>Tries</th><th>Links</th></tr></thead><tbody>",
    );
    for d in &list {
        let mut links = String::new();
        if let Some(u) = &d.external_url {
            let _ = write!(
                links,
                "<a href=\"{}\" rel=\"noreferrer\" target=\"_blank\">source</a> ",
                esc(u)
            );
        }
        for (i, u) in d.generator_urls.iter().enumerate() {
            let _ = write!(
                links,
                "<a href=\"{}\" rel=\"noreferrer\" target=\"_blank\">alert {}</a> ",
                esc(u),
                i + 1
            );
        }
        let _ = write!(
            body,
            "<tr data-state=\"{state}\"><td>{id}</td><td>{accepted}</td><td>{receiver}<br><small>{kind} · {integration}</small></td>\
<td>{status}: {names}</td><td>{cell}</td><td>{attempts}</td><td>{links}</td></tr>",
            state = d.state.as_str(),
            id = d.id,
            accepted = time(Some(d.accepted_at)),
            receiver = esc(&d.receiver),
            kind = esc(&d.kind),
            integration = esc(&d.integration),
            status = esc(&d.status),
            names = esc(&d.alertnames.join(", ")),
            cell = state_cell(d),
            attempts = d.attempts,
        );
    }
    body.push_str("</tbody></table></div>");
    page("Deliveries", "deliveries", &body)
}

async fn dead_letters(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = checked(&app, &headers) {
        return r;
    }
    let mut body = String::from(
        "<h1>Dead letters</h1>\n<p class=\"note\">What gave up, with its last error. Replaying re-queues with the attempts reset.</p>\
<div class=\"buttons\"><button type=\"button\" id=\"replay-all\">Replay all</button>\
<button type=\"button\" id=\"purge\" class=\"danger\">Purge all</button></div>\
<p id=\"error\" class=\"error\" role=\"alert\" hidden></p><p id=\"status\" class=\"note\" role=\"status\"></p>",
    );
    let list = match crate::delivery::dead_letter_items(&app.queue.store).await {
        Ok(l) => l,
        Err(e) => {
            let _ = write!(body, "<p class=\"error\">{}</p>", esc(&e.to_string()));
            return page("Dead letters", "deadletters", &body);
        }
    };
    if list.is_empty() {
        body.push_str("<p class=\"note\" id=\"empty\">No dead letters.</p>");
        return page("Dead letters", "deadletters", &body);
    }
    body.push_str(
        "<div class=\"table\"><table id=\"deadletters\"><thead><tr><th>ID</th><th>Failed</th><th>Receiver</th>\
<th>Alerts</th><th>Tries</th><th>Reason · last error</th><th></th></tr></thead><tbody>",
    );
    for d in &list {
        let _ = write!(
            body,
            "<tr data-id=\"{id}\"><td>{id}</td><td>{failed}</td><td>{receiver}<br><small>{kind}</small></td>\
<td>{alerts}: {names}</td><td>{attempts}</td><td><code>{reason}</code> <span class=\"err\">{error}</span></td>\
<td><button type=\"button\" class=\"replay\" data-id=\"{id}\">Replay</button></td></tr>",
            id = d.id,
            failed = time(d.failed_at),
            receiver = esc(&d.receiver),
            kind = esc(&d.kind),
            alerts = d.alerts,
            names = esc(&d.alertnames.join(", ")),
            attempts = d.attempts,
            reason = esc(&d.reason),
            error = esc(&d.last_error),
        );
    }
    body.push_str("</tbody></table></div>");
    page("Dead letters", "deadletters", &body)
}
