//! The console (`/ui/`) and its JSON API (`/api/v1/`) over HTTP, against the real server and
//! the mock WxPusher: who may call them, the CSRF convention, the Content-Security-Policy,
//! render's preview line, the delivery history, dead letters replayed and purged, a route
//! prefix, and that no configured secret ever shows in a page or an answer. The same pages in
//! a real browser: `browser.rs`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::wxpusher::{MockWxPusher, Reply};
use crate::support::{TestServer, example};

pub const ADMIN_USER: &str = "sre";
pub const ADMIN_PASSWORD: &str = "admin-pw-3f9c1e";
pub const WEBHOOK_TOKEN: &str = "webhook-token-77a1";
pub const APP_TOKEN: &str = "AT_console_secret_token_5d2e";
/// Every secret in [`config`]: none may appear in any page or API answer.
pub const SECRETS: &[&str] = &[ADMIN_PASSWORD, WEBHOOK_TOKEN, APP_TOKEN];

/// A summary of CJK and emoji, longer than the 20-character preview.
pub const CJK_SUMMARY: &str = "数据库主库延迟过高🔥🔥请立即检查连接池与慢查询日志👩‍💻";
/// An alert name of CJK and emoji: the shipped WxPusher summary starts with it, so the
/// preview line needs cutting.
pub const CJK_ALERTNAME: &str = "数据库主库延迟过高👩‍💻请立即检查连接池";

/// One receiver `oncall` through the mock WxPusher, admin basic auth, a webhook token, and
/// `extra` top-level YAML (for `web:`).
pub fn config(mock: &MockWxPusher, extra: &str) -> String {
    format!(
        r#"
global: {{ wxpusher_api_url: "{url}" }}
auth:
  bearer_token: {WEBHOOK_TOKEN}
  admin:
    basic_auth: {{ username: {ADMIN_USER}, password: {ADMIN_PASSWORD} }}
{extra}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs: [{{ app_token: {APP_TOKEN}, uids: [UID_a] }}]
"#,
        url = mock.url
    )
}

/// The `examples/alertmanager-firing.json` payload with a CJK + emoji summary.
pub fn cjk_payload() -> Value {
    let mut p: Value = serde_json::from_str(&example("alertmanager-firing.json")).unwrap();
    for a in p["alerts"].as_array_mut().unwrap() {
        a["annotations"]["summary"] = json!(CJK_SUMMARY);
        a["labels"]["alertname"] = json!(CJK_ALERTNAME);
    }
    p["commonAnnotations"]["summary"] = json!(CJK_SUMMARY);
    p["commonLabels"]["alertname"] = json!(CJK_ALERTNAME);
    p["groupLabels"]["alertname"] = json!(CJK_ALERTNAME);
    p
}

pub fn basic() -> String {
    use base64::Engine;
    let b =
        base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN_USER}:{ADMIN_PASSWORD}"));
    format!("Basic {b}")
}

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    fn new(base: &str) -> Http {
        Http {
            base: base.to_string(),
            client: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str, auth: Option<&str>) -> reqwest::Response {
        let mut r = self.client.get(format!("{}{path}", self.base));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send().await.unwrap()
    }

    async fn post(
        &self,
        path: &str,
        auth: Option<&str>,
        ct: Option<&str>,
        body: Value,
    ) -> reqwest::Response {
        let mut r = self
            .client
            .post(format!("{}{path}", self.base))
            .body(body.to_string());
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r.send().await.unwrap()
    }

    async fn json(&self, path: &str) -> Value {
        let r = self.get(path, Some(&basic())).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    async fn call(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .post(path, Some(&basic()), Some("application/json"), body)
            .await;
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
}

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows the secret {s:?}:\n{text}");
    }
}

/// Polls the history until a delivery has `state` (the worker records it after the upstream
/// answered; there is no other signal to wait on from outside).
pub async fn wait_for_state(base: &str, state: &str) -> Value {
    let http = Http::new(base);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = http
            .json(&format!("/api/v1/deliveries?status={state}"))
            .await;
        if let Some(d) = v["items"].as_array().and_then(|a| a.first()) {
            return d.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery became {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn console_and_api_need_admin_credentials_not_the_webhooks() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "")).await;
    let http = Http::new(&srv.url);
    for path in [
        "/ui/",
        "/ui/playground",
        "/ui/deliveries",
        "/ui/deadletters",
        "/ui/oncall",
        "/ui/incidents",
        "/ui/assets/console.js",
        "/api/v1/deliveries",
        "/api/v1/deadletters",
    ] {
        let r = http.get(path, None).await;
        assert_eq!(r.status(), 401, "{path} without credentials");
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic ")
        );
        let r = http
            .get(path, Some(&format!("Bearer {WEBHOOK_TOKEN}")))
            .await;
        assert_eq!(r.status(), 401, "{path} with the webhook's token");
        let r = http.get(path, Some(&basic())).await;
        assert_eq!(r.status(), 200, "{path} with admin credentials");
    }
    // The webhook does not take the admin's credentials either.
    let r = http
        .post(
            "/webhook",
            Some(&basic()),
            Some("application/json"),
            serde_json::from_str(&example("alertmanager-firing.json")).unwrap(),
        )
        .await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn without_auth_admin_the_console_is_off_and_web_console_false_hides_it() {
    let mock = MockWxPusher::start().await;
    let yaml = crate::support::one_receiver(&mock, "");
    let srv = TestServer::start(&yaml).await;
    assert_eq!(
        srv.get("/ui/").await.0,
        404,
        "default: off without auth.admin"
    );
    srv.stop().await;
    let srv = TestServer::start(&crate::support::one_receiver(
        &mock,
        "web: { console: true }",
    ))
    .await;
    let (s, body) = srv.get("/api/v1/deliveries").await;
    assert_eq!(s, 401, "on but no auth.admin: nobody may: {body}");
    srv.stop().await;
    let srv = TestServer::start(&config(&mock, "web: { console: false }")).await;
    let r = Http::new(&srv.url).get("/ui/", Some(&basic())).await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn pages_carry_a_content_security_policy_and_no_inline_script() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "")).await;
    let http = Http::new(&srv.url);
    for path in crate::console_pages::PAGES {
        let r = http.get(path, Some(&basic())).await;
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        let html = r.text().await.unwrap();
        assert!(html.contains("<script src=\"assets/console.js\" defer></script>"));
        assert!(!html.contains("<script>"), "inline script in {path}");
        assert!(
            !html.contains("href=\"/") && !html.contains("src=\"/"),
            "absolute URL in {path}: {html}"
        );
    }
}

#[tokio::test]
async fn state_changing_calls_need_json_content_type() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "")).await;
    let http = Http::new(&srv.url);
    for path in [
        "/api/v1/deadletters/purge",
        "/api/v1/deadletters/replay",
        "/api/v1/deadletters/1/replay",
        "/api/v1/send-test",
        "/api/v1/render",
    ] {
        for ct in [
            None,
            Some("application/x-www-form-urlencoded"),
            Some("text/plain"),
        ] {
            let r = http.post(path, Some(&basic()), ct, json!({})).await;
            assert_eq!(r.status(), 415, "{path} with {ct:?}");
        }
    }
    assert_eq!(
        http.call("/api/v1/deadletters/42/replay", json!({}))
            .await
            .0,
        404
    );
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn render_answers_the_requests_masked_and_the_preview_line_as_sent() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "")).await;
    let http = Http::new(&srv.url);
    let (s, v) = http
        .call(
            "/api/v1/render",
            json!({ "payload": cjk_payload(), "receiver": "oncall" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item["kind"], "wxpusher");
    let req = &item["requests"][0];
    let summary = req["body"]["summary"].as_str().unwrap();
    let line = item["preview"]["line"].as_str().unwrap();
    assert_eq!(
        line, summary,
        "the preview line is the summary exactly as sent"
    );
    assert_eq!(
        item["preview"]["line_chars"], 20,
        "cut to 20 visible characters: {line:?}"
    );
    assert!(line.contains("数据库") && line.contains("👩‍💻"), "{line}");
    assert_ne!(req["body"]["appToken"], APP_TOKEN);
    assert_eq!(item["preview"]["format"], "markdown");
    assert_no_secret("render", &v.to_string());
    assert!(mock.requests().is_empty(), "render sends nothing");

    // The same answer as the command line's `render`: the same function.
    let rt = srv.app.runtime.load();
    let payload = serde_json::to_vec(&cjk_payload()).unwrap();
    let cli = alertmanager_wechat::cli::render(&rt, &payload, Some("oncall"), chrono::Utc::now())
        .unwrap();
    assert_eq!(
        cli[0].requests[0].body["summary"].as_str().unwrap(),
        summary
    );

    // A playground template replaces the configured one.
    let (s, v) = http
        .call("/api/v1/render", json!({ "payload": cjk_payload(), "templates": { "wxpusher.summary": "🚨 {{commonLabels.alertname}}" } }))
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["items"][0]["preview"]["line"]
            .as_str()
            .unwrap()
            .starts_with("🚨 "),
        "{v}"
    );
}

#[tokio::test]
async fn render_template_errors_are_400_with_the_template_and_line() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "")).await;
    let http = Http::new(&srv.url);
    let (s, v) = http
        .call("/api/v1/render", json!({ "payload": cjk_payload(), "templates": { "wxpusher.content": "ok\nsecond {{#if status}}\nno close" } }))
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["template"], "wxpusher.content", "{v}");
    assert!(v["line"].as_u64().is_some(), "a line: {v}");
    assert!(v["error"].as_str().unwrap().contains("wxpusher.content"));
    let (s, v) = http
        .call("/api/v1/render", json!({ "payload": { "alerts": [] } }))
        .await;
    assert_eq!((s, v["place"].as_str()), (400, Some("payload")), "{v}");
    let (s, v) = http
        .call(
            "/api/v1/render",
            json!({ "payload": cjk_payload(), "receiver": "nobody" }),
        )
        .await;
    assert_eq!((s, v["place"].as_str()), (400, Some("receiver")), "{v}");
}

#[tokio::test]
async fn deliveries_show_what_became_of_each_and_dead_letters_replay_and_purge() {
    let mock = MockWxPusher::start().await;
    mock.set_default(Reply::Code(1001, "appToken不正确"));
    let srv = TestServer::start(&config(&mock, "")).await;
    let http = Http::new(&srv.url);
    let payload: Value = serde_json::from_str(&example("alertmanager-firing.json")).unwrap();
    let r = http
        .post(
            "/webhook",
            Some(&format!("Bearer {WEBHOOK_TOKEN}")),
            Some("application/json"),
            payload.clone(),
        )
        .await;
    assert_eq!(r.status(), 200);
    let dead = wait_for_state(&srv.url, "dead").await;
    assert_eq!(dead["receiver"], "oncall");
    assert_eq!(dead["kind"], "wxpusher");
    assert_eq!(dead["attempts"], 1);
    assert!(
        dead["last_error"].as_str().unwrap().contains("1001"),
        "{dead}"
    );
    assert!(
        dead["external_url"].as_str().unwrap().starts_with("http"),
        "{dead}"
    );
    assert!(!dead["alertnames"].as_array().unwrap().is_empty());

    let list = http.json("/api/v1/deadletters").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let id = items[0]["id"].as_i64().unwrap();
    assert!(!items[0]["reason"].as_str().unwrap().is_empty(), "{list}");
    let page = http
        .get("/ui/deadletters", Some(&basic()))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!("data-id=\"{id}\"")), "{page}");
    let page = http
        .get("/ui/deliveries?status=dead", Some(&basic()))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("state-dead"), "{page}");
    assert_no_secret("deliveries page", &page);
    assert_no_secret("dead letters", &list.to_string());

    // Fixed upstream: the replayed dead letter goes out.
    mock.set_default(Reply::Success);
    let (s, v) = http
        .call(&format!("/api/v1/deadletters/{id}/replay"), json!({}))
        .await;
    assert_eq!((s, &v), (200, &json!({ "replayed": 1 })));
    mock.wait_for(2, Duration::from_secs(20)).await;
    let sent = wait_for_state(&srv.url, "sent").await;
    assert_eq!(
        sent["job"].as_i64(),
        Some(id),
        "the same record, now sent: {sent}"
    );
    assert!(sent["sent_at"].is_string());

    // A duplicate within the window is recorded as suppressed (dedupe on for this server).
    srv.stop().await;
    let srv = TestServer::start(&config(&mock, "dedupe: { window: 5m }")).await;
    let http = Http::new(&srv.url);
    for _ in 0..2 {
        let r = http
            .post(
                "/webhook",
                Some(&format!("Bearer {WEBHOOK_TOKEN}")),
                Some("application/json"),
                payload.clone(),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let v = http.json("/api/v1/deliveries?status=suppressed").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
    let (s, v) = http.call("/api/v1/deadletters/purge", json!({})).await;
    assert_eq!((s, v["purged"].as_u64()), (200, Some(0)));
    let s = http
        .get("/api/v1/deliveries?status=bogus", Some(&basic()))
        .await
        .status();
    assert_eq!(s, 400);
}

#[tokio::test]
async fn the_console_and_api_work_under_a_route_prefix() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "web: { route_prefix: /amw/ }")).await;
    let http = Http::new(&srv.url);
    let r = http.get("/amw/ui/", Some(&basic())).await;
    assert_eq!(r.status(), 200);
    assert_eq!(http.get("/ui/", Some(&basic())).await.status(), 404);
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/amw/ui", srv.url))
        .header("authorization", basic())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "ui/", "relative");
    let (s, _) = Http {
        base: format!("{}/amw", srv.url),
        client: reqwest::Client::new(),
    }
    .call("/api/v1/render", json!({ "payload": cjk_payload() }))
    .await;
    assert_eq!(s, 200);
    let r = http
        .post(
            "/amw/webhook",
            Some(&format!("Bearer {WEBHOOK_TOKEN}")),
            Some("application/json"),
            serde_json::from_str(&example("alertmanager-firing.json")).unwrap(),
        )
        .await;
    assert_eq!(r.status(), 200, "the webhook moves under the prefix too");
    mock.wait_for(1, Duration::from_secs(20)).await;
}

#[tokio::test]
async fn no_secret_in_any_page_or_answer() {
    let mock = MockWxPusher::start().await;
    mock.set_default(Reply::Code(1001, "appToken不正确"));
    let srv = TestServer::start(&config(&mock, "")).await;
    let http = Http::new(&srv.url);
    let payload: Value = serde_json::from_str(&example("alertmanager-firing.json")).unwrap();
    http.post(
        "/webhook",
        Some(&format!("Bearer {WEBHOOK_TOKEN}")),
        Some("application/json"),
        payload,
    )
    .await;
    wait_for_state(&srv.url, "dead").await;
    for path in [
        "/ui/",
        "/ui/deliveries",
        "/ui/deadletters",
        "/ui/assets/console.js",
        "/api/v1/deliveries",
        "/api/v1/deadletters",
        "/api/v1/receivers",
        "/api/v1/examples",
    ] {
        let text = http.get(path, Some(&basic())).await.text().await.unwrap();
        assert_no_secret(path, &text);
    }
    let (_, v) = http
        .call("/api/v1/render", json!({ "payload": cjk_payload() }))
        .await;
    assert_no_secret("render", &v.to_string());
    let (_, v) = http
        .call("/api/v1/send-test", json!({ "receiver": "oncall" }))
        .await;
    assert_eq!(v["ok"], false, "{v}");
    assert_no_secret("send-test", &v.to_string());
}

#[test]
fn auth_admin_needs_credentials_and_takes_one_kind() {
    let check = |yaml: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yml");
        std::fs::write(&path, yaml).unwrap();
        alertmanager_wechat::config::Config::load(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let base = "route: { receiver: r }\nreceivers: [ { name: r, console_configs: [ {} ] } ]\n";
    let empty = check(&format!("auth: {{ admin: {{}} }}\n{base}"));
    assert!(
        empty.contains(
            "auth.admin: one of basic_auth, bearer_token and bearer_token_file is required"
        ),
        "{empty}"
    );
    let both = check(&format!(
        "auth: {{ admin: {{ bearer_token: t0ken-abc, basic_auth: {{ username: a, password: b }} }} }}\n{base}"
    ));
    assert!(
        both.contains("auth.admin: bearer_token and basic_auth are mutually exclusive"),
        "{both}"
    );
    assert_eq!(
        check(&format!(
            "auth: {{ admin: {{ bearer_token: t0ken-abc }} }}\n{base}"
        )),
        ""
    );
}

/// The examples posted in order, firing then resolved, with resolved grouping on: the held
/// resolved delivery is merged into the resolved message that goes out, and its record says
/// so (`merged`, pointing at the record of that message), instead of staying `queued`.
async fn held_resolved_delivery_is_recorded_as_merged(storage: &str) {
    let mock = MockWxPusher::start().await;
    let extra = format!("{storage}\ndedupe: {{ window: 5m, resolved_group_wait: 1s }}");
    let srv = TestServer::start(&config(&mock, &extra)).await;
    let http = Http::new(&srv.url);
    for (i, name) in ["alertmanager-firing.json", "alertmanager-resolved.json"]
        .into_iter()
        .enumerate()
    {
        let payload: Value = serde_json::from_str(&example(name)).unwrap();
        let r = http
            .post(
                "/webhook",
                Some(&format!("Bearer {WEBHOOK_TOKEN}")),
                Some("application/json"),
                payload,
            )
            .await;
        assert_eq!(r.status(), 200, "{name}");
        mock.wait_for(i + 1, Duration::from_secs(20)).await;
    }
    // Both messages went out; the history catches up once the worker records the second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let items = loop {
        let v = http.json("/api/v1/deliveries").await;
        let items = v["items"].as_array().unwrap().clone();
        let sent = items.iter().filter(|d| d["state"] == "sent").count();
        let merged = items.iter().filter(|d| d["state"] == "merged").count();
        if sent == 2 && merged == 1 {
            break items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the history never settled: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(items.len(), 3, "{items:#?}");
    let merged = items.iter().find(|d| d["state"] == "merged").unwrap();
    assert_eq!(merged["status"], "resolved");
    assert_eq!(merged["attempts"], 0);
    let into = merged["digest"]
        .as_i64()
        .expect("which delivery took it over");
    let took_over = items.iter().find(|d| d["id"] == into).unwrap();
    assert_eq!(
        (
            &took_over["state"],
            &took_over["status"],
            &took_over["merged"]
        ),
        (&json!("sent"), &json!("resolved"), &json!(1)),
        "{took_over:#}"
    );
    let queued = http.json("/api/v1/deliveries?status=queued").await;
    assert_eq!(queued["items"], json!([]), "{queued:#}");
}

#[tokio::test]
async fn held_resolved_delivery_is_recorded_as_merged_sqlite() {
    held_resolved_delivery_is_recorded_as_merged("").await;
}

#[tokio::test]
async fn held_resolved_delivery_is_recorded_as_merged_redis() {
    let Some(redis) = crate::support::redis::RedisServer::start().await else {
        return;
    };
    let storage = format!("storage: {{ path: $DATA, redis_url: \"{}\" }}", redis.url);
    held_resolved_delivery_is_recorded_as_merged(&storage).await;
}

/// Where `GET {path}` redirects, resolved against the request's URL; `None` when it does not.
async fn redirected(base: &str, path: &str) -> (u16, Option<String>) {
    let url = reqwest::Url::parse(&format!("{base}{path}")).unwrap();
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url.clone())
        .send()
        .await
        .unwrap();
    let to = r
        .headers()
        .get("location")
        .map(|l| url.join(l.to_str().unwrap()).unwrap().path().to_string());
    (r.status().as_u16(), to)
}

#[tokio::test]
async fn the_bare_address_leads_to_the_console_when_it_is_on() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "")).await;
    assert_eq!(
        redirected(&srv.url, "/").await,
        (302, Some("/ui/".to_string()))
    );
    // The console still asks who is there.
    let http = Http::new(&srv.url);
    assert_eq!(http.get("/ui/", None).await.status(), 401);
    assert_eq!(http.get("/ui/", Some(&basic())).await.status(), 200);
    srv.stop().await;

    let srv = TestServer::start(&config(&mock, "web: { route_prefix: /amw/ }")).await;
    for path in ["/amw", "/amw/"] {
        assert_eq!(
            redirected(&srv.url, path).await,
            (302, Some("/amw/ui/".to_string())),
            "{path}"
        );
    }
    srv.stop().await;

    // Console off: nothing at the bare address, as before.
    let srv = TestServer::start(&config(&mock, "web: { console: false }")).await;
    assert_eq!(redirected(&srv.url, "/").await, (404, None));
    let srv = TestServer::start(&crate::support::one_receiver(&mock, "")).await;
    assert_eq!(redirected(&srv.url, "/").await, (404, None));
}

#[tokio::test]
async fn render_previews_wecom_messages_as_people_read_them_not_as_json() {
    let cfg = format!(
        r#"
auth:
  admin:
    basic_auth: {{ username: {ADMIN_USER}, password: {ADMIN_PASSWORD} }}
route: {{ receiver: robot }}
receivers:
  - name: robot
    wecom_robot_configs: [{{ key: robot-key-0001 }}]
  - name: app
    wecom_app_configs: [{{ corp_id: ww1, agent_id: 1000002, api_secret: app-secret-0001, to_user: '@all', msgtype: textcard }}]
"#
    );
    let srv = TestServer::start(&cfg).await;
    let http = Http::new(&srv.url);

    let (s, v) = http
        .call(
            "/api/v1/render",
            json!({ "payload": cjk_payload(), "receiver": "robot" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let item = &v["items"][0];
    assert_eq!(item["kind"], "wecom_robot");
    let content = item["requests"][0]["body"]["markdown"]["content"]
        .as_str()
        .unwrap();
    let preview = &item["preview"];
    assert_eq!(preview["format"], "markdown");
    assert_eq!(preview["body"], content, "the message's text, not its JSON");
    let line = preview["line"].as_str().unwrap();
    assert!(!line.is_empty() && !line.starts_with('{'), "{line}");
    assert!(
        !line.contains('<') && !line.contains("**") && !line.starts_with('#'),
        "the text, not its markup: {line}"
    );
    assert!(line.contains("数据库"), "{line}");
    assert!(
        alertmanager_wechat::text::visible_len(line) <= 20,
        "cut to global.summary_max_chars: {line}"
    );

    let (s, v) = http
        .call(
            "/api/v1/render",
            json!({ "payload": cjk_payload(), "receiver": "app" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let item = &v["items"][0];
    assert_eq!(item["kind"], "wecom_app");
    let card = &item["requests"][0]["body"]["textcard"];
    let preview = &item["preview"];
    assert_eq!(
        preview["line"], card["title"],
        "the card's title is the line"
    );
    let body = preview["body"].as_str().unwrap();
    assert!(
        !body.starts_with('{') && !body.contains("\"textcard\""),
        "{body}"
    );
    assert!(
        !body.contains("<div"),
        "the card's styling markup is not shown: {body}"
    );
    assert!(body.contains(CJK_SUMMARY), "{body}");
    assert_eq!(preview["url"], card["url"]);
    assert_no_secret("render", &v.to_string());
}
