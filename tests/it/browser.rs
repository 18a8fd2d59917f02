//! The console in a real browser: headless Chromium driven through chromedriver (Debian's
//! `chromium` and `chromium-driver`, installed by `scripts/test`) with fantoccini. The pages
//! are loaded with admin credentials, a CJK + emoji payload is rendered in the playground and
//! its preview line compared with the API's, and a dead letter is replayed from its page
//! until the mock WxPusher receives it, under a route prefix. Screenshots are kept under
//! `target/screenshots/`.
//!
//! Missing Chromium or chromedriver is a skip locally and a failure with `CI=true`, like the
//! other real binaries (`support/process.rs`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::console::{ADMIN_PASSWORD, basic, cjk_payload, config, wait_for_state};
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

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
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
    c.goto(&format!("{base}/ui/")).await.unwrap();
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
    assert!(question.contains("Replay dead letter"), "{question}");
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
