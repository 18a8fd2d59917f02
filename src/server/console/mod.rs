//! The web console at `/ui/`: the overview ([`overview`]), the template playground, the
//! deliveries, the dead letters, on call and incidents ([`pages`]), in Chinese and English
//! ([`i18n`]), with times in `global.timezone`.
//!
//! Pages are built with maud templates, which escape every value they are given: nothing
//! received is written into a page unescaped, and the finished page has its control and bidi
//! characters shown as `\u{…}` ([`inert`]), so a received value cannot reorder what a reader
//! sees. A little vanilla JavaScript (`assets/console.js`,
//! served as a file so the Content-Security-Policy forbids every inline script) calls the
//! JSON API ([`super::api`]) with `fetch`. Assets are compiled in with `include_str!`: the
//! build needs no JavaScript toolchain. Every URL in a page is relative, so the console works
//! under `web.route_prefix` and behind a proxy that strips a prefix. The same
//! [`super::api::guard`] as the API decides who may see a page; no page carries a secret
//! (identities and URLs only, errors scrubbed when recorded).

// A refusal is the answer itself, built at most once per request: boxing it buys nothing.
#![allow(clippy::result_large_err)]

mod chart;
pub mod i18n;
mod overview;
mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Offset, Utc};
use chrono_tz::Tz;
use maud::{DOCTYPE, Markup, html};

use super::App;
use super::api::guard;
use i18n::{Lang, Text};

const JS: &str = include_str!("../assets/console.js");
const CSS: &str = include_str!("../assets/console.css");

/// No inline script or style, nothing from elsewhere, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(root))
        // Relative: `/prefix/ui` → `/prefix/ui/`.
        .route("/ui", get(|| async { redirect("ui/") }))
        .route("/ui/", get(overview::overview))
        .route("/ui/playground", get(pages::playground))
        .route(
            "/ui/playground/",
            get(|| async { redirect("../playground") }),
        )
        .route("/ui/deliveries", get(pages::deliveries))
        .route("/ui/deadletters", get(pages::dead_letters))
        .route("/ui/oncall", get(pages::oncall))
        .route("/ui/incidents", get(pages::incidents))
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

/// Control and bidi characters of a finished page as `\u{…}` (line breaks and tabs kept): a
/// value received from an alert or an upstream cannot reorder, hide or recolour what a reader
/// sees. The page's own markup has none, so the whole page can be treated at once.
pub fn inert(page: &str) -> String {
    const BIDI: &[std::ops::RangeInclusive<char>] = &[
        '\u{061c}'..='\u{061c}',
        '\u{200e}'..='\u{200f}',
        '\u{202a}'..='\u{202e}',
        '\u{2066}'..='\u{2069}',
    ];
    let bad = |c: char| {
        (c.is_control() && !matches!(c, '\n' | '\r' | '\t')) || BIDI.iter().any(|r| r.contains(&c))
    };
    if !page.chars().any(bad) {
        return page.to_string();
    }
    let mut out = String::with_capacity(page.len() + 16);
    for c in page.chars() {
        if bad(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// What every page of one request shares: who may see it, its language, its time zone.
pub(super) struct Cx {
    pub lang: Lang,
    pub t: &'static Text,
    pub tz: Tz,
    /// `?lang=` chose the language: the answer remembers it in a cookie.
    remember: bool,
    pub runtime: Arc<crate::runtime::Runtime>,
}

/// A page handler takes a `Cx` like any extractor: the guard's refusal is the answer.
impl axum::extract::FromRequestParts<Arc<App>> for Cx {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &Arc<App>,
    ) -> Result<Cx, Response> {
        Cx::of(app, &parts.headers, parts.uri.query())
    }
}

impl Cx {
    /// The guard, then the language and time zone of this request.
    pub fn of(app: &App, headers: &HeaderMap, query: Option<&str>) -> Result<Cx, Response> {
        guard(&app.runtime.load(), headers).map_err(secure)?;
        let runtime = app.runtime.load_full();
        let (lang, remember) = i18n::choose(headers, query, runtime.config.global.locale);
        Ok(Cx {
            lang,
            t: lang.text(),
            tz: runtime.config.global.timezone,
            remember,
            runtime,
        })
    }

    /// `2026-12-07 02:29` in the page's time zone (its offset is said once, in the footer);
    /// the `datetime` attribute keeps the instant.
    pub fn time(&self, t: DateTime<Utc>) -> Markup {
        let local = t.with_timezone(&self.tz);
        html! {
            time datetime=(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) {
                (local.format("%Y-%m-%d %H:%M:%S"))
            }
        }
    }

    pub fn time_opt(&self, t: Option<DateTime<Utc>>) -> Markup {
        match t {
            Some(t) => self.time(t),
            None => html! {},
        }
    }

    /// `Asia/Shanghai (UTC+08:00)`, at `now`.
    pub fn zone(&self, now: DateTime<Utc>) -> String {
        let off = now.with_timezone(&self.tz).offset().fix().local_minus_utc();
        let sign = if off < 0 { '-' } else { '+' };
        let off = off.abs();
        format!(
            "{} (UTC{sign}{:02}:{:02})",
            self.tz.name(),
            off / 3600,
            off % 3600 / 60
        )
    }

    /// A whole page: the header with the navigation and the language switch, `body`, and the
    /// footer naming the time zone.
    pub fn page(&self, title: &str, current: &str, body: Markup) -> Response {
        let t = self.t;
        let nav = [
            ("./", "overview", t.nav_overview),
            ("incidents", "incidents", t.nav_incidents),
            ("oncall", "oncall", t.nav_oncall),
            ("deliveries", "deliveries", t.nav_deliveries),
            ("deadletters", "deadletters", t.nav_deadletters),
            ("playground", "playground", t.nav_playground),
        ];
        let other = self.lang.other();
        let markup = html! {
            (DOCTYPE)
            html lang=(self.lang.tag()) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · alertmanager-wechat" }
                    link rel="stylesheet" href="assets/console.css";
                    script src="assets/console.js" defer {}
                }
                body data-page=(current) data-tz=(self.tz.name()) data-lang=(self.lang.tag())
                    data-i18n=(self.lang.script_json()) {
                    header {
                        strong { "alertmanager-wechat" }
                        nav {
                            @for (href, key, label) in nav {
                                @if key == current {
                                    a href=(href) aria-current="page" { (label) }
                                } @else {
                                    a href=(href) { (label) }
                                }
                            }
                        }
                        a.lang href={ "?lang=" (other.tag()) } hreflang=(other.tag()) lang=(other.tag()) { (t.switch_to) }
                    }
                    main { (body) }
                    footer.note { (t.times_in) " " (self.zone(Utc::now())) }
                }
            }
        };
        let mut r = (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            inert(&markup.into_string()),
        )
            .into_response();
        if self.remember
            && let Ok(v) = HeaderValue::from_str(&format!(
                "{}={}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly",
                i18n::COOKIE,
                self.lang.tag()
            ))
        {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        secure(r)
    }
}

/// Text that may be long (an error, a URL, an identity): cut with an ellipsis on a narrow
/// screen and shown whole when tapped (it takes focus; no script needed).
pub(super) fn long(s: &str) -> Markup {
    html! { span.cut tabindex="0" title=(s) { (s) } }
}
