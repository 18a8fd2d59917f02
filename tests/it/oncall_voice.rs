//! Voice calls as an on-call contact, end to end through the real server and the signing
//! mocks of Aliyun and Tencent Cloud: a page is a call whose id is kept with the incident; the
//! vendor's report posted to `/callback/voice/{provider}/{secret}` acknowledges on the key `1`
//! (as the person called), moves the incident on at once when the call was not answered, and
//! is only a timeline entry when answered without the key. A call over the number's limit is
//! a failed page at once.

use std::time::Duration;

use alertmanager_wechat::store::incident::{Incident, IncidentState};
use serde_json::json;

use crate::support::oncall::{WAIT, the_incident, wait_incident};
use crate::support::voice::{MockVoice, Vendor, VoiceRequest};
use crate::support::{TestServer, example, metric};

const CB: &str = "voice-cb-path-secret-1";
const ZS: &str = "+8613800000001";
const LS: &str = "+8613800000002";

/// Step 1 calls zhangsan, step 2 `second` (a person), each step waiting an hour.
fn config(mock: &MockVoice, vendor: Vendor, second: &str) -> String {
    let voice = match vendor {
        Vendor::Aliyun => format!(
            r#"{{ provider: aliyun, access_key_id: LTAI-test, access_key_secret: aliyun-secret-1,
             called_show_number: "057100000000", start_code: TTS_1, ack_code: TTS_2,
             callback_secret: {CB}, endpoint: "{}" }}"#,
            mock.url
        ),
        Vendor::Tencent => format!(
            r#"{{ provider: tencent, secret_id: AKID-test, secret_key: tencent-secret-1,
             sdk_app_id: "1400000001", template_id: "123", callback_secret: {CB}, endpoint: "{}" }}"#,
            mock.url
        ),
    };
    format!(
        r#"
global: {{ locale: zh-CN }}
oncall:
  public_url: https://alerts.example.com
  link_secret: s3cret-link-key
  channels:
    voice: {voice}
people:
  - {{ name: zhangsan, display_name: 张三, contacts: {{ voice: {{ number: "{ZS}" }} }} }}
  - {{ name: lisi, display_name: 李四, contacts: {{ voice: {{ number: "{LS}" }} }} }}
escalation_policies:
  - name: sre
    steps:
      - {{ notify: [ {{person: zhangsan, contacts: [voice]}} ], escalate_after: 1h }}
      - {{ notify: [ {{person: {second}, contacts: [voice]}} ], escalate_after: 1h }}
      - {{ notify: [ {{person: lisi, contacts: [voice]}} ], escalate_after: 1h }}
route:
  receiver: group
  routes:
    - {{ matchers: [ 'severity="critical"' ], receiver: group, escalation_policy: sre }}
receivers:
  - name: group
    console_configs: [ {{}} ]
"#
    )
}

/// The calls the mock got once there are `n`.
async fn wait_calls(mock: &MockVoice, n: usize) -> Vec<VoiceRequest> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = mock.requests();
        if r.len() >= n {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} calls, waiting for {n}",
            r.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The number a call dialled (Aliyun without `+86`, Tencent E.164).
fn dialled(vendor: Vendor, r: &VoiceRequest) -> String {
    match vendor {
        Vendor::Aliyun => r.param("CalledNumber").unwrap_or_default().to_string(),
        Vendor::Tencent => {
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            body["CalledNumber"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    }
}

/// Fires the example group and waits for zhangsan's call to be kept with the incident;
/// answers the call id the mock issued.
async fn page(srv: &TestServer, mock: &MockVoice, vendor: Vendor) -> (Incident, String) {
    let (status, _) = srv
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!(status, 200);
    let calls = wait_calls(mock, 1).await;
    assert!(calls[0].signature_ok, "{:#?}", calls[0]);
    let call_id = match vendor {
        Vendor::Aliyun => {
            assert_eq!(dialled(vendor, &calls[0]), "13800000001");
            "116012354148^1"
        }
        Vendor::Tencent => {
            assert_eq!(dialled(vendor, &calls[0]), ZS);
            "tc-call-1"
        }
    };
    let marker = format!("call_id={call_id}");
    let inc = wait_incident(srv, |i| {
        i.timeline.iter().any(|e| {
            e.event == "sent"
                && e.contact.as_deref() == Some("voice")
                && e.detail
                    .as_deref()
                    .is_some_and(|d| d.split(' ').any(|w| w == marker))
        })
    })
    .await;
    // The call reads the preview and the reference.
    let said = match vendor {
        Vendor::Aliyun => calls[0]
            .param("StartTtsParams")
            .unwrap_or_default()
            .to_string(),
        Vendor::Tencent => calls[0].body.clone(),
    };
    assert!(said.contains(&inc.reference), "{said}");
    assert!(said.contains("CPU"), "{said}");
    (inc, call_id.to_string())
}

async fn report(srv: &TestServer, provider: &str, secret: &str, body: serde_json::Value) -> u16 {
    srv.post(
        &format!("/callback/voice/{provider}/{secret}"),
        body.to_string(),
    )
    .await
    .0
}

fn aliyun_report(call_id: &str, status: &str, dtmf: Option<&str>) -> serde_json::Value {
    let mut r = json!({"call_id": call_id, "out_id": "x", "status_code": status,
        "status_msg": "", "callee": "13800000001", "caller": "057100000000",
        "start_time": "2026-12-07 00:00:00", "end_time": "2026-12-07 00:00:30",
        "duration": "30", "toll_type": "LOCAL", "hangup_direction": "1"});
    if let Some(d) = dtmf {
        r["dtmf"] = json!(d);
    }
    json!([r])
}

async fn acknowledged_by_a_keypress(vendor: Vendor) {
    let mock = match vendor {
        Vendor::Aliyun => MockVoice::start(vendor, "LTAI-test", "aliyun-secret-1").await,
        Vendor::Tencent => MockVoice::start(vendor, "AKID-test", "tencent-secret-1").await,
    };
    let srv = TestServer::start(&config(&mock, vendor, "lisi")).await;
    let (inc, call_id) = page(&srv, &mock, vendor).await;
    assert_eq!(inc.state, IncidentState::Triggered);
    let (provider, keypress, unknown) = match vendor {
        Vendor::Aliyun => (
            "aliyun",
            aliyun_report(&call_id, "200000", Some("1")),
            aliyun_report("999^9", "200000", Some("1")),
        ),
        Vendor::Tencent => (
            "tencent",
            json!({"voicekey_callback": {"callid": call_id, "keypress": "1",
                "mobile": "13800000001", "nationcode": "86", "call_from": ""}}),
            json!({"voicekey_callback": {"callid": "tc-call-404", "keypress": "1",
                "mobile": "13800000001", "nationcode": "86", "call_from": ""}}),
        ),
    };
    // A wrong path secret is refused; a call the engine never placed changes nothing.
    assert_ne!(
        report(&srv, provider, "wrong-secret-0000", keypress.clone()).await,
        200
    );
    assert_eq!(report(&srv, provider, CB, unknown).await, 200);
    assert_eq!(the_incident(&srv).await.state, IncidentState::Triggered);

    assert_eq!(report(&srv, provider, CB, keypress).await, 200);
    let inc = wait_incident(&srv, |i| i.state == IncidentState::Acknowledged).await;
    assert_eq!(inc.acknowledged_by.as_deref(), Some("zhangsan"));
    assert!(
        inc.timeline.iter().any(|e| e.event == "acknowledged"
            && e.person.as_deref() == Some("zhangsan")
            && e.contact.as_deref() == Some("voice")),
        "{:#?}",
        inc.timeline
    );
    assert_eq!(inc.step, 1);
    // Nobody else was called, and the acknowledgement is no second call.
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn an_aliyun_keypress_acknowledges_as_the_person_called() {
    acknowledged_by_a_keypress(Vendor::Aliyun).await;
}

#[tokio::test]
async fn a_tencent_keypress_acknowledges_as_the_person_called() {
    acknowledged_by_a_keypress(Vendor::Tencent).await;
}

#[tokio::test]
async fn a_call_not_answered_moves_the_incident_on_at_once() {
    let vendor = Vendor::Aliyun;
    let mock = MockVoice::start(vendor, "LTAI-test", "aliyun-secret-1").await;
    let srv = TestServer::start(&config(&mock, vendor, "lisi")).await;
    let (_, call_id) = page(&srv, &mock, vendor).await;

    // Answered without the key: delivered, not acknowledged, no step further.
    let answered = aliyun_report(&call_id, "200000", None);
    assert_eq!(report(&srv, "aliyun", CB, answered).await, 200);
    let inc = wait_incident(&srv, |i| i.timeline.iter().any(|e| e.event == "delivered")).await;
    assert_eq!((inc.state, inc.step), (IncidentState::Triggered, 1));

    // Not answered (a later report of another call id would be ignored): the only page of
    // step 1 failed, so lisi is called now, not after the hour.
    let mock2 = MockVoice::start(vendor, "LTAI-test", "aliyun-secret-1").await;
    let srv2 = TestServer::start(&config(&mock2, vendor, "lisi")).await;
    let (_, call_id) = page(&srv2, &mock2, vendor).await;
    let missed = aliyun_report(&call_id, "200003", None);
    assert_eq!(report(&srv2, "aliyun", CB, missed).await, 200);
    let calls = wait_calls(&mock2, 2).await;
    assert_eq!(dialled(vendor, &calls[1]), "13800000002");
    assert!(calls[1].signature_ok);
    let inc = the_incident(&srv2).await;
    assert_eq!((inc.state, inc.step), (IncidentState::Triggered, 2));
    assert!(
        inc.timeline.iter().any(|e| e.event == "failed"
            && e.person.as_deref() == Some("zhangsan")
            && e.contact.as_deref() == Some("voice")),
        "{:#?}",
        inc.timeline
    );
}

#[tokio::test]
async fn a_call_over_the_numbers_limit_is_a_failed_page_at_once() {
    // Step 2 calls zhangsan again within the minute: Aliyun allows one call a minute to a
    // number, so it is not dialled, counts as `limited`, and step 3 (lisi) follows at once.
    // Its windows are calendar minutes: a run whose two calls fall on either side of the turn
    // of a minute (a loaded machine) is in two windows, and is run again.
    let vendor = Vendor::Aliyun;
    let minute = || chrono::Utc::now().timestamp().div_euclid(60);
    for _ in 0..3 {
        let began = minute();
        let mock = MockVoice::start(vendor, "LTAI-test", "aliyun-secret-1").await;
        let srv = TestServer::start(&config(&mock, vendor, "zhangsan")).await;
        let (_, call_id) = page(&srv, &mock, vendor).await;
        let missed = aliyun_report(&call_id, "200003", None);
        assert_eq!(report(&srv, "aliyun", CB, missed).await, 200);
        let calls = wait_calls(&mock, 2).await;
        if minute() != began {
            continue;
        }
        assert_eq!(
            dialled(vendor, &calls[1]),
            "13800000002",
            "zhangsan not dialled twice"
        );
        let inc = wait_incident(&srv, |i| i.step == 3).await;
        assert!(
            inc.timeline.iter().any(|e| e.event == "failed"
                && e.person.as_deref() == Some("zhangsan")
                && e.detail
                    .as_deref()
                    .is_some_and(|d| d.contains("not placed (limited)"))),
            "{:#?}",
            inc.timeline
        );
        let (_, m) = srv.get("/metrics").await;
        assert_eq!(
            metric(
                &m,
                r#"alertmanager_wechat_oncall_pages_total{contact="voice",result="limited"}"#
            ),
            1.0,
            "{m}"
        );
        return;
    }
    panic!("three runs in a row each crossed the turn of a minute");
}

#[tokio::test]
async fn a_tencent_call_not_answered_moves_the_incident_on_at_once() {
    let vendor = Vendor::Tencent;
    let mock = MockVoice::start(vendor, "AKID-test", "tencent-secret-1").await;
    let srv = TestServer::start(&config(&mock, vendor, "lisi")).await;
    let (_, call_id) = page(&srv, &mock, vendor).await;
    let missed = json!({"voiceprompt_callback": {"callid": call_id, "result": "1",
        "mobile": "13800000001", "nationcode": "86", "accept_time": "0", "end_calltime": "0",
        "fee": "0", "start_calltime": "1733500000", "call_from": ""}});
    assert_eq!(report(&srv, "tencent", CB, missed).await, 200);
    let calls = wait_calls(&mock, 2).await;
    assert_eq!(dialled(vendor, &calls[1]), LS);
    let inc = wait_incident(&srv, |i| i.step == 2).await;
    assert_eq!(inc.state, IncidentState::Triggered);
    assert!(
        inc.timeline.iter().any(|e| e.event == "failed"
            && e.person.as_deref() == Some("zhangsan")
            && e.detail.as_deref() == Some("call_id=tc-call-1: result 1: not answered")),
        "{:#?}",
        inc.timeline
    );
}

#[tokio::test]
async fn a_test_send_never_places_a_call_uncounted() {
    // `send-test` (the command line's and the console's) sends to receivers only; voice is a
    // person's contact, never a receiver's integration, so no test send reaches it. And the
    // voice integration sent to outside the workers (no store to count the number's limits
    // in, as for `send-test` and `render`) refuses before dialling.
    let vendor = Vendor::Aliyun;
    let mock = MockVoice::start(vendor, "LTAI-test", "aliyun-secret-1").await;
    let srv = TestServer::start(&config(&mock, vendor, "lisi")).await;
    let rt = srv.app.runtime.load_full();
    let (out, ok) = alertmanager_wechat::cli::send_test(&rt, "oncall:zhangsan").await;
    assert!(!ok && out.contains("unknown receiver"), "{out}");
    let now = chrono::Utc::now();
    let voice = rt.contacts["zhangsan"]
        .iter()
        .find(|i| i.name() == "voice")
        .unwrap();
    let n = alertmanager_wechat::delivery::test_notification("oncall:zhangsan", now);
    let err = voice
        .send(
            &rt.env(now),
            &n,
            &mut alertmanager_wechat::channels::Progress::new(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("per-number limits"), "{err}");
    assert!(mock.requests().is_empty(), "{:#?}", mock.requests());
}
