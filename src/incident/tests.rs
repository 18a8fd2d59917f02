//! The engine driven with explicit instants over a real (SQLite) store: what each claimed job
//! does to the incident and what it queues.

use std::path::Path;

use chrono::TimeZone;

use super::*;
use crate::config::Config;

const CONFIG: &str = r#"
global: { locale: zh-CN }
oncall:
  public_url: https://alerts.example.com/
  link_secret: s3cret-link-key
  channels:
    wxpusher: { app_token: AT_s3cret }
people:
  - { name: zhangsan, display_name: 张三, contacts: { wxpusher: { uid: UID_zs } } }
  - name: lisi
    contacts: { wxpusher: { uid: UID_ls } }
    notify: [ { contact: wxpusher, delay: 2m } ]
schedules:
  - name: primary
    time_zone: Asia/Shanghai
    rotation: { every: 1w, handoff: 2026-01-05T10:00:00+08:00, people: [ zhangsan ] }
escalation_policies:
  - name: sre
    repeat: 1
    steps:
      - { notify: [ {schedule: primary} ], escalate_after: 10m }
      - { notify: [ {person: lisi} ], escalate_after: 5m }
route: { receiver: group, escalation_policy: sre }
receivers:
  - name: group
    wxpusher_configs: [ { app_token: AT_group, uids: [UID_group] } ]
"#;

fn runtime() -> Runtime {
    let c = match Config::parse(CONFIG, "test.yml", Path::new(".")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    Runtime::build(c).unwrap()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 3, 0, 0).unwrap()
}

fn firing(fingerprints: &[&str]) -> Notification {
    let mut n = crate::webhook::sample_notification();
    n.group_key = "{}:{alertname=\"X\"}".into();
    n.status = Status::Firing;
    let template = n.alerts[0].clone();
    n.alerts = fingerprints
        .iter()
        .map(|f| {
            let mut a = template.clone();
            a.status = Status::Firing;
            a.fingerprint = f.to_string();
            a.labels.insert("severity".into(), "critical".into());
            a
        })
        .collect();
    n
}

fn resolved(n: &Notification) -> Notification {
    let mut n = n.clone();
    n.status = Status::Resolved;
    for a in &mut n.alerts {
        a.status = Status::Resolved;
    }
    n
}

/// Accepts `n` as the webhook would (one control job), then runs one claim round at `now`;
/// returns the jobs left to deliver.
async fn accept(store: &Store, rt: &Runtime, n: &Notification, now: DateTime<Utc>) -> Vec<Job> {
    store
        .enqueue(vec![notify_job(
            "group",
            "sre",
            false,
            &std::sync::Arc::new(n.clone()),
            now,
        )])
        .await
        .unwrap();
    round(store, rt, now).await
}

/// Claims what is due at `now` until nothing is (what the engine queues due now is claimed
/// next, as the workers do); returns what would be delivered, settled as a delivery would.
async fn round(store: &Store, rt: &Runtime, now: DateTime<Utc>) -> Vec<Job> {
    let mut out = Vec::new();
    loop {
        let jobs = store.claim(now, 100).await.unwrap();
        if jobs.is_empty() {
            return out;
        }
        let (rest, _) = claimed(store, rt, &Metrics::new(), jobs, now).await;
        let ids = rest.iter().map(|j| j.id).collect();
        store.complete(ids, Vec::new()).await.unwrap();
        out.extend(rest);
    }
}

fn who(jobs: &[Job]) -> Vec<(String, Option<String>)> {
    let mut v: Vec<_> = jobs
        .iter()
        .map(|j| {
            (
                j.receiver.clone(),
                j.notification
                    .incident
                    .as_ref()
                    .and_then(|i| i.update.clone()),
            )
        })
        .collect();
    v.sort();
    v
}

fn events(inc: &Incident) -> Vec<String> {
    inc.timeline
        .iter()
        .map(|e| {
            format!("{} {}", e.event, e.person.as_deref().unwrap_or(""))
                .trim()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn pages_escalates_on_its_deadline_and_stops_when_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1000).unwrap();
    let rt = runtime();
    let now = t0();
    let n = firing(&["a1"]);

    // Opened: step 1 pages whoever is on call in `primary`, with the link and reference.
    let sent = accept(&store, &rt, &n, now).await;
    assert_eq!(who(&sent), [("oncall:zhangsan".to_string(), None)]);
    let ctx = sent[0].notification.incident.clone().unwrap();
    let inc = store.incident(ctx.id).await.unwrap().unwrap();
    assert_eq!(
        (inc.state, inc.step, inc.loop_),
        (IncidentState::Triggered, 1, 0)
    );
    assert_eq!(
        sent[0].notification.reference.as_deref(),
        Some(inc.reference.as_str())
    );
    let url = ctx.ack_url.unwrap();
    assert!(url.starts_with("https://alerts.example.com/ack/"), "{url}");
    let token = url.rsplit('/').next().unwrap();
    let claim = link::verify(b"s3cret-link-key", token, now).unwrap();
    assert_eq!(
        (claim.incident, claim.person.as_deref()),
        (inc.id, Some("zhangsan"))
    );
    assert_eq!(inc.next_escalation_at, Some(now + Duration::minutes(10)));

    // A repeat (no new firing fingerprint) pages nobody, whatever Alertmanager says.
    let later = now + Duration::minutes(4);
    assert!(accept(&store, &rt, &n, later).await.is_empty());
    // Nothing is due before the deadline.
    assert!(
        round(&store, &rt, now + Duration::minutes(9))
            .await
            .is_empty()
    );

    // At the deadline: step 2 (lisi, after her 2-minute delay), and zhangsan hears of it.
    let at = now + Duration::minutes(10);
    let sent = round(&store, &rt, at).await;
    assert_eq!(
        who(&sent),
        [("oncall:zhangsan".to_string(), Some("K无人认领".to_string()))].map(|(r, _)| (
            r,
            Some(format!("{} 无人认领，已升级到第 2 步", inc.reference))
        ))
    );
    assert!(
        round(&store, &rt, at + Duration::minutes(1))
            .await
            .is_empty()
    );
    let sent = round(&store, &rt, at + Duration::minutes(2)).await;
    assert_eq!(who(&sent), [("oncall:lisi".to_string(), None)]);

    // A timer of a step already left (say, a second replica's copy) does nothing.
    let stale = timer_job(
        &inc,
        Control::Escalate {
            id: inc.id,
            step: 1,
            loop_: 0,
        },
        at,
    );
    store.enqueue(vec![stale]).await.unwrap();
    assert!(
        round(&store, &rt, at + Duration::minutes(3))
            .await
            .is_empty()
    );
    assert_eq!(store.incident(inc.id).await.unwrap().unwrap().step, 2);

    // Acknowledged: everyone paged hears who; the step-2 timer then does nothing.
    let ack_at = at + Duration::minutes(3);
    let acted = acknowledge(
        &store,
        &rt,
        &Metrics::new(),
        inc.id,
        "zhangsan",
        "link",
        ack_at,
    )
    .await
    .unwrap();
    assert!(acted.changed);
    let again = acknowledge(
        &store,
        &rt,
        &Metrics::new(),
        inc.id,
        "lisi",
        "reply",
        ack_at,
    )
    .await
    .unwrap();
    assert!(!again.changed, "an ack is idempotent");
    let sent = round(&store, &rt, ack_at).await;
    let line = format!("张三 已认领 {}", inc.reference);
    assert_eq!(
        who(&sent),
        [
            ("oncall:lisi".to_string(), Some(line.clone())),
            ("oncall:zhangsan".to_string(), Some(line)),
        ]
    );
    assert!(round(&store, &rt, at + Duration::hours(1)).await.is_empty());

    // An escalate from a step it has left does nothing (rule 9).
    let e = escalate(
        &store,
        &rt,
        &Metrics::new(),
        inc.id,
        Some(1),
        "lisi",
        ack_at,
    )
    .await
    .unwrap();
    assert!(!e.changed);

    // The group resolves: the incident too, and both hear it.
    let res = now + Duration::hours(2);
    let sent = accept(&store, &rt, &resolved(&n), res).await;
    assert_eq!(sent.len(), 2);
    let inc = store.incident(inc.id).await.unwrap().unwrap();
    assert_eq!(inc.state, IncidentState::Resolved);
    assert_eq!(inc.resolved_at, Some(res));
    assert_eq!(
        events(&inc),
        [
            "triggered",
            "paged zhangsan",
            "escalated",
            "paged lisi",
            "acknowledged zhangsan",
            "resolved",
        ]
    );

    // A later firing of the same group is a new incident with a new reference.
    let sent = accept(&store, &rt, &n, res + Duration::minutes(1)).await;
    let second = sent[0].notification.incident.clone().unwrap();
    assert_ne!(second.id, inc.id);
    assert_ne!(second.reference, inc.reference);
}

/// One claim round, the `k`th, ten minutes after the one before (the first at `now`),
/// delivering nothing.
async fn one_round(store: &Store, rt: &Runtime, now: DateTime<Utc>, k: usize) {
    let now = now + Duration::minutes(10) * (k as i32 - 1);
    let jobs = store.claim(now, 100).await.unwrap();
    let (rest, _) = claimed(store, rt, &Metrics::new(), jobs, now).await;
    let ids = rest.iter().map(|j| j.id).collect();
    store.complete(ids, Vec::new()).await.unwrap();
}

#[tokio::test]
async fn unacknowledged_it_loops_then_ends_and_new_alerts_do_not_repage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1000).unwrap();
    let rt = runtime();
    let now = t0();
    let n = firing(&["a1"]);
    let sent = accept(&store, &rt, &n, now).await;
    let id = sent[0].notification.incident.as_ref().unwrap().id;
    // New alerts join the incident without paging anyone again (triggered, no retrigger).
    let more = firing(&["a1", "a2"]);
    assert!(
        accept(&store, &rt, &more, now + Duration::minutes(1))
            .await
            .is_empty()
    );
    let inc = store.incident(id).await.unwrap().unwrap();
    assert_eq!(inc.fingerprints, ["a1", "a2"]);
    // Overdue by hours (a restart): the due timer fires at once; the next ones follow from
    // there.
    let late = now + Duration::hours(5);
    let mut steps = Vec::new();
    for k in 1..=6 {
        one_round(&store, &rt, late, k).await;
        let inc = store.incident(id).await.unwrap().unwrap();
        steps.push((inc.step, inc.loop_, inc.next_escalation_at.is_some()));
    }
    // Step 2, loop 1 step 1, loop 1 step 2, then the end: no more timers.
    assert_eq!(
        steps,
        [
            (2, 0, true),
            (1, 1, true),
            (2, 1, true),
            (2, 1, false),
            (2, 1, false),
            (2, 1, false),
        ]
    );
    let inc = store.incident(id).await.unwrap().unwrap();
    assert_eq!(
        inc.timeline.last().map(|e| e.event.as_str()),
        Some("exhausted")
    );
}

#[tokio::test]
async fn a_delayed_page_of_an_acknowledged_incident_is_settled_unsent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1000).unwrap();
    let rt = runtime();
    let now = t0();
    let sent = accept(&store, &rt, &firing(&["a1"]), now).await;
    let id = sent[0].notification.incident.as_ref().unwrap().id;
    // Escalated by hand to lisi, whose page waits 2 minutes.
    let e = escalate(
        &store,
        &rt,
        &Metrics::new(),
        id,
        Some(1),
        "console:admin",
        now,
    )
    .await
    .unwrap();
    assert!(e.changed);
    let sent = round(&store, &rt, now).await;
    assert_eq!(who(&sent).len(), 1, "zhangsan's status update");
    acknowledge(
        &store,
        &rt,
        &Metrics::new(),
        id,
        "zhangsan",
        "api",
        now + Duration::minutes(1),
    )
    .await
    .unwrap();
    let sent = round(&store, &rt, now + Duration::minutes(3)).await;
    // Only status updates went out; lisi's page was settled unsent.
    assert!(
        sent.iter()
            .all(|j| j.notification.incident.as_ref().unwrap().update.is_some()),
        "{:?}",
        who(&sent)
    );
    let inc = store.incident(id).await.unwrap().unwrap();
    assert!(
        inc.timeline
            .iter()
            .any(|e| e.event == "page_cancelled" && e.person.as_deref() == Some("lisi")),
        "{:?}",
        events(&inc)
    );
}
