//! Incidents end to end through the real server and the mock WxPusher: a group on a route with
//! an escalation policy pages the first step, escalates on its deadline, is acknowledged by
//! the one-tap link (a GET changes nothing, the POST acknowledges), everyone paged hears who,
//! and the group's resolve closes it; a repeat pages nobody; a timer overdue at start fires at
//! once.

use std::time::Duration;

use serde_json::Value;

use crate::console::{ADMIN_PASSWORD, ADMIN_USER, basic};
use crate::support::wxpusher::{MockWxPusher, Recorded};
use crate::support::{TestServer, example};

const WAIT: Duration = Duration::from_secs(60);

/// Step 1 pages zhangsan, step 2 (after `first_step`) lisi.
pub(crate) fn config(mock: &MockWxPusher, first_step: &str, storage: &str) -> String {
    format!(
        r#"
global: {{ wxpusher_api_url: "{url}", locale: zh-CN }}
auth:
  admin:
    basic_auth: {{ username: {ADMIN_USER}, password: {ADMIN_PASSWORD} }}
{storage}
oncall:
  public_url: https://alerts.example.com
  link_secret: s3cret-link-key
  channels:
    wxpusher: {{ app_token: AT_oncall_token }}
people:
  - {{ name: zhangsan, display_name: 张三, contacts: {{ wxpusher: {{ uid: UID_zs }} }} }}
  - {{ name: lisi, display_name: 李四, contacts: {{ wxpusher: {{ uid: UID_ls }} }} }}
escalation_policies:
  - name: sre
    steps:
      - {{ notify: [ {{person: zhangsan}} ], escalate_after: {first_step} }}
      - {{ notify: [ {{person: lisi}} ], escalate_after: 1h }}
route:
  receiver: group
  routes:
    - {{ matchers: [ 'severity="critical"' ], receiver: group, escalation_policy: sre }}
receivers:
  - name: group
    wxpusher_configs: [ {{ app_token: AT_group_token, uids: [UID_group] }} ]
"#,
        url = mock.url
    )
}

fn to(r: &Recorded) -> String {
    r.body["uids"][0].as_str().unwrap_or("").to_string()
}

/// The requests to `uid`, in order.
fn sent_to(mock: &MockWxPusher, uid: &str) -> Vec<Recorded> {
    mock.requests()
        .into_iter()
        .filter(|r| to(r) == uid)
        .collect()
}

pub(crate) async fn incidents(s: &TestServer, query: &str) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/incidents{query}", s.url))
        .header("authorization", basic())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

/// The delivery history lists deliveries only: the engine's own jobs (accepted notifications,
/// timers) have no row, which would otherwise read as queued forever; the pages and status
/// updates it sent are there, sent.
pub(crate) async fn history_has_no_control_jobs(s: &TestServer) {
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/deliveries?limit=500", s.url))
        .header("authorization", basic())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let items = v["items"].as_array().cloned().unwrap_or_default();
    assert!(!items.is_empty(), "{v:#}");
    assert!(
        items.iter().all(|d| d["kind"] != "oncall"),
        "control jobs in the history: {v:#}"
    );
    assert!(items.iter().any(|d| d["state"] == "sent"), "{v:#}");
}

/// Waits until `uid` got `n` messages.
pub(crate) async fn wait_for_uid(mock: &MockWxPusher, uid: &str, n: usize) -> Vec<Recorded> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = sent_to(mock, uid);
        if got.len() >= n {
            return got;
        }
        let total = mock.requests().len();
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} messages to {uid}, got {}: {:#?}",
            got.len(),
            mock.requests().iter().map(|r| &r.body).collect::<Vec<_>>()
        );
        // Woken by the next request to the mock, whoever it is for.
        let _ = tokio::time::timeout(Duration::from_secs(5), mock.wait_for(total + 1, WAIT)).await;
    }
}

#[tokio::test]
async fn paged_escalated_acknowledged_by_link_and_resolved() {
    let mock = MockWxPusher::start().await;
    let s = TestServer::start(&config(&mock, "1s", "")).await;

    let (status, _) = s
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!(status, 200);
    // The receiver's own message, and the page to zhangsan carrying the reference and link.
    wait_for_uid(&mock, "UID_group", 1).await;
    let page = wait_for_uid(&mock, "UID_zs", 1).await.remove(0);
    let list = incidents(&s, "?state=triggered").await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let reference = list[0]["ref"].as_str().unwrap().to_string();
    let id = list[0]["id"].as_i64().unwrap();
    assert!(
        page.body["content"].as_str().unwrap().contains(&reference),
        "{}",
        page.body
    );
    let link = page.body["url"].as_str().unwrap().to_string();
    assert!(
        link.starts_with("https://alerts.example.com/ack/"),
        "{link}"
    );

    // A repeat of the same alerts pages nobody.
    let (status, _) = s
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!(status, 200);

    // Unacknowledged after 1s: step 2 pages lisi, and zhangsan hears of the escalation.
    let lisi = wait_for_uid(&mock, "UID_ls", 1).await.remove(0);
    let zs = wait_for_uid(&mock, "UID_zs", 2).await;
    assert!(
        zs[1].body["content"]
            .as_str()
            .unwrap()
            .contains("已升级到第 2 步"),
        "{}",
        zs[1].body
    );
    assert_eq!(sent_to(&mock, "UID_zs").len(), 2, "the repeat paged nobody");

    // lisi's link: GET shows a confirm page and changes nothing (scanners prefetch).
    let path = lisi.body["url"]
        .as_str()
        .unwrap()
        .replace("https://alerts.example.com", "");
    let (status, html) = s.get(&path).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("<form method=\"post\">") && html.contains(&reference),
        "{html}"
    );
    assert_eq!(incidents(&s, "").await[0]["state"], "triggered");
    // POST acknowledges, as a plain form, no credentials but the token.
    let r = reqwest::Client::new()
        .post(format!("{}{path}", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains(&format!("李四 已认领 {reference}"))
    );
    // Everyone paged gets one status update.
    let zs = wait_for_uid(&mock, "UID_zs", 3).await;
    assert!(
        zs[2].body["content"]
            .as_str()
            .unwrap()
            .contains(&format!("李四 已认领 {reference}"))
    );
    let ls = wait_for_uid(&mock, "UID_ls", 2).await;
    assert!(ls[1].body["content"].as_str().unwrap().contains("已认领"));
    // Acknowledging again (another link, the API) changes nothing.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/incidents/{id}/ack", s.url))
        .header("authorization", basic())
        .header("content-type", "application/json")
        .body(r#"{"person": "zhangsan"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["changed"], false);
    assert_eq!(v["incident"]["acknowledged_by"], "lisi");
    // An unknown person is a 400.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/incidents/{id}/ack", s.url))
        .header("authorization", basic())
        .header("content-type", "application/json")
        .body(r#"{"person": "nobody"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The group resolves: the incident is resolved, and both hear it.
    let (status, _) = s
        .post("/webhook", example("alertmanager-resolved.json"))
        .await;
    assert_eq!(status, 200);
    wait_for_uid(&mock, "UID_zs", 4).await;
    wait_for_uid(&mock, "UID_ls", 3).await;
    let list = incidents(&s, "").await;
    assert_eq!(list[0]["state"], "resolved");
    let events: Vec<&str> = list[0]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "triggered",
            "paged",
            "escalated",
            "paged",
            "acknowledged",
            "resolved"
        ]
    );
    let (_, text) = s.get("/metrics").await;
    let m = |series: &str| crate::support::metric(&text, series);
    assert_eq!(
        m("alertmanager_wechat_incidents_total{policy=\"sre\",state=\"triggered\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        m("alertmanager_wechat_incidents_total{policy=\"sre\",state=\"acknowledged\"}"),
        1.0
    );
    assert_eq!(
        m("alertmanager_wechat_incidents_total{policy=\"sre\",state=\"resolved\"}"),
        1.0
    );
    assert_eq!(
        m("alertmanager_wechat_escalations_total{policy=\"sre\"}"),
        1.0
    );
    assert_eq!(
        m("alertmanager_wechat_incident_ack_seconds_count{policy=\"sre\"}"),
        1.0
    );
    assert_eq!(
        m("alertmanager_wechat_oncall_pages_total{contact=\"wxpusher\",result=\"sent\"}"),
        2.0
    );
    history_has_no_control_jobs(&s).await;
    let timeline = serde_json::to_string_pretty(&list[0]).unwrap();
    println!("{timeline}");
    assert!(!timeline.contains("s3cret"), "{timeline}");
    s.stop().await;
}

#[tokio::test]
async fn a_timer_overdue_at_start_fires_at_once() {
    let mock = MockWxPusher::start().await;
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("storage: {{ path: \"{}\" }}", dir.path().display());
    // The first run pages zhangsan and stops before the 3s deadline.
    let s = TestServer::start(&config(&mock, "3s", &storage)).await;
    let (status, _) = s
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!(status, 200);
    wait_for_uid(&mock, "UID_zs", 1).await;
    s.stop().await;
    assert!(sent_to(&mock, "UID_ls").is_empty());
    // Down past the deadline.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let started = std::time::Instant::now();
    let s = TestServer::start(&config(&mock, "3s", &storage)).await;
    wait_for_uid(&mock, "UID_ls", 1).await;
    // At once: well within the 1h of the next step, not a second pass of the 3s.
    assert!(started.elapsed() < Duration::from_secs(30));
    let list = incidents(&s, "").await;
    assert_eq!(list[0]["step"], 2);
    s.stop().await;
}

/// The store contract of incidents, the same in SQLite and Redis: one open incident per
/// group, changes by compare-and-set, resolved ones pruned after retention, open ones never.
async fn incidents_round_trip(store: alertmanager_wechat::store::Store) {
    use alertmanager_wechat::store::incident::{Incident, IncidentState, PolicySnapshot};
    use chrono::{Duration, Utc};
    let now = Utc::now();
    let new = |group: &str| Incident {
        id: 0,
        reference: String::new(),
        receiver: "group".into(),
        group_key: group.into(),
        state: IncidentState::Triggered,
        policy: PolicySnapshot {
            name: "sre".into(),
            repeat: 0,
            ack_timeout_ms: None,
            retrigger_on_new_alerts: false,
            steps: Vec::new(),
        },
        step: 1,
        loop_: 0,
        opened_at: now,
        acknowledged_by: None,
        acknowledged_at: None,
        resolved_at: None,
        next_escalation_at: None,
        severity: None,
        fingerprints: vec!["f1".into()],
        paged: Vec::new(),
        timeline: Vec::new(),
        notification: alertmanager_wechat::webhook::sample_notification(),
        applied: Vec::new(),
        version: 0,
    };
    let (a, created) = store.incident_open(new("g1")).await.unwrap();
    assert!(created && a.id > 0 && a.reference.len() == 4, "{a:?}");
    // The same group again: the open one, nothing made.
    let (again, created) = store.incident_open(new("g1")).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, a.id);
    let (b, _) = store.incident_open(new("g2")).await.unwrap();
    assert_ne!(a.reference, b.reference);

    // Two replicas change the same version: only the first is stored.
    let mut one = a.clone();
    one.step = 2;
    let mut two = a.clone();
    two.step = 3;
    assert!(store.incident_update(&one).await.unwrap());
    assert!(!store.incident_update(&two).await.unwrap());
    let stored = store.incident(a.id).await.unwrap().unwrap();
    assert_eq!((stored.step, stored.version), (2, 1));

    // Resolved: the group may open a new incident, with a new reference.
    let mut done = stored.clone();
    done.state = IncidentState::Resolved;
    done.resolved_at = Some(now - Duration::days(30));
    assert!(store.incident_update(&done).await.unwrap());
    assert!(
        store
            .incident_of_group("group", "g1")
            .await
            .unwrap()
            .is_none()
    );
    let (c, created) = store.incident_open(new("g1")).await.unwrap();
    assert!(created && c.id != a.id && c.reference != a.reference);
    assert_eq!(
        store
            .incident_of_group("group", "g1")
            .await
            .unwrap()
            .map(|i| i.id),
        Some(c.id)
    );

    // A change with the jobs it queues and the job it settles: one write, all or nothing.
    let job = |integration: &str| alertmanager_wechat::store::NewJob {
        receiver: "group".into(),
        integration: alertmanager_wechat::store::IntegrationId(integration.into()),
        kind: "wxpusher".into(),
        notification: std::sync::Arc::new(alertmanager_wechat::webhook::sample_notification()),
        accepted_at: now - Duration::seconds(1),
        fallback: false,
    };
    let control = store.enqueue(vec![job("control")]).await.unwrap()[0];
    let claimed = store.claim(Utc::now(), 10).await.unwrap();
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), [control]);
    let current = store.incident(c.id).await.unwrap().unwrap();
    // A stale version: neither the change, nor the settling, nor the new jobs.
    let mut stale = current.clone();
    stale.version += 7;
    stale.step = 9;
    assert!(
        !store
            .incident_commit(&stale, vec![control], vec![job("status-update")])
            .await
            .unwrap()
    );
    assert_eq!(store.incident(c.id).await.unwrap().unwrap(), current);
    assert!(store.claim(Utc::now(), 10).await.unwrap().is_empty());
    let depth: u64 = store.depth().await.unwrap().iter().map(|d| d.count).sum();
    assert_eq!(depth, 1, "only the claimed control job");
    // The current version: the change, the control job settled and the updates queued.
    let mut next = current.clone();
    next.state = IncidentState::Acknowledged;
    assert!(
        store
            .incident_commit(&next, vec![control], vec![job("update-a"), job("update-b")])
            .await
            .unwrap()
    );
    let stored = store.incident(c.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.state, stored.version),
        (IncidentState::Acknowledged, current.version + 1)
    );
    let mut queued: Vec<String> = store
        .claim(Utc::now(), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.integration.0)
        .collect();
    queued.sort();
    assert_eq!(queued, ["update-a", "update-b"]);
    let depth: u64 = store.depth().await.unwrap().iter().map(|d| d.count).sum();
    assert_eq!(depth, 2, "the control job is settled");

    // Newest first; the long-resolved one pruned, the open ones kept however old.
    let ids: Vec<i64> = store
        .incidents(now - Duration::days(7))
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, [c.id, b.id]);
    assert!(store.incident(a.id).await.unwrap().is_none());
}

#[tokio::test]
async fn sqlite_keeps_incidents() {
    let dir = tempfile::tempdir().unwrap();
    incidents_round_trip(alertmanager_wechat::store::Store::open(dir.path(), 100).unwrap()).await;
}

#[tokio::test]
async fn redis_keeps_incidents() {
    use alertmanager_wechat::config::StorageConfig;
    use alertmanager_wechat::secret::Secret;
    let Some(server) = crate::support::redis::RedisServer::start().await else {
        return;
    };
    let config = StorageConfig {
        redis_url: Some(Secret::new(server.url.clone())),
        redis_prefix: "test:".into(),
        ..StorageConfig::default()
    };
    incidents_round_trip(alertmanager_wechat::store::Store::from_config(&config).unwrap()).await;
}

/// The whole flow on Redis: paged, escalated, acknowledged through the API.
#[tokio::test]
async fn escalates_on_redis_too() {
    let Some(server) = crate::support::redis::RedisServer::start().await else {
        return;
    };
    let mock = MockWxPusher::start().await;
    let storage = format!(
        "storage: {{ redis_url: \"{}\", redis_prefix: \"inc:\" }}",
        server.url
    );
    let s = TestServer::start(&config(&mock, "1s", &storage)).await;
    let (status, _) = s
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!(status, 200);
    wait_for_uid(&mock, "UID_zs", 1).await;
    wait_for_uid(&mock, "UID_ls", 1).await;
    let list = incidents(&s, "").await;
    assert_eq!((list.len(), &list[0]["step"]), (1, &Value::from(2)));
    let id = list[0]["id"].as_i64().unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/incidents/{id}/ack", s.url))
        .header("authorization", basic())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["incident"]["acknowledged_by"],
        format!("console:{ADMIN_USER}")
    );
    assert_eq!(v["incident"]["state"], "acknowledged");
    history_has_no_control_jobs(&s).await;
    s.stop().await;
}

/// WxPusher messages waiting in the queue, as the `queue_depth` gauge says.
async fn queued(s: &TestServer) -> f64 {
    let (_, text) = s.get("/metrics").await;
    text.lines()
        .filter(|l| l.starts_with("alertmanager_wechat_queue_depth{integration=\"wxpusher\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Rule 6: a step whose target is the incident's own receiver pages it with the
/// notification's message itself: the receiver gets one message, the page, carrying the
/// reference and the link (naming no person); a copy of the notification (a second
/// Alertmanager) adds nothing.
#[tokio::test]
async fn a_page_to_the_incidents_own_receiver_replaces_its_message() {
    let mock = MockWxPusher::start().await;
    let config = config(&mock, "2s", "").replace(
        "      - { notify: [ {person: zhangsan} ], escalate_after: 2s }\n      - { notify: [ {person: lisi} ], escalate_after: 1h }",
        "      - { notify: [ {receiver: group} ], escalate_after: 2s }",
    );
    assert!(config.contains("{receiver: group}"), "{config}");
    // Dedupe on: the second copy of the notification is a duplicate.
    let config = format!("dedupe: {{ window: 5m, resolved_group_wait: 0s }}\n{config}");
    let s = TestServer::start(&config).await;
    for _ in 0..2 {
        let (status, _) = s
            .post("/webhook", example("alertmanager-firing.json"))
            .await;
        assert_eq!(status, 200);
    }
    let page = wait_for_uid(&mock, "UID_group", 1).await.remove(0);
    // Its one step paged and its timer ran out (nobody acknowledged): nothing is left to send.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = incidents(&s, "").await;
        let exhausted = list[0]["timeline"]
            .as_array()
            .is_some_and(|t| t.iter().any(|e| e["event"] == "exhausted"));
        if exhausted && queued(&s).await == 0.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = incidents(&s, "").await;
    let reference = list[0]["ref"].as_str().unwrap();
    assert_eq!(
        sent_to(&mock, "UID_group").len(),
        1,
        "{:#?}",
        mock.requests().iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    let content = page.body["content"].as_str().unwrap();
    assert!(content.contains(reference), "{content}");
    assert!(
        content.contains("HighCPU"),
        "the alerts' message: {content}"
    );
    assert!(
        page.body["url"]
            .as_str()
            .unwrap_or("")
            .starts_with("https://alerts.example.com/ack/"),
        "{}",
        page.body
    );
    let paged: Vec<&Value> = list[0]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "paged")
        .collect();
    assert_eq!(paged.len(), 1);
    assert_eq!(paged[0]["person"], "receiver:group");

    // Resolved: its ordinary resolved message goes as always.
    let (status, _) = s
        .post("/webhook", example("alertmanager-resolved.json"))
        .await;
    assert_eq!(status, 200);
    wait_for_uid(&mock, "UID_group", 2).await;
    s.stop().await;
}
