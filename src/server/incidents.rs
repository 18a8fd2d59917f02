//! Incidents over HTTP: the JSON API (`GET /api/v1/incidents?state=`, `POST
//! /api/v1/incidents/{id}/ack|escalate|resolve`, `auth.admin` like the rest of `/api/v1/`) and
//! the one-tap link `/ack/{token}`, served with the console off: `GET` shows a confirm page and
//! changes nothing (link scanners prefetch), `POST` (a plain form, no JSON) acknowledges.
//! The token is the link's only credential ([`crate::incident::link`]).

// A refusal is the answer itself, built at most once per request: boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::App;
use super::api::{admin_get, admin_post, error, store_error};
use crate::incident::{self, ActError, Acted, link};
use crate::runtime::Runtime;
use crate::store::incident::IncidentState;

/// The admin API's routes (merged under `/api/v1/`'s guard).
pub fn api_routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/incidents", get(list))
        .route("/api/v1/incidents/{id}/ack", post(ack))
        .route("/api/v1/incidents/{id}/escalate", post(escalate))
        .route("/api/v1/incidents/{id}/resolve", post(resolve))
}

/// The one-tap link, outside the console and the admin API.
pub fn link_routes() -> Router<Arc<App>> {
    Router::new().route("/ack/{token}", get(confirm_page).post(confirm))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
}

async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let rt = match admin_get(&app, &headers) {
        Ok(rt) => rt,
        Err(r) => return r,
    };
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => match IncidentState::parse(s) {
            Some(s) => Some(s),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("state: {s:?} is not one of triggered, acknowledged, resolved"),
                    Value::Null,
                );
            }
        },
    };
    let now = Utc::now();
    match app
        .queue
        .store
        .incidents(incident::keep_since(&rt, now))
        .await
    {
        Ok(all) => {
            let items: Vec<Value> = all
                .iter()
                .filter(|i| state.is_none_or(|s| i.state == s))
                .map(incident::view)
                .collect();
            axum::Json(json!({ "items": items })).into_response()
        }
        Err(e) => store_error(e),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActRequest {
    person: Option<String>,
    from_step: Option<u32>,
}

/// The admin user a console act is recorded as (`console:<user>`).
fn console_user(headers: &HeaderMap) -> String {
    let user = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(u, _)| u.to_string()))
        .unwrap_or_else(|| "admin".into());
    format!("console:{user}")
}

fn read_act(body: &Bytes) -> Result<ActRequest, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ActRequest::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("request: {e}"),
            Value::Null,
        )
    })
}

fn answer(r: Result<Acted, ActError>) -> Response {
    match r {
        Ok(a) => axum::Json(json!({
            "changed": a.changed,
            "incident": incident::view(&a.incident),
        }))
        .into_response(),
        Err(ActError::NotFound(id)) => error(
            StatusCode::NOT_FOUND,
            format!("no incident {id}"),
            Value::Null,
        ),
        Err(e @ ActError::UnknownPerson(_)) => {
            error(StatusCode::BAD_REQUEST, format!("person: {e}"), Value::Null)
        }
        Err(ActError::Store(e)) => store_error(e),
    }
}

fn known(rt: &Runtime, person: &str) -> bool {
    rt.config.people.iter().any(|p| p.name == person)
}

/// The three acts of the API.
#[derive(Debug, Clone, Copy)]
enum Act {
    Ack,
    Escalate,
    Resolve,
}

/// One act on incident `id`: the admin check, the body (`person`, `from_step`), the act, the
/// answer. A console act without `person` is recorded as `console:<admin user>` (rule 10).
async fn act(app: Arc<App>, headers: HeaderMap, id: i64, body: Bytes, act: Act) -> Response {
    let rt = match admin_post(&app, &headers) {
        Ok(rt) => rt,
        Err(r) => return r,
    };
    let req = match read_act(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let (store, metrics, now) = (&app.queue.store, &app.metrics, Utc::now());
    let by = match req.person {
        // Only an ack names the person it is recorded as; an unknown one is refused.
        Some(p) if matches!(act, Act::Ack) && !known(&rt, &p) => {
            return answer(Err(ActError::UnknownPerson(p)));
        }
        Some(p) => p,
        None => console_user(&headers),
    };
    answer(match act {
        Act::Ack => incident::acknowledge(store, &rt, metrics, id, &by, "console", now).await,
        Act::Escalate => incident::escalate(store, &rt, metrics, id, req.from_step, &by, now).await,
        Act::Resolve => incident::resolve(store, &rt, metrics, id, &by, now).await,
    })
}

async fn ack(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    act(app, headers, id, body, Act::Ack).await
}

async fn escalate(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    act(app, headers, id, body, Act::Escalate).await
}

async fn resolve(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    act(app, headers, id, body, Act::Resolve).await
}

// ---- the one-tap link ----

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(status: StatusCode, zh: bool, title: &str, body: &str) -> Response {
    let lang = if zh { "zh-CN" } else { "en" };
    let html = format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:28em;margin:2em auto;padding:0 1em}}\
         button{{font-size:1.2em;padding:.6em 1.4em}}select{{font-size:1.1em}}</style></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = html_escape(title)
    );
    let mut r = (status, Html(html)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    r
}

fn zh(rt: &Runtime) -> bool {
    rt.config.global.locale.as_str() == "zh-CN"
}

/// The claim of a link, or the page saying why not.
fn claim(rt: &Runtime, token: &str) -> Result<link::Claim, Response> {
    let zh = zh(rt);
    let secret = rt
        .config
        .oncall
        .as_ref()
        .and_then(|o| o.link_secret.as_ref());
    let Some(secret) = secret else {
        return Err(page(StatusCode::NOT_FOUND, zh, "—", ""));
    };
    link::verify(secret.expose().as_bytes(), token, Utc::now()).map_err(|e| {
        let (title, status) = match (e, zh) {
            (link::LinkError::Expired, true) => ("链接已过期", StatusCode::GONE),
            (link::LinkError::Expired, false) => ("This link has expired", StatusCode::GONE),
            (link::LinkError::Invalid, true) => ("链接无效", StatusCode::NOT_FOUND),
            (link::LinkError::Invalid, false) => ("This link is not valid", StatusCode::NOT_FOUND),
        };
        page(status, zh, title, "")
    })
}

async fn confirm_page(State(app): State<Arc<App>>, Path(token): Path<String>) -> Response {
    let rt = app.runtime.load_full();
    let zh = zh(&rt);
    let c = match claim(&rt, &token) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let inc = match app.queue.store.incident(c.incident).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                zh,
                if zh {
                    "没有这个事件"
                } else {
                    "No such incident"
                },
                "",
            );
        }
        Err(e) => return store_error(e),
    };
    let summary = html_escape(
        inc.notification
            .common_annotations
            .get("summary")
            .or_else(|| inc.notification.common_labels.get("alertname"))
            .map(String::as_str)
            .unwrap_or(""),
    );
    let state = inc.state.as_str();
    let who = match &c.person {
        Some(p) => format!("<p>{}</p>", html_escape(&incident::display_name(&rt, p))),
        None => {
            let options: String = rt
                .config
                .people
                .iter()
                .map(|p| {
                    format!(
                        "<option value=\"{}\">{}</option>",
                        html_escape(&p.name),
                        html_escape(&incident::display_name(&rt, &p.name))
                    )
                })
                .collect();
            format!(
                "<p><label>{} <select name=\"person\">{options}</select></label></p>",
                if zh { "我是" } else { "I am" }
            )
        }
    };
    let (title, button) = if zh {
        (format!("认领 {}", inc.reference), "确认认领")
    } else {
        (format!("Acknowledge {}", inc.reference), "Acknowledge")
    };
    let body = format!(
        "<p>{summary}</p><p>{state}</p><form method=\"post\">{who}<button type=\"submit\">{button}</button></form>"
    );
    page(StatusCode::OK, zh, &title, &body)
}

/// `application/x-www-form-urlencoded` value of `key`.
fn form_value(body: &[u8], key: &str) -> Option<String> {
    fn decode(s: &str) -> Option<String> {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = s.get(i + 1..i + 3)?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).ok()
    }
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (decode(k)? == key).then(|| decode(v)).flatten()
    })
}

async fn confirm(State(app): State<Arc<App>>, Path(token): Path<String>, body: Bytes) -> Response {
    let rt = app.runtime.load_full();
    let zh = zh(&rt);
    let c = match claim(&rt, &token) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let person = match c.person.or_else(|| form_value(&body, "person")) {
        Some(p) if known(&rt, &p) => p,
        _ => {
            return page(
                StatusCode::BAD_REQUEST,
                zh,
                if zh {
                    "请选择你是谁"
                } else {
                    "Say who you are"
                },
                "",
            );
        }
    };
    match incident::acknowledge(
        &app.queue.store,
        &rt,
        &app.metrics,
        c.incident,
        &person,
        "link",
        Utc::now(),
    )
    .await
    {
        Ok(a) => {
            let by = a
                .incident
                .acknowledged_by
                .as_deref()
                .map(|p| incident::display_name(&rt, p))
                .unwrap_or_default();
            let title = match (a.incident.state, zh) {
                (IncidentState::Resolved, true) => format!("{} 已恢复", a.incident.reference),
                (IncidentState::Resolved, false) => format!("{} is resolved", a.incident.reference),
                (_, true) => format!("{by} 已认领 {}", a.incident.reference),
                (_, false) => format!("{by} acknowledged {}", a.incident.reference),
            };
            page(StatusCode::OK, zh, &title, "")
        }
        Err(ActError::NotFound(_)) => page(
            StatusCode::NOT_FOUND,
            zh,
            if zh {
                "没有这个事件"
            } else {
                "No such incident"
            },
            "",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot acknowledge from a link");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                zh,
                if zh {
                    "暂时无法认领，请重试"
                } else {
                    "Cannot acknowledge now; try again"
                },
                "",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::form_value;

    #[test]
    fn form_values_are_decoded() {
        assert_eq!(
            form_value(b"a=1&person=li+si%21", "person").as_deref(),
            Some("li si!")
        );
        assert_eq!(
            form_value(b"person=%E5%BC%A0", "person").as_deref(),
            Some("张")
        );
        assert_eq!(form_value(b"person=%Z", "person"), None);
        assert_eq!(form_value(b"x=1", "person"), None);
    }
}
