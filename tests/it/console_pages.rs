//! The console's pages over HTTP: every page in both languages (`global.locale`, `?lang=`,
//! the remembered cookie, `<html lang>`), times in `global.timezone`, received text escaped
//! with its bidi characters made visible, the overview's charts read from the hourly
//! counters after a real delivery, and those counters in both stores.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use alertmanager_wechat::config::StorageConfig;
use alertmanager_wechat::secret::Secret;
use alertmanager_wechat::store::Store;
use alertmanager_wechat::store::stats::{KEEP, MAX_NAMES_PER_HOUR, OTHER_NAMES, Tally};

use crate::console::{WEBHOOK_TOKEN, basic, config, wait_for_state};
use crate::support::redis::RedisServer;
use crate::support::wxpusher::MockWxPusher;
use crate::support::{TestServer, example};

pub const PAGES: &[&str] = &[
    "/ui/",
    "/ui/playground",
    "/ui/deliveries",
    "/ui/deadletters",
    "/ui/oncall",
    "/ui/incidents",
];

/// A long alert name with a right-to-left override inside: it must be escaped, visible as
/// `\u{202e}`, and never reorder the page.
pub const TRICKY_NAME: &str =
    "DiskWillFillIn4Hours_<b>bold</b>_\u{202e}evil_production_cluster_east_very_long_name";

/// The console's config (one WxPusher receiver) with on-call people and a schedule; `global`
/// adds keys to `global:` (the locale, the time zone).
pub fn oncall_config(mock: &MockWxPusher, global: &str) -> String {
    let yaml = config(
        mock,
        r#"
oncall:
  channels:
    wxpusher: { app_token: AT_oncall_token }
people:
  - { name: zhangsan, display_name: 张三, contacts: { wxpusher: { uid: UID_z } } }
  - { name: lisi, display_name: 李四, contacts: { wxpusher: { uid: UID_l } } }
schedules:
  - name: sre-primary
    time_zone: Asia/Shanghai
    rotation: { every: 1w, handoff: "2026-01-05T10:00:00+08:00", people: [zhangsan, lisi] }
"#,
    );
    yaml.replacen(
        "global: { ",
        &format!(
            "global: {{ {global}{} ",
            if global.is_empty() { "" } else { "," }
        ),
        1,
    )
}

/// The firing example with `name` as its alert name and `severity`.
pub fn payload(name: &str, severity: &str) -> Value {
    let mut p: Value = serde_json::from_str(&example("alertmanager-firing.json")).unwrap();
    for a in p["alerts"].as_array_mut().unwrap() {
        a["labels"]["alertname"] = json!(name);
        a["labels"]["severity"] = json!(severity);
    }
    p["commonLabels"]["alertname"] = json!(name);
    p["commonLabels"]["severity"] = json!(severity);
    p["groupLabels"]["alertname"] = json!(name);
    p["groupKey"] = json!(format!("{{}}:{{alertname=\"{name}\"}}"));
    p
}

pub async fn post(base: &str, p: &Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/webhook"))
        .header("authorization", format!("Bearer {WEBHOOK_TOKEN}"))
        .header("content-type", "application/json")
        .body(p.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn page(
    base: &str,
    path: &str,
    cookie: Option<&str>,
) -> (reqwest::header::HeaderMap, String) {
    let mut r = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header("authorization", basic());
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    let h = r.headers().clone();
    (h, r.text().await.unwrap())
}

#[tokio::test]
async fn pages_follow_the_locale_and_remember_a_browser_choice() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&oncall_config(&mock, "")).await;
    for path in PAGES {
        // Default locale: zh-CN.
        let (_, html) = page(&srv.url, path, None).await;
        assert!(html.contains(r#"<html lang="zh-CN">"#), "{path}: {html}");
        assert!(html.contains("概览") && html.contains("值班"), "{path}");
        assert!(html.contains("时间按 Asia/Shanghai (UTC+08:00)"), "{path}");
        assert!(
            !html.contains(">Overview<"),
            "{path}: English in a Chinese page"
        );
        // Switched: the answer sets the cookie; with it, the page stays English.
        let (h, html) = page(&srv.url, &format!("{path}?lang=en"), None).await;
        assert!(html.contains(r#"<html lang="en">"#), "{path}");
        let cookie = h["set-cookie"].to_str().unwrap();
        assert!(cookie.starts_with("amw_lang=en;"), "{cookie}");
        let (h, html) = page(&srv.url, path, Some("other=1; amw_lang=en")).await;
        assert!(html.contains(r#"<html lang="en">"#), "{path}");
        assert!(html.contains(">Overview<") && html.contains("Times in Asia/Shanghai"));
        assert!(h.get("set-cookie").is_none(), "only ?lang= sets it");
        assert!(!html.contains("概览"), "{path}: Chinese in an English page");
        // And the script's words in the page's language.
        assert!(html.contains("data-i18n=\"{"), "{path}");
    }
    // An English configuration, switched back to Chinese by a browser.
    srv.stop().await;
    let srv = TestServer::start(&oncall_config(
        &mock,
        "locale: en, timezone: America/New_York",
    ))
    .await;
    let (_, html) = page(&srv.url, "/ui/", None).await;
    assert!(html.contains(r#"<html lang="en">"#));
    assert!(
        html.contains("Times in America/New_York (UTC-05:00)"),
        "{html}"
    );
    let (_, html) = page(&srv.url, "/ui/", Some("amw_lang=zh-CN")).await;
    assert!(html.contains(r#"<html lang="zh-CN">"#));
}

#[tokio::test]
async fn times_are_local_received_text_is_escaped_and_the_overview_draws_the_counters() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&oncall_config(&mock, "")).await;
    post(&srv.url, &payload(TRICKY_NAME, "critical")).await;
    post(&srv.url, &payload("HighLatency", "warning")).await;
    mock.wait_for(2, std::time::Duration::from_secs(30)).await;
    let sent = wait_for_state(&srv.url, "sent").await;
    // Both counted once the outcome is recorded: wait for the second.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let html = loop {
        let (_, html) = page(&srv.url, "/ui/?lang=en", None).await;
        if html.matches("data-severity=").count() >= 2 {
            break html;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not counted: {html}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    // Charts: one critical and one warning in the current hour; both names in the top ten.
    assert!(
        html.contains(r#"data-severity="critical" data-n="1""#),
        "{html}"
    );
    assert!(
        html.contains(r#"data-severity="warning" data-n="1""#),
        "{html}"
    );
    assert!(
        html.contains(r#"data-name="HighLatency" data-n="1""#),
        "{html}"
    );
    assert!(html.contains("<svg"));
    // Firing now: both groups, the newest first; on call now from the schedule.
    let firing = html.split("id=\"firing\"").nth(1).unwrap();
    let (high, tricky) = (
        firing.find("HighLatency").unwrap(),
        firing.find("DiskWillFillIn4Hours").unwrap(),
    );
    assert!(high < tricky, "newest first");
    let oncall = html.split("id=\"oncall\"").nth(1).unwrap();
    assert!(oncall.contains("data-schedule=\"sre-primary\""));
    assert!(
        oncall.contains("张三") || oncall.contains("李四"),
        "{oncall}"
    );
    // No route here has an escalation policy: the incident slots say there are none.
    for slot in ["open-incidents", "time-to-ack"] {
        let panel = html.split(&format!("id=\"{slot}\"")).nth(1).unwrap();
        let panel = panel.split("</section>").next().unwrap();
        assert!(panel.contains("No incidents."), "{slot}: {panel}");
    }
    // Received text is escaped, its bidi override shown, never written raw.
    assert!(!html.contains("<b>bold</b>"));
    assert!(html.contains("&lt;b&gt;bold&lt;/b&gt;"));
    assert!(!html.contains('\u{202e}'));
    assert!(html.contains("\\u{202e}evil"));
    // Times in Asia/Shanghai, no UTC `Z` strings shown.
    let (_, html) = page(&srv.url, "/ui/deliveries", None).await;
    let at: DateTime<Utc> = sent["accepted_at"].as_str().unwrap().parse().unwrap();
    let local = at
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    assert!(
        html.contains(&format!(">{local}</time>")),
        "{local}: {html}"
    );
    let shown: String = html
        .split("<time")
        .skip(1)
        .filter_map(|s| {
            s.split_once('>')
                .map(|(_, r)| r.split('<').next().unwrap_or(""))
        })
        .collect();
    assert!(!shown.contains('Z') && !shown.contains('T'), "{shown}");
    assert!(!html.contains('\u{202e}'));
    // A week's view reads the same counters.
    let (_, html) = page(&srv.url, "/ui/?range=7d", None).await;
    assert_eq!(html.matches("data-severity=").count(), 2, "{html}");
}

#[tokio::test]
async fn old_addresses_still_lead_to_the_pages() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&oncall_config(&mock, "")).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (from, to) in [("/ui", "ui/"), ("/ui/playground/", "../playground")] {
        let r = http
            .get(format!("{}{from}", srv.url))
            .header("authorization", basic())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 301, "{from}");
        assert_eq!(r.headers()["location"], to, "{from}");
    }
    let (_, html) = page(&srv.url, "/ui/playground", None).await;
    assert!(html.contains("id=\"payload\""));
    assert!(html.contains("data-page=\"playground\""));
}

async fn counters_round_trip(store: Store) {
    // Recent hours: Redis expires an hour's counters KEEP after it.
    let t0 = Utc::now() - Duration::hours(3);
    let tally = |s: &'static str, names: &[&str]| Tally {
        severity: s,
        alertnames: names.iter().map(|n| n.to_string()).collect(),
    };
    store
        .stats_add(tally("critical", &["A", "B"]), t0)
        .await
        .unwrap();
    store
        .stats_add(tally("critical", &["A"]), t0)
        .await
        .unwrap();
    store
        .stats_add(tally("warning", &["A"]), t0 + Duration::hours(1))
        .await
        .unwrap();
    for i in 0..MAX_NAMES_PER_HOUR + 3 {
        store
            .stats_add(tally("info", &[&format!("N{i}")]), t0 + Duration::hours(1))
            .await
            .unwrap();
    }
    let hours = store.stats(t0 - Duration::hours(1)).await.unwrap();
    assert_eq!(hours.len(), 2, "{hours:?}");
    assert_eq!(hours[0].severities, vec![("critical".to_string(), 2)]);
    assert_eq!(
        hours[0].alertnames,
        vec![("A".to_string(), 2), ("B".to_string(), 1)]
    );
    assert_eq!(
        hours[1].severities,
        vec![
            ("info".to_string(), MAX_NAMES_PER_HOUR as u64 + 3),
            ("warning".to_string(), 1)
        ]
    );
    // Bounded: the names past the cap count together.
    assert_eq!(hours[1].alertnames.len(), MAX_NAMES_PER_HOUR + 1);
    assert!(
        hours[1].alertnames.contains(&(OTHER_NAMES.to_string(), 4)),
        "A was new too"
    );
    assert!(KEEP >= Duration::days(7));
}

#[tokio::test]
async fn sqlite_keeps_hourly_counters() {
    let dir = tempfile::tempdir().unwrap();
    counters_round_trip(Store::open(dir.path(), 100).unwrap()).await;
}

#[tokio::test]
async fn redis_keeps_hourly_counters() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let config = StorageConfig {
        redis_url: Some(Secret::new(server.url.clone())),
        redis_prefix: "test:".into(),
        ..StorageConfig::default()
    };
    let store = Store::from_config(&config).unwrap();
    counters_round_trip(store).await;
    // Each hour's hash expires on its own, KEEP after its hour.
    let client = redis::Client::open(server.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("test:stats:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in keys {
        let at: i64 = redis::cmd("PEXPIRETIME")
            .arg(&k)
            .query_async(&mut conn)
            .await
            .unwrap();
        let hour: i64 = k.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(at - hour, KEEP.num_milliseconds(), "{k}");
    }
}

/// With an incident open, the overview lists it (reference, state, receiver, step, next
/// escalation, a link to the incidents page); once acknowledged, the time-to-acknowledge chart
/// has today's median and p90.
#[tokio::test]
async fn the_overview_lists_open_incidents_and_charts_time_to_acknowledge() {
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&crate::incidents::config(&mock, "1h", "")).await;
    let (status, _) = srv
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!(status, 200);
    crate::incidents::wait_for_uid(&mock, "UID_zs", 1).await;
    let list = crate::incidents::incidents(&srv, "").await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let (id, reference) = (
        list[0]["id"].as_i64().unwrap(),
        list[0]["ref"].as_str().unwrap(),
    );
    let (_, html) = page(&srv.url, "/ui/?lang=en", None).await;
    let panel = html.split("id=\"open-incidents\"").nth(1).unwrap();
    let panel = panel.split("</section>").next().unwrap();
    assert!(
        panel.contains(&format!(
            r#"data-id="{id}" data-ref="{reference}" data-state="triggered""#
        )),
        "{panel}"
    );
    assert!(panel.contains(r#"<a href="incidents">"#), "{panel}");
    assert!(
        panel.contains("group · step 1 · escalates at <time"),
        "{panel}"
    );
    let ack = html.split("id=\"time-to-ack\"").nth(1).unwrap();
    assert!(
        ack.split("</section>")
            .next()
            .unwrap()
            .contains("No incidents.")
    );

    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/incidents/{id}/ack", srv.url))
        .header("authorization", basic())
        .header("content-type", "application/json")
        .body(r#"{"person": "zhangsan"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let opened: DateTime<Utc> = v["incident"]["opened_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let acked: DateTime<Utc> = v["incident"]["acknowledged_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let secs = (acked - opened).num_milliseconds() as f64 / 1000.0;
    let (_, html) = page(&srv.url, "/ui/", None).await;
    let panel = html.split("id=\"open-incidents\"").nth(1).unwrap();
    let panel = panel.split("</section>").next().unwrap();
    assert!(panel.contains(r#"data-state="acknowledged""#), "{panel}");
    assert!(
        panel.contains("已认领") && !panel.contains("升级于"),
        "{panel}"
    );
    let ack = html.split("id=\"time-to-ack\"").nth(1).unwrap();
    let ack = ack.split("</section>").next().unwrap();
    let day = opened
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive();
    assert!(
        ack.contains(&format!(
            r#"data-day="{day}" data-median="{secs:.0}" data-p90="{secs:.0}""#
        )),
        "{ack}"
    );
    assert_eq!(ack.matches("<rect").count(), 2, "{ack}");
    assert!(ack.contains("中位数"), "{ack}");
}
