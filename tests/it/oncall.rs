//! On-call groundwork over HTTP and in both stores: schedule overrides kept in SQLite and in a
//! real `redis-server` (the same contract), and the API that shows who is on call and sets
//! overrides (`GET /api/v1/oncall`, `/api/v1/schedules/{name}/overrides`), behind the admin
//! credentials, with its refusals.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{Value, json};

use alertmanager_wechat::config::StorageConfig;
use alertmanager_wechat::secret::Secret;
use alertmanager_wechat::store::Store;
use alertmanager_wechat::store::oncall::NewOverride;

use crate::console::{ADMIN_PASSWORD, ADMIN_USER, basic};
use crate::support::TestServer;
use crate::support::redis::RedisServer;

fn new(schedule: &str, person: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> NewOverride {
    NewOverride {
        schedule: schedule.into(),
        person: person.into(),
        replaces: None,
        start,
        end,
    }
}

/// Now, to the second, so that times survive the stores' millisecond precision as they are.
fn now() -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::seconds(1)).unwrap()
}

async fn overrides_round_trip(store: Store) {
    let t = now();
    let a = store
        .override_add(new("s", "a", t, t + Duration::hours(1)), t)
        .await
        .unwrap();
    let mut with_replaces = new("s", "b", t, t + Duration::hours(2));
    with_replaces.replaces = Some("a".into());
    let b = store.override_add(with_replaces, t).await.unwrap();
    let other = store
        .override_add(new("other", "c", t, t + Duration::hours(1)), t)
        .await
        .unwrap();
    assert!(
        a.id < b.id && b.id < other.id,
        "ids grow: {a:?} {b:?} {other:?}"
    );
    assert_eq!(b.replaces.as_deref(), Some("a"));
    assert_eq!(
        store.overrides(t).await.unwrap(),
        [a.clone(), b.clone(), other.clone()]
    );
    // Ended ones are not answered.
    assert_eq!(
        store.overrides(t + Duration::minutes(90)).await.unwrap(),
        std::slice::from_ref(&b)
    );
    // Deleting needs the right schedule.
    assert!(!store.override_delete("other".into(), a.id).await.unwrap());
    assert!(store.override_delete("s".into(), a.id).await.unwrap());
    assert!(!store.override_delete("s".into(), a.id).await.unwrap());
    assert_eq!(
        store.overrides(t).await.unwrap(),
        [b.clone(), other.clone()]
    );
    // Adding prunes what ended more than 30 days ago.
    let later = t + Duration::days(31);
    let c = store
        .override_add(new("s", "c", later, later + Duration::hours(1)), later)
        .await
        .unwrap();
    assert!(c.id > other.id);
    assert_eq!(store.overrides(t).await.unwrap(), [c]);
}

#[tokio::test]
async fn sqlite_keeps_overrides() {
    let dir = tempfile::tempdir().unwrap();
    overrides_round_trip(Store::open(dir.path(), 100).unwrap()).await;
    // And after a restart.
    let store = Store::open(dir.path(), 100).unwrap();
    assert_eq!(store.overrides(now()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn redis_keeps_overrides() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let config = StorageConfig {
        redis_url: Some(Secret::new(server.url.clone())),
        redis_prefix: "test:".into(),
        ..StorageConfig::default()
    };
    overrides_round_trip(Store::from_config(&config).unwrap()).await;
}

/// A daily rotation of a and b in UTC whose current shift started at `handoff`; people a, b, c.
fn config(handoff: DateTime<Utc>, storage: &str) -> String {
    format!(
        r#"
auth:
  admin:
    basic_auth: {{ username: {ADMIN_USER}, password: {ADMIN_PASSWORD} }}
{storage}
oncall:
  channels:
    wecom_app: {{ corp_id: ww0123, agent_id: 1000002, api_secret: wecom-app-s3cret }}
    wxpusher: {{ app_token: AT_oncall_token }}
people:
  - {{ name: a, contacts: {{ wecom_app: {{ userid: A }} }} }}
  - {{ name: b, contacts: {{ wecom_app: {{ userid: B }} }} }}
  - {{ name: c, contacts: {{ wxpusher: {{ uid: UID_c }} }} }}
schedules:
  - name: primary
    time_zone: UTC
    rotation: {{ every: 1d, handoff: "{handoff}", people: [a, b] }}
  - name: later
    time_zone: Asia/Shanghai
    rotation: {{ every: 1w, handoff: "2999-01-01T00:00:00+08:00", people: [c] }}
route: {{ receiver: console }}
receivers:
  - {{ name: console, console_configs: [ {{}} ] }}
"#,
        handoff = handoff.to_rfc3339()
    )
}

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: bool,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.client.request(method, format!("{}{path}", self.base));
        if auth {
            r = r.header("authorization", basic());
        }
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn on_call(&self) -> Value {
        let (status, v) = self
            .send(reqwest::Method::GET, "/api/v1/oncall", true, None)
            .await;
        assert_eq!(status, 200, "{v}");
        v
    }
}

async fn api_sets_and_shows_overrides(storage: &str) {
    let handoff = now() - Duration::hours(2);
    let server = TestServer::start(&config(handoff, storage)).await;
    let api = Api {
        base: server.url.clone(),
        client: reqwest::Client::new(),
    };
    use reqwest::Method;
    let shift_end = handoff + Duration::days(1);
    assert_eq!(
        api.on_call().await,
        json!({"items": [
            {"schedule": "primary", "person": "a", "until": shift_end, "next": "b"},
            {"schedule": "later", "person": null,
             "until": "2998-12-31T16:00:00Z", "next": "c"},
        ]})
    );

    let t = now();
    let (status, added) = api
        .send(
            Method::POST,
            "/api/v1/schedules/primary/overrides",
            true,
            Some(json!({"person": "c", "start": t - Duration::hours(1), "end": t + Duration::hours(1)})),
        )
        .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["person"], "c");
    assert_eq!(added["schedule"], "primary");
    let id = added["id"].as_i64().unwrap();
    assert_eq!(
        api.on_call().await["items"][0],
        json!({"schedule": "primary", "person": "c", "until": t + Duration::hours(1), "next": "a"})
    );
    // Replacing someone who is not on call changes nothing.
    let (status, v) = api
        .send(
            Method::POST,
            "/api/v1/schedules/primary/overrides",
            true,
            Some(
                json!({"person": "b", "replaces": "b", "start": t, "end": t + Duration::hours(3)}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(api.on_call().await["items"][0]["person"], "c");
    let (status, listed) = api
        .send(
            Method::GET,
            "/api/v1/schedules/primary/overrides",
            true,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );

    // Refusals.
    let path = "/api/v1/schedules/primary/overrides";
    let body = |person: &str, replaces: Option<&str>, end: DateTime<Utc>| {
        let mut b = json!({"person": person, "start": t, "end": end});
        if let Some(r) = replaces {
            b["replaces"] = json!(r);
        }
        b
    };
    let hour = t + Duration::hours(1);
    for (path, b, want_status, want) in [
        (
            path,
            body("zed", None, hour),
            400,
            "person: unknown person \"zed\"",
        ),
        (
            path,
            body("a", Some("zed"), hour),
            400,
            "replaces: unknown person \"zed\"",
        ),
        (path, body("a", None, t), 400, "end: must be after start"),
        (
            path,
            body("a", None, t - Duration::hours(1)),
            400,
            "end: must be after start",
        ),
        (
            "/api/v1/schedules/nope/overrides",
            body("a", None, hour),
            404,
            "unknown schedule \"nope\"",
        ),
    ] {
        let (status, v) = api.send(Method::POST, path, true, Some(b)).await;
        assert_eq!(
            (status, v["error"].as_str()),
            (want_status, Some(want)),
            "{v}"
        );
    }
    let (status, v) = api
        .send(
            Method::POST,
            path,
            true,
            Some(json!({"person": "a", "start": "soon", "end": hour})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").starts_with("request: "),
        "{v}"
    );
    // JSON only, admin only.
    let r = api
        .client
        .post(format!("{}{path}", api.base))
        .header("authorization", basic())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body("a", None, hour).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let (status, _) = api
        .send(Method::POST, path, false, Some(body("a", None, hour)))
        .await;
    assert_eq!(status, 401);
    let (status, _) = api.send(Method::GET, "/api/v1/oncall", false, None).await;
    assert_eq!(status, 401);
    let del = format!("{path}/{id}");
    let (status, _) = api.send(Method::DELETE, &del, false, None).await;
    assert_eq!(status, 401);
    assert_eq!(
        api.on_call().await["items"][0]["person"],
        "c",
        "nothing changed"
    );

    // Deleting: only on its own schedule, once.
    let (status, v) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/schedules/later/overrides/{id}"),
            true,
            None,
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (
            404,
            Some(format!("no override {id} on this schedule").as_str())
        )
    );
    let (status, v) = api.send(Method::DELETE, &del, true, None).await;
    assert_eq!((status, v), (200, json!({"deleted": id})));
    let (status, _) = api.send(Method::DELETE, &del, true, None).await;
    assert_eq!(status, 404);
    assert_eq!(
        api.on_call().await["items"][0],
        json!({"schedule": "primary", "person": "a", "until": shift_end, "next": "b"})
    );
    server.stop().await;
}

#[tokio::test]
async fn api_on_sqlite() {
    api_sets_and_shows_overrides("").await;
}

#[tokio::test]
async fn api_on_redis() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    api_sets_and_shows_overrides(&format!(
        "storage: {{ redis_url: \"{}\", redis_prefix: \"oncall-test:\" }}",
        redis.url
    ))
    .await;
}
