//! A stored delivery stays bound to the integration it was accepted for, by what that
//! integration sends to (kind, credential, recipients), never by its position: across a reload
//! and across a restart on a changed file, on both store backends. And what it already did
//! survives an upgrade: progress stored by an earlier version is honoured.
//!
//! Each test runs once on SQLite and once on a real Redis (skipped locally without
//! `redis-server`, a failure under `CI=true`).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::redis::RedisServer;
use crate::support::stored::{self, Raw};
use crate::support::wxpusher::{MockWxPusher, Recorded, Reply};
use crate::support::{TestServer, example};

/// Retried quickly and for long: the upstream is down until the test brings it back.
const PATIENT: &str = "max_attempts: 100000, max_age: 1h";

/// Duplicate suppression on (re-routed deliveries go through it), resolved grouping off.
const DEDUPE: &str = "dedupe: { window: 5m, resolved_group_wait: 0s }";

/// Where a test's server keeps its state.
enum Backend {
    Sqlite,
    Redis(RedisServer),
}

impl Backend {
    async fn start(redis: bool) -> Option<Backend> {
        if redis {
            RedisServer::start().await.map(Backend::Redis)
        } else {
            Some(Backend::Sqlite)
        }
    }

    /// The stored jobs themselves, for SQLite in `dir`.
    fn raw<'a>(&'a self, dir: &'a Path) -> Raw<'a> {
        match self {
            Backend::Sqlite => Raw::Sqlite(dir),
            Backend::Redis(r) => Raw::Redis(r, "amw:"),
        }
    }

    /// The `storage:` block; `path` is the SQLite directory (Redis ignores it).
    fn storage(&self, path: &str) -> String {
        match self {
            Backend::Sqlite => format!("storage: {{ path: \"{path}\" }}"),
            Backend::Redis(r) => {
                format!("storage: {{ path: \"{path}\", redis_url: \"{}\" }}", r.url)
            }
        }
    }
}

/// A backend, a WxPusher that answers 500 for now, and the `storage:` block for both.
struct Down {
    backend: Backend,
    mock: MockWxPusher,
    /// The SQLite directory (unused with Redis, but the config names it).
    dir: tempfile::TempDir,
    storage: String,
}

impl Down {
    async fn start(redis: bool) -> Option<Down> {
        alertmanager_wechat::runtime::install_tls_provider();
        let backend = Backend::start(redis).await?;
        let mock = MockWxPusher::start().await;
        mock.set_default(Reply::Http(500));
        let dir = tempfile::tempdir().unwrap();
        let storage = backend.storage(&dir.path().display().to_string());
        Some(Down {
            backend,
            mock,
            dir,
            storage,
        })
    }
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(false).await
            }
            #[tokio::test]
            async fn redis() {
                super::$name(true).await
            }
        }
    };
}

/// One WxPusher integration entry of a receiver, sending through `mock`.
fn wxpusher(mock: &MockWxPusher, token: &str, uid: &str) -> String {
    format!(
        "{{ api_url: \"{}\", app_token: {token}, uids: [{uid}], {PATIENT} }}",
        mock.url
    )
}

/// A whole config: `storage`, then receivers given as `(name, [entries])`.
fn config(storage: &str, receivers: &[(&str, Vec<String>)]) -> String {
    let mut yaml = format!(
        "{storage}\n{DEDUPE}\nroute: {{ receiver: {} }}\nreceivers:\n",
        receivers[0].0
    );
    for (name, entries) in receivers {
        yaml += &format!(
            "  - name: {name}\n    wxpusher_configs: [{}]\n",
            entries.join(", ")
        );
    }
    yaml
}

fn tokens_and_uids(requests: &[Recorded]) -> Vec<(String, Vec<String>)> {
    requests
        .iter()
        .map(|r| {
            let token = r.body["appToken"].as_str().unwrap_or_default().to_string();
            let uids = r.body["uids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect();
            (token, uids)
        })
        .collect()
}

/// Rewrites the server's config file and reloads it, as `POST /-/reload` does.
async fn reload(srv: &TestServer, yaml: &str) {
    std::fs::write(srv.dir.path().join("config.yml"), yaml).unwrap();
    let (status, body) = srv.post("/-/reload", "").await;
    assert_eq!(status, 200, "{body}");
}

/// Waits until nothing is pending or in flight in the server's store.
async fn drained(srv: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let depth = srv.app.queue.store.depth().await.unwrap();
        if depth.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "still queued: {depth:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The dead letters once one has `reason`.
async fn dead_with(srv: &TestServer, reason: &str) -> Vec<alertmanager_wechat::store::Job> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let dead = srv.app.queue.store.dead_letters().await.unwrap();
        if dead.iter().any(|j| j.reason.as_deref() == Some(reason)) {
            return dead;
        }
        assert!(
            Instant::now() < deadline,
            "no {reason} dead letter: {dead:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Accepts the example notification while `down` answers 500, and waits for a failed try.
async fn accept_while_down(srv: &TestServer, down: &MockWxPusher) {
    let (status, body) = srv
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!(status, 200, "{body}");
    down.wait_for(1, Duration::from_secs(10)).await;
}

both!(reordered_receiver_still_delivers_to_the_bound_integration);
/// The scenario of the misdelivery: a second integration put in front of the first while a
/// delivery is retrying. The delivery still goes to the first, with its token, and the new one
/// gets nothing of it.
async fn reordered_receiver_still_delivers_to_the_bound_integration(redis: bool) {
    alertmanager_wechat::runtime::install_tls_provider();
    let Some(backend) = Backend::start(redis).await else {
        return;
    };
    let orig = MockWxPusher::start().await;
    orig.set_default(Reply::Http(500));
    let new = MockWxPusher::start().await;
    let dir = tempfile::tempdir().unwrap();
    let storage = backend.storage(&dir.path().display().to_string());
    let first = config(
        &storage,
        &[("oncall", vec![wxpusher(&orig, "AT_token_A", "UID_ORIG")])],
    );
    let srv = TestServer::start(&first).await;
    accept_while_down(&srv, &orig).await;
    let second = config(
        &storage,
        &[(
            "oncall",
            vec![
                wxpusher(&new, "AT_token_B", "UID_NEW"),
                wxpusher(&orig, "AT_token_A", "UID_ORIG"),
            ],
        )],
    );
    reload(&srv, &second).await;
    let failed = orig.requests().len();
    orig.set_default(Reply::Success);
    let got = orig.wait_for(failed + 1, Duration::from_secs(20)).await;
    drained(&srv).await;
    assert!(
        tokens_and_uids(&got)
            .iter()
            .all(|(t, u)| t == "AT_token_A" && u == &["UID_ORIG"]),
        "{:?}",
        tokens_and_uids(&got)
    );
    assert!(
        new.requests().is_empty(),
        "{:?}",
        tokens_and_uids(&new.requests())
    );
    srv.stop().await;
}

both!(changed_integration_goes_to_the_receivers_current_ones_each_once);
/// The bound integration's recipients changed: the receiver's current integrations get the
/// notification instead, each once. One of them had it delivered already: dedupe keeps it
/// from getting it twice.
async fn changed_integration_goes_to_the_receivers_current_ones_each_once(redis: bool) {
    alertmanager_wechat::runtime::install_tls_provider();
    let Some(backend) = Backend::start(redis).await else {
        return;
    };
    let down = MockWxPusher::start().await;
    down.set_default(Reply::Http(500));
    let up = MockWxPusher::start().await;
    let dir = tempfile::tempdir().unwrap();
    let storage = backend.storage(&dir.path().display().to_string());
    let steady = wxpusher(&up, "AT_token_X", "UID_X");
    let first = config(
        &storage,
        &[(
            "oncall",
            vec![steady.clone(), wxpusher(&down, "AT_token_A", "UID_ORIG")],
        )],
    );
    let srv = TestServer::start(&first).await;
    accept_while_down(&srv, &down).await;
    up.wait_for(1, Duration::from_secs(10)).await;
    // A's recipients change (a new identity), and a third integration appears.
    let second = config(
        &storage,
        &[(
            "oncall",
            vec![
                wxpusher(&up, "AT_token_B", "UID_NEW"),
                wxpusher(&up, "AT_token_A", "UID_OTHER"),
                steady,
            ],
        )],
    );
    reload(&srv, &second).await;
    let got = up.wait_for(3, Duration::from_secs(20)).await;
    drained(&srv).await;
    let mut sent = tokens_and_uids(&up.requests());
    sent.sort();
    assert_eq!(
        sent,
        vec![
            ("AT_token_A".to_string(), vec!["UID_OTHER".to_string()]),
            ("AT_token_B".to_string(), vec!["UID_NEW".to_string()]),
            ("AT_token_X".to_string(), vec!["UID_X".to_string()]),
        ],
        "{got:?}"
    );
    srv.stop().await;
}

both!(removed_receiver_keeps_the_delivery_as_a_replayable_dead_letter);
/// The receiver was removed: a dead letter `receiver_removed`, replayed once it is back.
async fn removed_receiver_keeps_the_delivery_as_a_replayable_dead_letter(redis: bool) {
    let Some(Down {
        backend: _backend,
        mock,
        dir: _dir,
        storage,
    }) = Down::start(redis).await
    else {
        return;
    };
    let oncall = ("oncall", vec![wxpusher(&mock, "AT_token_A", "UID_ORIG")]);
    let other = ("other", vec![wxpusher(&mock, "AT_token_O", "UID_O")]);
    let first = config(&storage, std::slice::from_ref(&oncall));
    let srv = TestServer::start(&first).await;
    accept_while_down(&srv, &mock).await;
    reload(&srv, &config(&storage, std::slice::from_ref(&other))).await;
    let store = &srv.app.queue.store;
    let dead = dead_with(&srv, "receiver_removed").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason.as_deref(), Some("receiver_removed"));
    assert_eq!(dead[0].receiver, "oncall");
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("no longer configured"),
        "{:?}",
        dead[0].last_error
    );
    // Back, and replayed: delivered to the integration it was accepted for.
    mock.set_default(Reply::Success);
    reload(&srv, &config(&storage, &[oncall, other])).await;
    let before = mock.requests().len();
    assert_eq!(
        store
            .replay(Some(dead[0].id), chrono::Utc::now())
            .await
            .unwrap(),
        1
    );
    srv.app.queue.wake.notify_one();
    let got = mock.wait_for(before + 1, Duration::from_secs(20)).await;
    drained(&srv).await;
    assert_eq!(
        tokens_and_uids(&got[before..]),
        vec![("AT_token_A".to_string(), vec!["UID_ORIG".to_string()])]
    );
    srv.stop().await;
}

both!(restart_on_a_reordered_file_delivers_to_the_bound_integration);
/// As the reload case, across a restart: the stored delivery is read back by a new process
/// whose file has another integration in front.
async fn restart_on_a_reordered_file_delivers_to_the_bound_integration(redis: bool) {
    alertmanager_wechat::runtime::install_tls_provider();
    let Some(backend) = Backend::start(redis).await else {
        return;
    };
    let orig = MockWxPusher::start().await;
    orig.set_default(Reply::Http(500));
    let new = MockWxPusher::start().await;
    let dir = tempfile::tempdir().unwrap();
    let storage = backend.storage(&dir.path().display().to_string());
    let first = config(
        &storage,
        &[("oncall", vec![wxpusher(&orig, "AT_token_A", "UID_ORIG")])],
    );
    let srv = TestServer::start(&first).await;
    accept_while_down(&srv, &orig).await;
    srv.stop().await;
    orig.set_default(Reply::Success);
    let failed = orig.requests().len();
    let second = config(
        &storage,
        &[(
            "oncall",
            vec![
                wxpusher(&new, "AT_token_B", "UID_NEW"),
                wxpusher(&orig, "AT_token_A", "UID_ORIG"),
            ],
        )],
    );
    let srv = TestServer::start(&second).await;
    let got = orig.wait_for(failed + 1, Duration::from_secs(30)).await;
    drained(&srv).await;
    assert_eq!(
        tokens_and_uids(&got[failed..]),
        vec![("AT_token_A".to_string(), vec!["UID_ORIG".to_string()])]
    );
    assert!(new.requests().is_empty());
    srv.stop().await;
}

both!(a_retry_of_a_job_stored_by_an_earlier_version_skips_who_already_had_it);
/// A job stored by an earlier version, its progress in that version's strings: the retry goes
/// only to the UID it lacks.
async fn a_retry_of_a_job_stored_by_an_earlier_version_skips_who_already_had_it(redis: bool) {
    let Some(Down {
        backend,
        mock,
        dir,
        storage,
    }) = Down::start(redis).await
    else {
        return;
    };
    let yaml = config(
        &storage,
        &[(
            "oncall",
            vec![wxpusher(&mock, "AT_token_A", "UID_a, UID_b")],
        )],
    );
    let srv = TestServer::start(&yaml).await;
    accept_while_down(&srv, &mock).await;
    srv.stop().await;
    // What an earlier version recorded after part 0 reached UID_a.
    stored::set_progress(backend.raw(dir.path()), r#"["0/uid/UID_a"]"#).await;
    mock.set_default(Reply::Success);
    let before = mock.requests().len();
    let srv = TestServer::start(&yaml).await;
    mock.wait_for(before + 1, Duration::from_secs(30)).await;
    drained(&srv).await;
    assert_eq!(
        tokens_and_uids(&mock.requests()[before..]),
        vec![("AT_token_A".to_string(), vec!["UID_b".to_string()])]
    );
    srv.stop().await;
}

/// The budget day WxPusher counts in (Asia/Shanghai), as progress names it.
fn budget_day(days_ago: i64) -> String {
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai);
    (now.date_naive() - chrono::Duration::days(days_ago))
        .format("%Y-%m-%d")
        .to_string()
}

both!(a_budget_dead_letter_stored_by_an_earlier_version_replays_to_who_was_left_out);
/// A dead letter stored by an earlier version: UID_b had the message, UID_a was over
/// yesterday's budget, UID_c is over today's. Replayed, it goes to UID_a only, and UID_c's
/// part is a dead letter again for its budget.
async fn a_budget_dead_letter_stored_by_an_earlier_version_replays_to_who_was_left_out(
    redis: bool,
) {
    let Some(Down {
        backend,
        mock,
        dir,
        storage,
    }) = Down::start(redis).await
    else {
        return;
    };
    let entry = format!(
        "{{ api_url: \"{}\", app_token: AT_token_A, uids: [UID_a, UID_b, UID_c], max_attempts: 1 }}",
        mock.url
    );
    let yaml = config(&storage, &[("oncall", vec![entry])]);
    let srv = TestServer::start(&yaml).await;
    srv.post("/webhook", example("alertmanager-firing.json"))
        .await;
    dead_with(&srv, "http_5xx").await;
    srv.stop().await;
    let today = budget_day(0);
    let progress = json!([
        "0/uid/UID_b",
        format!("quota/{}/500/uid/UID_a", budget_day(1)),
        format!("quota/{today}/500/uid/UID_c"),
    ]);
    stored::set_progress(backend.raw(dir.path()), &progress.to_string()).await;
    mock.set_default(Reply::Success);
    let before = mock.requests().len();
    let srv = TestServer::start(&yaml).await;
    let store = &srv.app.queue.store;
    assert_eq!(store.replay(None, chrono::Utc::now()).await.unwrap(), 1);
    srv.app.queue.wake.notify_one();
    mock.wait_for(before + 1, Duration::from_secs(20)).await;
    let dead = dead_with(&srv, "quota").await;
    if budget_day(0) != today {
        return; // Midnight in Shanghai passed meanwhile: UID_c's budget is renewed.
    }
    assert_eq!(
        tokens_and_uids(&mock.requests()[before..]),
        vec![("AT_token_A".to_string(), vec!["UID_a".to_string()])]
    );
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("over the daily budget"),
        "{:?}",
        dead[0].last_error
    );
    srv.stop().await;
}
