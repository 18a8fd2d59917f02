//! On-call with the real binary as a child process: two replicas on one `redis-server` page
//! each step exactly once and agree on the incident (rule 14); a replica killed with
//! `kill -9` past a deadline fires the overdue step at once when started again; a reload in
//! the middle of an escalation leaves the policy copied into the incident as it was.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::console::{ADMIN_PASSWORD, ADMIN_USER, basic};
use crate::support::example;
use crate::support::process::Daemon;
use crate::support::redis::RedisServer;
use crate::support::wxpusher::{MockWxPusher, Recorded};

const BIN: &str = env!("CARGO_BIN_EXE_alertmanager-wechat");
const WAIT: Duration = Duration::from_secs(60);

/// People zhangsan, lisi, wangwu on WxPusher (`UID_zs`, `UID_ls`, `UID_ww`); policy `sre` as
/// `steps` (YAML list items); the route's critical groups follow it.
fn config(mock: &MockWxPusher, storage: &str, steps: &str) -> String {
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
  - {{ name: wangwu, display_name: 王五, contacts: {{ wxpusher: {{ uid: UID_ww }} }} }}
escalation_policies:
  - name: sre
    steps:
{steps}
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

async fn start(name: &'static str, config: String) -> Daemon {
    Daemon::start(
        name,
        Path::new(BIN),
        &[("config.yml", config)],
        &[
            "--config.file=$DIR/config.yml",
            "--web.listen-address=127.0.0.1:$PORT",
            "--log.level=info",
        ],
    )
    .await
}

fn to(r: &Recorded) -> String {
    r.body["uids"][0].as_str().unwrap_or("").to_string()
}

fn sent_to(mock: &MockWxPusher, uid: &str) -> Vec<Recorded> {
    mock.requests()
        .into_iter()
        .filter(|r| to(r) == uid)
        .collect()
}

fn content(r: &Recorded) -> String {
    r.body["content"].as_str().unwrap_or("").to_string()
}

/// Waits until `uid` got `n` messages.
async fn wait_for_uid(mock: &MockWxPusher, uid: &str, n: usize, d: &Daemon) -> Vec<Recorded> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = sent_to(mock, uid);
        if got.len() >= n {
            return got;
        }
        let total = mock.requests().len();
        assert!(
            Instant::now() < deadline,
            "expected {n} messages to {uid}, got {}: {:#?}\n{}",
            got.len(),
            mock.requests().iter().map(|r| &r.body).collect::<Vec<_>>(),
            d.log()
        );
        // Woken by the next request to the mock, whoever it is for.
        let _ = tokio::time::timeout(Duration::from_secs(5), mock.wait_for(total + 1, WAIT)).await;
    }
}

async fn post(url: &str, path: &str, body: String) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}{path}"))
        .header("content-type", "application/json")
        .header("authorization", basic())
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn get_json(url: &str, path: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{url}{path}"))
        .header("authorization", basic())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn incidents(d: &Daemon) -> Vec<Value> {
    get_json(&d.url, "/api/v1/incidents").await["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The jobs stored and not dead, WxPusher's delivery-status queries left out (a page is
/// followed by them for two minutes; they never page).
async fn live_jobs_but_status_queries(redis: &RedisServer, prefix: &str) -> i64 {
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}job:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut n = 0;
    for k in keys {
        let (kind, state): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(&k)
            .arg("kind")
            .arg("state")
            .query_async(&mut conn)
            .await
            .unwrap();
        if kind.is_some()
            && kind.as_deref() != Some("oncall_status")
            && state.as_deref() != Some("dead")
        {
            n += 1;
        }
    }
    n
}

/// The incident and its timeline without what changes between two reads of the same state.
fn same_state(v: &Value) -> Value {
    let mut v = v.clone();
    v.as_object_mut().map(|o| o.remove("next_escalation_at"));
    v
}

#[tokio::test]
async fn two_replicas_page_each_step_exactly_once() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let mock = MockWxPusher::start().await;
    let storage = format!(
        "storage: {{ path: $DIR/data, redis_url: \"{}\", redis_prefix: \"oc-ha:\", redis_visibility_timeout: 2s }}",
        redis.url
    );
    // Step 1 zhangsan for 2s, step 2 lisi for 20s (time to acknowledge), step 3 wangwu.
    let steps = "      - { notify: [ {person: zhangsan} ], escalate_after: 2s }\n\
                 \x20     - { notify: [ {person: lisi} ], escalate_after: 20s }\n\
                 \x20     - { notify: [ {person: wangwu} ], escalate_after: 1h }";
    let a = start("replica-a", config(&mock, &storage, steps)).await;
    let b = start("replica-b", config(&mock, &storage, steps)).await;

    // The same notification to both replicas at once (two Alertmanagers, or a retry).
    let firing = example("alertmanager-firing.json");
    let (sa, sb) = tokio::join!(
        post(&a.url, "/webhook", firing.clone()),
        post(&b.url, "/webhook", firing.clone())
    );
    assert_eq!((sa, sb), (200, 200));
    wait_for_uid(&mock, "UID_zs", 1, &a).await;
    // Step 2 after 2s; zhangsan hears of the escalation.
    wait_for_uid(&mock, "UID_ls", 1, &a).await;
    wait_for_uid(&mock, "UID_zs", 2, &a).await;

    // One incident, the same through both replicas.
    let list = incidents(&a).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let inc = &list[0];
    assert_eq!(
        (inc["state"].as_str(), inc["step"].as_i64()),
        (Some("triggered"), Some(2)),
        "{inc:#}\n{:#?}",
        mock.requests().iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    let id = inc["id"].as_i64().unwrap();
    let reference = inc["ref"].as_str().unwrap().to_string();
    let due: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(inc["next_escalation_at"].clone()).unwrap();

    // Acknowledged through replica B's API.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/incidents/{id}/ack", b.url))
        .header("authorization", basic())
        .header("content-type", "application/json")
        .body(r#"{"person": "lisi"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["changed"], true, "{v:#}");
    assert_eq!(v["incident"]["state"], "acknowledged");
    assert_eq!(
        v["incident"]["step"], 2,
        "acknowledged before step 3: {v:#}"
    );
    // Everyone paged hears it once.
    wait_for_uid(&mock, "UID_zs", 3, &a).await;
    wait_for_uid(&mock, "UID_ls", 2, &a).await;

    // Past step 2's deadline, with its timer claimed and settled by one of the replicas
    // (no job left in the shared queue but the status queries): neither replica escalated.
    let deadline = Instant::now() + WAIT;
    loop {
        let left = due + chrono::Duration::seconds(1) - chrono::Utc::now();
        if left <= chrono::Duration::zero()
            && live_jobs_but_status_queries(&redis, "oc-ha:").await == 0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queue never drained\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        sent_to(&mock, "UID_ww").is_empty(),
        "escalated after the ack"
    );

    // Each page and each status update exactly once, whichever replica sent it.
    let zs: Vec<String> = sent_to(&mock, "UID_zs").iter().map(content).collect();
    let ls: Vec<String> = sent_to(&mock, "UID_ls").iter().map(content).collect();
    assert_eq!(zs.len(), 3, "{zs:#?}");
    assert_eq!(ls.len(), 2, "{ls:#?}");
    assert!(
        zs[0].contains(&reference) && zs[1].contains("已升级到第 2 步"),
        "{zs:#?}"
    );
    assert!(
        zs[2].contains(&format!("李四 已认领 {reference}")),
        "{zs:#?}"
    );
    assert!(
        ls[0].contains(&reference) && ls[1].contains("已认领"),
        "{ls:#?}"
    );

    // Both replicas read the same incident and timeline.
    let (la, lb) = (incidents(&a).await, incidents(&b).await);
    assert_eq!(la.len(), 1);
    assert_eq!(same_state(&la[0]), same_state(&lb[0]));
    let events: Vec<&str> = la[0]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["triggered", "paged", "escalated", "paged", "acknowledged"]
    );
    assert_eq!(la[0]["acknowledged_by"], "lisi");
}

#[tokio::test]
async fn killed_with_sigkill_an_overdue_step_fires_at_once_after_start() {
    let mock = MockWxPusher::start().await;
    // The store outlives the process (its own directory holds only the config and log).
    let data = tempfile::tempdir().unwrap();
    let storage = format!("storage: {{ path: \"{}\" }}", data.path().display());
    let steps = "      - { notify: [ {person: zhangsan} ], escalate_after: 3s }\n\
                 \x20     - { notify: [ {person: lisi} ], escalate_after: 1h }";
    let d = start("oncall-first", config(&mock, &storage, steps)).await;
    assert_eq!(
        post(&d.url, "/webhook", example("alertmanager-firing.json")).await,
        200
    );
    wait_for_uid(&mock, "UID_zs", 1, &d).await;
    let list = incidents(&d).await;
    let due: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(list[0]["next_escalation_at"].clone()).unwrap();
    drop(d); // kill -9: nothing is flushed or drained
    assert!(sent_to(&mock, "UID_ls").is_empty());
    // Down past the deadline: the wall clock is what the stored timer is due by.
    let left = (due - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_secs(1)).await;

    let started = Instant::now();
    let d = start("oncall-second", config(&mock, &storage, steps)).await;
    wait_for_uid(&mock, "UID_ls", 1, &d).await;
    // At once: long before the 1h of step 2 could pass, and within the wait for any timer.
    assert!(started.elapsed() < Duration::from_secs(30));
    let list = incidents(&d).await;
    assert_eq!((list.len(), list[0]["step"].as_i64()), (1, Some(2)));
    // Step 1 paged once, before the kill; not again after the start.
    let zs = wait_for_uid(&mock, "UID_zs", 2, &d).await;
    assert!(
        content(&zs[1]).contains("已升级到第 2 步"),
        "{:#?}",
        zs[1].body
    );
    assert_eq!(sent_to(&mock, "UID_zs").len(), 2);
}

#[tokio::test]
async fn a_reload_mid_escalation_keeps_the_policy_in_flight() {
    let mock = MockWxPusher::start().await;
    let before = "      - { notify: [ {person: zhangsan} ], escalate_after: 10s }\n\
                  \x20     - { notify: [ {person: lisi} ], escalate_after: 1h }";
    let storage = "storage: { path: $DIR/data }";
    let d = start("oncall-reload", config(&mock, storage, before)).await;
    assert_eq!(
        post(&d.url, "/webhook", example("alertmanager-firing.json")).await,
        200
    );
    wait_for_uid(&mock, "UID_zs", 1, &d).await;
    let list = incidents(&d).await;
    let old_ref = list[0]["ref"].as_str().unwrap().to_string();
    let due: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(list[0]["next_escalation_at"].clone()).unwrap();

    // The policy now pages wangwu first and never lisi.
    let after = "      - { notify: [ {person: wangwu} ], escalate_after: 1h }";
    let path = d.dir.path().join("config.yml");
    let text = config(&mock, storage, after).replace("$DIR", &d.dir.path().display().to_string());
    std::fs::write(&path, text).unwrap();
    d.signal("HUP");
    let deadline = Instant::now() + WAIT;
    while !d.log().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "not reloaded\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Otherwise the step would have moved on before the reload, and this tests nothing.
    assert!(
        chrono::Utc::now() < due,
        "reloaded only after step 1's deadline"
    );

    // A new group follows the new policy: wangwu is paged for it.
    let other = example("alertmanager-firing.json")
        .replace("HighCPU", "DiskFull")
        .replace("node-1:9100", "node-9:9100");
    assert_eq!(post(&d.url, "/webhook", other).await, 200);
    let ww = wait_for_uid(&mock, "UID_ww", 1, &d).await;
    assert!(!content(&ww[0]).contains(&old_ref), "{}", content(&ww[0]));

    // The incident opened before the reload escalates by its copy: lisi at step 2.
    let ls = wait_for_uid(&mock, "UID_ls", 1, &d).await;
    assert!(content(&ls[0]).contains(&old_ref), "{}", content(&ls[0]));
    let list = incidents(&d).await;
    let old = list.iter().find(|i| i["ref"] == old_ref.as_str()).unwrap();
    assert_eq!(old["step"], 2);
    assert_eq!(old["policy"], "sre");
    // wangwu was paged for the new incident only.
    assert_eq!(sent_to(&mock, "UID_ww").len(), 1);
}
