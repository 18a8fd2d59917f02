//! The on-call part of the JSON API: who is on call per schedule (`GET /api/v1/oncall`) and
//! schedule overrides (`/api/v1/schedules/{name}/overrides`: list, add, delete). Same rules
//! as the rest of `/api/v1/` ([`super::api`]): `auth.admin` for every call, JSON for a POST.

// A refusal is the answer itself, built at most once per request: boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::App;
use super::api::{admin_get, admin_post, error, store_error};
use crate::oncall::schedule::Schedule;
use crate::runtime::Runtime;
use crate::store::oncall::NewOverride;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/oncall", get(on_call))
        .route(
            "/api/v1/schedules/{name}/overrides",
            get(list_overrides).post(add_override),
        )
        .route(
            "/api/v1/schedules/{name}/overrides/{id}",
            delete(delete_override),
        )
        .merge(super::incidents::api_routes())
}

fn schedule<'a>(rt: &'a Runtime, name: &str) -> Result<&'a Schedule, Response> {
    rt.config
        .schedules
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!("unknown schedule {name:?}"),
                Value::Null,
            )
        })
}

/// Per schedule, in configuration order: who is on call now, until when, who is next.
async fn on_call(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let rt = match admin_get(&app, &headers) {
        Ok(rt) => rt,
        Err(r) => return r,
    };
    let now = Utc::now();
    let overrides = match app.queue.store.overrides(now).await {
        Ok(o) => o,
        Err(e) => return store_error(e),
    };
    let items: Vec<Value> = rt
        .config
        .schedules
        .iter()
        .map(|s| {
            let o = s.on_call(&overrides, now);
            json!({
                "schedule": s.name,
                "person": o.person,
                "until": o.until,
                "next": o.next,
            })
        })
        .collect();
    axum::Json(json!({ "items": items })).into_response()
}

async fn list_overrides(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let rt = match admin_get(&app, &headers) {
        Ok(rt) => rt,
        Err(r) => return r,
    };
    if let Err(r) = schedule(&rt, &name) {
        return r;
    }
    match app.queue.store.overrides(Utc::now()).await {
        Ok(all) => {
            let items: Vec<_> = all.into_iter().filter(|o| o.schedule == name).collect();
            axum::Json(json!({ "items": items })).into_response()
        }
        Err(e) => store_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideRequest {
    person: String,
    replaces: Option<String>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

async fn add_override(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let rt = match admin_post(&app, &headers) {
        Ok(rt) => rt,
        Err(r) => return r,
    };
    if let Err(r) = schedule(&rt, &name) {
        return r;
    }
    let bad = |m: String| error(StatusCode::BAD_REQUEST, m, Value::Null);
    let req: OverrideRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(format!("request: {e}")),
    };
    let known = |p: &str| rt.config.people.iter().any(|x| x.name == p);
    if !known(&req.person) {
        return bad(format!("person: unknown person {:?}", req.person));
    }
    if let Some(r) = &req.replaces
        && !known(r)
    {
        return bad(format!("replaces: unknown person {r:?}"));
    }
    if req.end <= req.start {
        return bad("end: must be after start".into());
    }
    let new = NewOverride {
        schedule: name,
        person: req.person,
        replaces: req.replaces,
        start: req.start,
        end: req.end,
    };
    match app.queue.store.override_add(new, Utc::now()).await {
        Ok(o) => axum::Json(o).into_response(),
        Err(e) => store_error(e),
    }
}

async fn delete_override(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, i64)>,
) -> Response {
    // No JSON check: a cross-site form cannot send DELETE, and fetch() would need a preflight.
    let rt = match admin_get(&app, &headers) {
        Ok(rt) => rt,
        Err(r) => return r,
    };
    if let Err(r) = schedule(&rt, &name) {
        return r;
    }
    match app.queue.store.override_delete(name, id).await {
        Ok(true) => axum::Json(json!({ "deleted": id })).into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("no override {id} on this schedule"),
            Value::Null,
        ),
        Err(e) => store_error(e),
    }
}
