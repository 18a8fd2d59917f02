//! The console in a real browser: headless Chromium driven through chromedriver (Debian's
//! `chromium` and `chromium-driver`, installed by `scripts/test`) with fantoccini. The pages
//! are loaded with admin credentials, a CJK + emoji payload is rendered in the playground and
//! its preview line compared with the API's (and a WeCom message shown as its reader sees
//! it), and a dead letter is replayed from its page until the mock WxPusher receives it,
//! under a route prefix. Every page is measured at a 390-px phone width and a desktop width,
//! in both languages: nothing scrolls sideways (the document, and each table box), and every
//! control is at least 44 px tall. Screenshots are kept under `target/screenshots/`.
//!
//! Missing Chromium or chromedriver is a skip locally and a failure with `CI=true`, like the
//! other real binaries (`support/process.rs`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::console::{ADMIN_PASSWORD, ADMIN_USER, basic, cjk_payload, config, wait_for_state};
use crate::console_pages::{PAGES, TRICKY_NAME, oncall_config, payload, post};
use crate::support::process::{binary, free_port};
use crate::support::wxpusher::{MockWxPusher, Reply};
use crate::support::{TestServer, example};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Long enough for a loaded CI machine; every wait polls and ends as soon as it is met.
const WAIT: Duration = Duration::from_secs(30);

/// A Chrome DevTools command through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "cmd": self.cmd, "params": self.params }).to_string()),
        )
    }
}

/// chromedriver on a free port and one headless Chromium session with a fresh profile.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// `None` (skipped, with a note) when Chromium is not installed outside CI.
    async fn start() -> Option<Browser> {
        // The readiness probe below uses reqwest, which needs a TLS provider installed.
        alertmanager_wechat::runtime::install_tls_provider();
        let chromium = binary(CHROMIUM)?;
        let driver_bin = binary(CHROMEDRIVER)?;
        let port = free_port();
        let mut driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        // chromedriver says when it takes sessions only through /status: polled.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ready = reqwest::get(format!("{url}/status"))
                .await
                .ok()
                .filter(|r| r.status().is_success());
            if let Some(r) = ready
                && r.json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["value"]["ready"].as_bool())
                    == Some(true)
            {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = driver.kill();
                panic!("chromedriver did not become ready on port {port}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("unhandledPromptBehavior".into(), json!("ignore"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    // A phone's screen: SREs read WeChat on their phones.
                    "--window-size=412,915",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| {
                let _ = driver.kill();
                panic!("cannot start a Chromium session: {e}")
            });
        Some(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Sends `auth.admin`'s credentials with every request of the page, fetch included.
    async fn log_in(&self) {
        for (cmd, params) in [
            ("Network.enable", json!({})),
            (
                "Network.setExtraHTTPHeaders",
                json!({ "headers": { "Authorization": basic() } }),
            ),
        ] {
            self.client
                .issue_cmd(Cdp { cmd, params })
                .await
                .unwrap_or_else(|e| panic!("{cmd}: {e}"));
        }
    }

    /// The viewport as a device of `width` × `height` CSS pixels (a phone below 600).
    async fn viewport(&self, width: u32, height: u32) {
        self.client
            .issue_cmd(Cdp {
                cmd: "Emulation.setDeviceMetricsOverride",
                params: json!({
                    "width": width, "height": height, "deviceScaleFactor": 1,
                    "mobile": width < 600,
                }),
            })
            .await
            .unwrap_or_else(|e| panic!("cannot set the viewport: {e}"));
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    /// The whole page, not only the viewport (a phone's long scroll in one picture).
    async fn screenshot_full(&self, name: &str) {
        use base64::Engine as _;
        let size = self
            .client
            .issue_cmd(Cdp {
                cmd: "Page.getLayoutMetrics",
                params: json!({}),
            })
            .await
            .unwrap();
        let (w, h) = (
            size["cssContentSize"]["width"].as_f64().unwrap(),
            size["cssContentSize"]["height"].as_f64().unwrap(),
        );
        let shot = self
            .client
            .issue_cmd(Cdp {
                cmd: "Page.captureScreenshot",
                params: json!({
                    "format": "png", "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": w, "height": h, "scale": 1 },
                }),
            })
            .await
            .unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

async fn api_render(base: &str, payload: &Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/render"))
        .header("authorization", basic())
        .header("content-type", "application/json")
        .body(json!({ "payload": payload, "receiver": "oncall" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn playground_shows_the_preview_line_the_api_returns_under_a_prefix() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&config(&mock, "web: { route_prefix: /amw }")).await;
    let base = format!("{}/amw", srv.url);
    let c = &browser.client;

    browser.log_in().await;
    c.goto(&format!("{base}/ui/playground")).await.unwrap();
    let payload = cjk_payload();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#example optgroup"))
        .await
        .expect("the examples are listed (the API answered the page's fetch)");
    c.execute(
        "document.getElementById('receiver').value = 'oncall';\
         document.getElementById('payload').value = arguments[0];",
        vec![json!(serde_json::to_string_pretty(&payload).unwrap())],
    )
    .await
    .unwrap();
    c.find(Locator::Id("render"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let line = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("article[data-kind=wxpusher] .preview-line"))
        .await
        .expect("the playground renders a preview line");
    let shown = line.text().await.unwrap();
    let api = api_render(&base, &payload).await;
    let expected = api["items"][0]["preview"]["line"].as_str().unwrap();
    assert_eq!(api["items"][0]["preview"]["line_chars"], 20);
    assert_eq!(
        shown, expected,
        "the page shows the API's 20-character line"
    );
    let chars = line.attr("data-chars").await.unwrap();
    assert_eq!(chars.as_deref(), Some("20"));
    let html = c.source().await.unwrap();
    assert!(!html.contains(ADMIN_PASSWORD));
    assert!(mock.requests().is_empty(), "the playground sent nothing");
    // The rendering below the phone, for the screenshot.
    c.execute(
        "window.scrollTo(0, document.getElementById('results').offsetTop - 8)",
        vec![],
    )
    .await
    .unwrap();
    browser.screenshot("playground.png").await;
    browser.close().await;
}

#[tokio::test]
async fn a_dead_letter_replayed_from_its_page_reaches_the_upstream() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let mock = MockWxPusher::start().await;
    mock.set_default(Reply::Code(1001, "appToken不正确"));
    let srv = TestServer::start(&config(&mock, "")).await;
    let r = reqwest::Client::new()
        .post(format!("{}/webhook", srv.url))
        .header(
            "authorization",
            format!("Bearer {}", crate::console::WEBHOOK_TOKEN),
        )
        .header("content-type", "application/json")
        .body(example("alertmanager-firing.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let dead = wait_for_state(&srv.url, "dead").await;
    mock.set_default(Reply::Success);

    let c = &browser.client;
    browser.log_in().await;
    c.goto(&format!("{}/ui/deadletters", srv.url))
        .await
        .unwrap();
    let button = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("button.replay"))
        .await
        .unwrap();
    let id = button.attr("data-id").await.unwrap();
    assert_eq!(
        id.as_deref().and_then(|s| s.parse().ok()),
        dead["job"].as_i64()
    );
    browser.screenshot("deadletters.png").await;
    button.click().await.unwrap();
    // The confirmation comes first; nothing is replayed before it is accepted.
    let question = c.get_alert_text().await.unwrap();
    assert!(
        question.contains("重放死信"),
        "in the configured zh-CN: {question}"
    );
    assert_eq!(mock.requests().len(), 1);
    c.accept_alert().await.unwrap();
    let got = mock.wait_for(2, WAIT).await;
    assert_eq!(got[1].body["uids"], json!(["UID_a"]));
    wait_for_state(&srv.url, "sent").await;

    c.goto(&format!("{}/ui/deliveries", srv.url)).await.unwrap();
    let row = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#deliveries tr[data-state=sent]"))
        .await
        .unwrap();
    assert!(row.text().await.unwrap().contains("oncall"));
    browser.screenshot("deliveries.png").await;
    browser.close().await;
}

/// What a page measures in the browser: its language, how far the document and each table
/// box reach past their width, and the controls shorter than 44 px.
const MEASURE: &str = r##"
const W = window.innerWidth;
const de = document.documentElement;
const out = { lang: de.lang, width: W, doc: Math.max(de.scrollWidth, document.body.scrollWidth), wide: [], small: [], boxes: 0 };
const name = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className && typeof e.className === "string" ? "." + e.className.split(" ").join(".") : "");
for (const e of document.querySelectorAll(".table, table, pre, .chat, .panel, .incident, main, header, footer, form")) {
  out.boxes++;
  const r = e.getBoundingClientRect();
  if (e.scrollWidth > e.clientWidth + 1 || r.right > W + 1) out.wide.push(name(e) + " " + e.scrollWidth + ">" + e.clientWidth);
}
for (const e of document.querySelectorAll("svg")) {
  const r = e.getBoundingClientRect();
  if (r.right > W + 1) out.wide.push(name(e) + " right " + r.right);
}
for (const e of document.querySelectorAll("a, button, select, input, summary")) {
  const r = e.getBoundingClientRect();
  if (r.width === 0 && r.height === 0) continue;
  if (r.height < 43.5) out.small.push(name(e) + " " + JSON.stringify(e.textContent.trim().slice(0, 30)) + " " + r.height);
}
return out;
"##;

/// Waits until the page has what it fetches (the incidents' list, the playground's examples).
async fn settled(c: &Client, path: &str) {
    let ready = match path {
        "/ui/incidents" => "#incidents #unavailable, #incidents #empty, #incidents .incident",
        "/ui/playground" => "#example optgroup",
        _ => "footer",
    };
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(ready))
        .await
        .unwrap_or_else(|e| panic!("{path} did not settle: {e}"));
}

#[tokio::test]
async fn every_page_fits_a_phone_and_a_desktop_in_both_languages() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&oncall_config(&mock, "")).await;
    // A delivered notification with a long, tricky alert name (the charts and "firing now"),
    // then a dead letter with a long error.
    post(&srv.url, &payload(TRICKY_NAME, "critical")).await;
    wait_for_state(&srv.url, "sent").await;
    mock.set_default(Reply::Code(
        1001,
        "appToken不正确，请检查您的配置，或者联系管理员确认应用是否已经被禁用或删除_VeryLongUnbrokenUpstreamErrorText",
    ));
    post(&srv.url, &payload("HighLatency", "warning")).await;
    wait_for_state(&srv.url, "dead").await;
    // An override, for the on-call page's list.
    let start = chrono::Utc::now();
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/schedules/sre-primary/overrides",
            srv.url
        ))
        .header("authorization", basic())
        .header("content-type", "application/json")
        .body(
            json!({
                "person": "lisi", "replaces": "zhangsan",
                "start": start, "end": start + chrono::Duration::hours(8),
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let c = &browser.client;
    browser.log_in().await;
    for lang in ["zh-CN", "en"] {
        // Chosen once; the cookie keeps it for every page after.
        c.goto(&format!("{}/ui/?lang={lang}", srv.url))
            .await
            .unwrap();
        for (width, height) in [(390, 844), (1280, 900)] {
            browser.viewport(width, height).await;
            for path in PAGES.iter().copied().chain(["/ui/?range=7d"]) {
                c.goto(&format!("{}{path}", srv.url)).await.unwrap();
                settled(c, path).await;
                let m = c.execute(MEASURE, vec![]).await.unwrap();
                let at = format!("{path} in {lang} at {width} px");
                eprintln!(
                    "{at}: document {} px wide, {} boxes, none wider: {}, controls under 44 px: {}",
                    m["doc"], m["boxes"], m["wide"], m["small"]
                );
                assert_eq!(m["lang"], lang, "{at}: <html lang>");
                assert_eq!(m["width"], width, "{at}: viewport");
                assert!(
                    m["doc"].as_u64().unwrap() <= width as u64,
                    "{at}: the page scrolls sideways: {m}"
                );
                assert!(m["boxes"].as_u64().unwrap() >= 3, "{at}: {m}");
                assert_eq!(m["wide"], json!([]), "{at}: boxes scroll sideways");
                assert_eq!(m["small"], json!([]), "{at}: touch targets under 44 px");
                let name = match path.trim_start_matches("/ui/") {
                    "" => "overview",
                    "?range=7d" => "overview-7d",
                    p => p,
                };
                browser
                    .screenshot(&format!("{name}-{lang}-{width}.png"))
                    .await;
            }
        }
    }
    // The overview at phone width: what is firing comes first, the chart has both bars' data.
    browser.viewport(390, 844).await;
    c.goto(&format!("{}/ui/?lang=zh-CN", srv.url))
        .await
        .unwrap();
    let first = c
        .find(Locator::Css("main .panel"))
        .await
        .unwrap()
        .attr("id")
        .await
        .unwrap();
    assert_eq!(first.as_deref(), Some("firing"));
    browser.screenshot_full("overview-zh-CN-390-full.png").await;
    let text = c
        .find(Locator::Css("#firing"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("\\u{202e}evil"), "{text}");
    // A cut value is shown whole when tapped.
    let cut = c
        .find(Locator::XPath(
            "//*[@id='firing']//span[contains(@class, 'cut') and contains(., 'DiskWillFill')]",
        ))
        .await
        .unwrap();
    let before: f64 = c
        .execute(
            "return arguments[0].getBoundingClientRect().height",
            vec![json!(cut.clone())],
        )
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    cut.click().await.unwrap();
    let after: f64 = c
        .execute(
            "return arguments[0].getBoundingClientRect().height",
            vec![json!(cut)],
        )
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    assert!(
        after > before,
        "tapped, the long name wraps: {before} → {after}"
    );
    browser.close().await;
}

#[tokio::test]
async fn on_call_overrides_are_added_and_deleted_from_the_page() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&oncall_config(&mock, "locale: en")).await;
    let c = &browser.client;
    browser.log_in().await;
    browser.viewport(390, 844).await;
    c.goto(&format!("{}/ui/oncall", srv.url)).await.unwrap();
    let now = c
        .find(Locator::Css("#oncall-now li[data-schedule=sre-primary]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(now.contains("until"), "{now}");
    // Cover for 张三 until tomorrow 09:00, Asia/Shanghai.
    let until = (chrono::Utc::now() + chrono::Duration::days(1))
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive()
        .and_hms_opt(9, 0, 0)
        .unwrap();
    c.execute(
        "const f = document.getElementById('cover');\
         f.person.value = 'lisi'; f.replaces.value = 'zhangsan'; f.until.value = arguments[0];",
        vec![json!(until.format("%Y-%m-%dT%H:%M").to_string())],
    )
    .await
    .unwrap();
    c.find(Locator::Css("#cover button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let item = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#overrides li"))
        .await
        .expect("the page lists the new override");
    let text = item.text().await.unwrap();
    assert!(text.contains("李四") && text.contains("张三"), "{text}");
    assert!(
        text.contains(&until.format("%Y-%m-%d %H:%M:%S").to_string()),
        "ends at the wall-clock time picked, in Asia/Shanghai: {text}"
    );
    let api: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/schedules/sre-primary/overrides",
            srv.url
        ))
        .header("authorization", basic())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let end: chrono::DateTime<chrono::Utc> =
        api["items"][0]["end"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        end.with_timezone(&chrono_tz::Asia::Shanghai).naive_local(),
        until
    );
    browser.screenshot("oncall-override.png").await;
    c.find(Locator::Css("button.delete-override"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.accept_alert().await.unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#no-overrides"))
        .await
        .expect("deleted, the list is empty");
    let _ = ADMIN_USER;
    browser.close().await;
}

#[tokio::test]
async fn incidents_page_says_gracefully_that_there_is_nothing_yet() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&oncall_config(&mock, "")).await;
    let c = &browser.client;
    browser.log_in().await;
    browser.viewport(390, 844).await;
    c.goto(&format!("{}/ui/incidents", srv.url)).await.unwrap();
    let shown = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#incidents #unavailable, #incidents #empty"))
        .await
        .unwrap();
    assert!(!shown.text().await.unwrap().is_empty());
    let error = c.find(Locator::Id("error")).await.unwrap();
    assert!(!error.is_displayed().await.unwrap(), "no error shown");
    browser.screenshot("incidents-zh-CN-390-empty.png").await;
    browser.close().await;
}

#[tokio::test]
async fn the_playground_shows_a_wecom_message_as_its_reader_sees_it() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let cfg = format!(
        r#"
auth:
  admin:
    basic_auth: {{ username: {ADMIN_USER}, password: {ADMIN_PASSWORD} }}
route: {{ receiver: robot }}
receivers:
  - name: robot
    wecom_robot_configs: [{{ key: robot-key-0001 }}]
"#
    );
    let srv = TestServer::start(&cfg).await;
    let c = &browser.client;
    browser.log_in().await;
    browser.viewport(390, 844).await;
    c.goto(&format!("{}/ui/playground", srv.url)).await.unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#example optgroup"))
        .await
        .unwrap();
    c.execute(
        "document.getElementById('receiver').value = 'robot';\
         document.getElementById('payload').value = arguments[0];",
        vec![json!(serde_json::to_string_pretty(&cjk_payload()).unwrap())],
    )
    .await
    .unwrap();
    c.find(Locator::Id("render"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let chat = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("article[data-kind=wecom_robot] .chat"))
        .await
        .unwrap();
    let text = chat.text().await.unwrap();
    assert!(text.contains(crate::console::CJK_SUMMARY), "{text}");
    assert!(
        !text.contains("msgtype") && !text.contains("<font") && !text.contains("**"),
        "what a person reads, not the request: {text}"
    );
    let app = c
        .find(Locator::Css("article[data-kind=wecom_robot] .lock .app"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(app, "企业微信群机器人");
    // The request itself stays folded away.
    let folded = c
        .find(Locator::Css("article[data-kind=wecom_robot] details"))
        .await
        .unwrap();
    assert!(folded.attr("open").await.unwrap().is_none());
    let m = c.execute(MEASURE, vec![]).await.unwrap();
    assert!(m["doc"].as_u64().unwrap() <= 390, "{m}");
    browser.screenshot("playground-wecom-390.png").await;
    browser.close().await;
}

/// The incidents API as DESIGN describes it, answered inside the page (injected before the
/// page's own script through DevTools, which the CSP does not govern): what the page shows of
/// it, and what its buttons post.
const FAKE_INCIDENTS: &str = r##"
(() => {
  const items = [
    { id: "inc-2", ref: "K7Q2", receiver: "sre-group", state: "triggered", policy: "sre-critical", step: 2,
      opened_at: "2026-12-06T18:29:19Z", acknowledged_by: null, acknowledged_at: null, resolved_at: null,
      next_escalation_at: "2026-12-06T18:49:19Z",
      timeline: [
        { at: "2026-12-06T18:29:19Z", event: "paged", person: "zhangsan", contact: "wecom_app", detail: "step 1" },
        { at: "2026-12-06T18:39:19Z", event: "escalated", person: null, contact: null, detail: "to step 2" } ] },
    { id: "inc-1", ref: "M3XA", receiver: "sre-group", state: "resolved", policy: "sre-critical", step: 1,
      opened_at: "2026-12-06T10:00:00Z", acknowledged_by: "lisi", acknowledged_at: "2026-12-06T10:03:00Z",
      resolved_at: "2026-12-06T10:30:00Z", next_escalation_at: null, timeline: [] } ];
  window.__posts = [];
  const real = window.fetch;
  window.fetch = (url, init) => {
    const u = String(url);
    if (!u.includes("api/v1/incidents")) return real(url, init);
    if (init && init.method === "POST") {
      window.__posts.push({ url: u, body: init.body });
      return Promise.resolve(new Response("{}", { status: 200, headers: { "Content-Type": "application/json" } }));
    }
    return Promise.resolve(new Response(JSON.stringify({ items }), { status: 200, headers: { "Content-Type": "application/json" } }));
  };
})();
"##;

#[tokio::test]
async fn incidents_are_listed_with_their_timeline_and_acted_on_from_the_page() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&oncall_config(&mock, "")).await;
    let c = &browser.client;
    browser.log_in().await;
    browser.viewport(390, 844).await;
    browser
        .client
        .issue_cmd(Cdp {
            cmd: "Page.addScriptToEvaluateOnNewDocument",
            params: json!({ "source": FAKE_INCIDENTS }),
        })
        .await
        .unwrap();
    c.goto(&format!("{}/ui/incidents", srv.url)).await.unwrap();
    let open = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(".incident[data-id=inc-2]"))
        .await
        .expect("the page lists what the API answers");
    let text = open.text().await.unwrap();
    // In zh-CN and Asia/Shanghai: 18:29:19Z is 02:29:19 the next day.
    assert!(text.contains("K7Q2") && text.contains("待认领"), "{text}");
    assert!(text.contains("2026-12-07 02:29:19"), "{text}");
    assert!(
        text.contains("2026-12-07 02:49:19"),
        "next escalation: {text}"
    );
    assert!(!text.contains("18:29:19Z"));
    let resolved = c
        .find(Locator::Css(".incident[data-id=inc-1]"))
        .await
        .unwrap();
    assert!(resolved.text().await.unwrap().contains("lisi"));
    assert!(
        resolved.find(Locator::Css("button")).await.is_err(),
        "a resolved incident has no buttons"
    );
    // The timeline, folded, with local times.
    c.find(Locator::Css(".incident[data-id=inc-2] details summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let timeline = c
        .find(Locator::Css(".incident[data-id=inc-2] .timeline"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        timeline.contains("paged")
            && timeline.contains("zhangsan")
            && timeline.contains("02:39:19"),
        "{timeline}"
    );
    let m = c.execute(MEASURE, vec![]).await.unwrap();
    assert!(m["doc"].as_u64().unwrap() <= 390, "{m}");
    assert_eq!(m["wide"], json!([]), "{m}");
    assert_eq!(m["small"], json!([]), "{m}");
    browser
        .screenshot_full("incidents-zh-CN-390-full.png")
        .await;
    // Acknowledge asks first, then posts to the incident's ack; escalate names its step.
    for (button, path, body) in [
        ("act-ack", "incidents/inc-2/ack", json!({})),
        (
            "act-escalate",
            "incidents/inc-2/escalate",
            json!({ "from_step": 2 }),
        ),
        ("act-resolve", "incidents/inc-2/resolve", json!({})),
    ] {
        c.find(Locator::Css(&format!(
            ".incident[data-id=inc-2] button.{button}"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
        let question = c.get_alert_text().await.unwrap();
        assert!(question.contains("K7Q2"), "{question}");
        c.accept_alert().await.unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        let post = loop {
            let posts = c.execute("return window.__posts", vec![]).await.unwrap();
            if let Some(p) = posts.as_array().and_then(|a| a.last())
                && p["url"].as_str().is_some_and(|u| u.ends_with(path))
            {
                break p.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no POST to {path}: {posts}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            post["url"].as_str().unwrap().contains("../api/v1/"),
            "relative, so a route prefix works: {post}"
        );
        let sent: Value = serde_json::from_str(post["body"].as_str().unwrap()).unwrap();
        assert_eq!(sent, body, "{path}");
        // The list is read again after each act.
        c.wait()
            .at_most(WAIT)
            .for_element(Locator::Css(&format!(
                ".incident[data-id=inc-2] button.{button}"
            )))
            .await
            .unwrap();
    }
    browser.close().await;
}
