//! Reaching the person on call, against the real server and contract mocks: the WeCom
//! callback (URL check, encrypted card clicks), the Official Account's delivery reports, voice
//! call reports (both providers), the WeCom button card as sent and as updated, and voice calls
//! signed for each vendor's mock, with the per-number limits counted in the store.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alertmanager_wechat::channels::Kind;
use alertmanager_wechat::channels::official_account::oncall::{MessageRef, OfficialAccountKeys};
use alertmanager_wechat::channels::reach::{
    CallbackKeys, ChannelSink, Contact, FailureReason, OncallEvent, PageRef, Unconnected,
};
use alertmanager_wechat::channels::voice::oncall::CallRef;
use alertmanager_wechat::channels::voice::{Call, Provider, Voice, VoiceError};
use alertmanager_wechat::channels::wecom_app::WecomApp;
use alertmanager_wechat::channels::wecom_app::card::{
    Lang, Page, Sent, UpdateTo, acked_label, card_body, update_body,
};
use alertmanager_wechat::channels::wecom_app::oncall::CardRef;
use alertmanager_wechat::channels::wxcrypt::{MsgCrypt, signature};
use alertmanager_wechat::config::Config;
use alertmanager_wechat::runtime::Runtime;
use alertmanager_wechat::secret::Secret;
use alertmanager_wechat::store::Store;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::support::TestServer;
use crate::support::voice::{MockVoice, Vendor};
use crate::support::wecom::{MockWecom, Reply};

const SOON: Duration = Duration::from_secs(10);
const TOKEN: &str = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo";
const AES_KEY: &str = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt";
const CORP: &str = "ww1436e0e65a779aee";
const VOICE_SECRET: &str = "voice-cb-secret-0123456789";
const BASE: &str = "route: { receiver: r }\nreceivers: [ { name: r, console_configs: [ {} ] } ]\n";

fn wecom_crypt() -> MsgCrypt {
    MsgCrypt::new(Secret::new(TOKEN), &Secret::new(AES_KEY), CORP).unwrap()
}

/// The server with every callback's keys and a channel sink; the receiving end of it.
async fn server(provider: Provider) -> (TestServer, mpsc::Receiver<OncallEvent>) {
    let srv = TestServer::start(BASE).await;
    srv.app.reach.set_keys(CallbackKeys {
        wecom: Some(wecom_crypt()),
        official_account: Some(OfficialAccountKeys {
            token: Secret::new("oa-token-1"),
            crypt: None,
        }),
        voice: Some((provider, Secret::new(VOICE_SECRET))),
    });
    let (tx, rx) = mpsc::channel(16);
    srv.app.reach.connect(Arc::new(ChannelSink(tx)));
    (srv, rx)
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post(url: &str, body: String) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(url)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn click(key: &str, user: &str, task: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName><CreateTime>1733000000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[template_card_event]]></Event><EventKey><![CDATA[{key}]]></EventKey><TaskId><![CDATA[{task}]]></TaskId><CardType><![CDATA[button_interaction]]></CardType><ResponseCode><![CDATA[RC_CLICK_1]]></ResponseCode><AgentID>1000002</AgentID></xml>"
    )
}

/// A WeCom POST as WeCom sends it: the message encrypted, signed over its Encrypt.
fn wecom_post(srv: &TestServer, message: &str, nonce: &str) -> (String, String) {
    let c = wecom_crypt();
    let enc = c.encrypt(message.as_bytes());
    let sig = c.sign("1733000000", nonce, &enc);
    (
        format!(
            "{}/callback/wecom?msg_signature={sig}&timestamp=1733000000&nonce={nonce}",
            srv.url
        ),
        format!(
            "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><AgentID><![CDATA[1000002]]></AgentID><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"
        ),
    )
}

#[tokio::test]
async fn wecom_url_check_answers_the_decrypted_echostr_only() {
    let (srv, _rx) = server(Provider::Aliyun).await;
    // WeCom's own sample; the echostr is URL-encoded as WeCom sends it (`+` as %2B).
    let echo = "fsi1xnbH4yQh0%2BPJxcOdhhK6TDXkjMyhEPA7xB2TGz6b%2Bg7xyAbEkRxN%2F3cNXW9qdqjnoVzEtpbhnFyq6SVHyA%3D%3D";
    let url = |sig: &str| {
        format!(
            "{}/callback/wecom?msg_signature={sig}&timestamp=1476416373&nonce=47744683&echostr={echo}",
            srv.url
        )
    };
    assert_eq!(
        get(&url("012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb")).await,
        (200, "1288432023552776189".to_string())
    );
    let (status, body) = get(&url("012bc692d0a58dd4b10f8dfe5c4ac00ae211ebec")).await;
    assert_eq!(status, 401);
    assert!(!body.contains("1288432023552776189"));
}

#[tokio::test]
async fn a_card_click_acks_once_and_forged_or_replayed_clicks_change_nothing() {
    let (srv, mut rx) = server(Provider::Aliyun).await;
    let msg = click("ack:K7Q2:1", "ZhangSan", "K7Q2-1-zhangsan-x1");
    let (url, body) = wecom_post(&srv, &msg, "n1");
    assert_eq!(post(&url, body.clone()).await, (200, String::new()));
    let e = rx.try_recv().expect("the event is taken before the answer");
    assert_eq!(
        e,
        OncallEvent::Ack {
            by: Contact::WecomApp {
                userid: "ZhangSan".into()
            },
            incident: Some("K7Q2".into()),
            page: PageRef::WecomCard(CardRef {
                task_id: "K7Q2-1-zhangsan-x1".into(),
                response_code: Some("RC_CLICK_1".into())
            })
        }
    );
    // The same click again (WeCom re-sends on a slow answer; or a replay), even re-encrypted
    // under another nonce: answered, nothing new.
    assert_eq!(post(&url, body).await.0, 200);
    let (url2, body2) = wecom_post(&srv, &msg, "n2");
    assert_eq!(post(&url2, body2).await.0, 200);
    assert!(
        rx.try_recv().is_err(),
        "a replayed click is no second event"
    );

    // Forged: the body changed under the signature, or signed with another token.
    let (url3, _) = wecom_post(&srv, &click("escalate:K7Q2:1", "LiSi", "t2"), "n3");
    let other = MsgCrypt::new(Secret::new("not-the-token"), &Secret::new(AES_KEY), CORP).unwrap();
    let enc = other.encrypt(click("escalate:K7Q2:1", "LiSi", "t2").as_bytes());
    let forged_body = format!("<xml><Encrypt><![CDATA[{enc}]]></Encrypt></xml>");
    assert_eq!(post(&url3, forged_body).await.0, 401);
    let sig = other.sign("1733000000", "n4", &enc);
    let forged_url = format!(
        "{}/callback/wecom?msg_signature={sig}&timestamp=1733000000&nonce=n4",
        srv.url
    );
    let (status, _) = post(
        &forged_url,
        format!("<xml><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"),
    )
    .await;
    assert_eq!(status, 401);
    assert!(rx.try_recv().is_err(), "a forged click is no event");

    // The escalate button, properly signed: the step it came from.
    let (url5, body5) = wecom_post(&srv, &click("escalate:K7Q2:2", "LiSi", "t3"), "n5");
    assert_eq!(post(&url5, body5).await.0, 200);
    assert!(matches!(
        rx.try_recv(),
        Ok(OncallEvent::Escalate { from_step: 2, ref incident, .. }) if incident == "K7Q2"
    ));
}

#[tokio::test]
async fn without_keys_the_callbacks_do_not_exist() {
    let srv = TestServer::start(BASE).await;
    assert_eq!(
        get(&format!(
            "{}/callback/wecom?msg_signature=a&timestamp=1&nonce=2&echostr=x",
            srv.url
        ))
        .await
        .0,
        404
    );
    assert_eq!(
        post(
            &format!(
                "{}/callback/official-account?signature=a&timestamp=1&nonce=2",
                srv.url
            ),
            "<xml/>".into()
        )
        .await
        .0,
        404
    );
    assert_eq!(
        post(
            &format!("{}/callback/voice/aliyun/{VOICE_SECRET}", srv.url),
            "[]".into()
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn a_blocked_official_account_page_is_a_failed_page_once() {
    let (srv, mut rx) = server(Provider::Aliyun).await;
    let push = "<xml><ToUserName><![CDATA[gh_f5b69a2ea37b]]></ToUserName>\n<FromUserName><![CDATA[ovPQ26Vgx51Ep-HoZqOITMHLk6eg]]></FromUserName>\n<CreateTime>1717466001</CreateTime><MsgType><![CDATA[event]]></MsgType>\n<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>3487542469355618313</MsgID>\n<Status><![CDATA[failed:user block]]></Status></xml>";
    let sig = signature(&["oa-token-1", "1717466001", "77"]);
    let url = format!(
        "{}/callback/official-account?signature={sig}&timestamp=1717466001&nonce=77&openid=ovPQ26Vgx51Ep-HoZqOITMHLk6eg",
        srv.url
    );
    assert_eq!(post(&url, push.into()).await, (200, "success".to_string()));
    match rx.try_recv() {
        Ok(OncallEvent::PageFailed {
            page: PageRef::OfficialAccount(MessageRef { msg_id, .. }),
            failure,
        }) => {
            assert_eq!(msg_id, 3487542469355618313);
            assert_eq!(failure.reason, FailureReason::Blocked);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(post(&url, push.into()).await.0, 200);
    assert!(
        rx.try_recv().is_err(),
        "a re-sent report is no second event"
    );
    // The URL check, and a wrong signature.
    let check = format!(
        "{}/callback/official-account?signature={sig}&timestamp=1717466001&nonce=77&echostr=5837397520",
        srv.url
    );
    assert_eq!(get(&check).await, (200, "5837397520".to_string()));
    let bad = url.replace(&sig, &"0".repeat(40));
    assert_eq!(post(&bad, push.into()).await.0, 401);
}

#[tokio::test]
async fn voice_reports_ack_fail_and_deliver_once_each() {
    let (srv, mut rx) = server(Provider::Aliyun).await;
    let url = format!("{}/callback/voice/aliyun/{VOICE_SECRET}", srv.url);
    let during = r#"[{"call_id":"116012354148^1","status_code":"300000","status_time":"2026-12-06 03:00:10","out_id":"K7Q2-3","dtmf":"1"}]"#;
    let (status, body) = post(&url, during.into()).await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"code":0,"msg":"接收成功"}"#)
    );
    assert!(matches!(
        rx.try_recv(),
        Ok(OncallEvent::Ack { incident: None, .. })
    ));
    // The final report of the same call, with the key again, and an unanswered call.
    let after = r#"[{"call_id":"116012354148^1","status_code":"200000","duration":"15","out_id":"K7Q2-3","dtmf":"1","callee":"13900000000"},
                    {"status_code":"200003","callee":"130****0000","duration":"0","call_id":"122628733198^10942206","out_id":"K7Q2-1","dtmf":""}]"#;
    assert_eq!(post(&url, after.into()).await.0, 200);
    match rx.try_recv() {
        Ok(OncallEvent::PageFailed { page, failure }) => {
            assert_eq!(failure.reason, FailureReason::NotAnswered);
            assert_eq!(
                page,
                PageRef::Voice(CallRef {
                    provider: Provider::Aliyun,
                    call_id: "122628733198^10942206".into(),
                    out_id: Some("K7Q2-1".into())
                })
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(rx.try_recv().is_err(), "the keypress was taken once");
    assert_eq!(post(&url, "not json".into()).await.0, 400);
    // The other provider's path is not served.
    assert_eq!(
        post(
            &format!("{}/callback/voice/tencent/{VOICE_SECRET}", srv.url),
            "{}".into()
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn tencent_keypress_acks() {
    let (srv, mut rx) = server(Provider::Tencent).await;
    let url = format!("{}/callback/voice/tencent/{VOICE_SECRET}", srv.url);
    let key = r#"{"voicekey_callback":{"call_from":"","callid":"tc-call-1","keypress":"1","mobile":"13800000000","nationcode":"86"}}"#;
    assert_eq!(
        post(&url, key.into()).await,
        (200, r#"{"result":0,"errmsg":"OK"}"#.to_string())
    );
    assert_eq!(
        rx.try_recv().unwrap(),
        OncallEvent::Ack {
            by: Contact::Voice {
                number: "+8613800000000".into()
            },
            incident: None,
            page: PageRef::Voice(CallRef {
                provider: Provider::Tencent,
                call_id: "tc-call-1".into(),
                out_id: None
            })
        }
    );
    let answered = r#"{"voiceprompt_callback":{"result":"0","callid":"tc-call-1","mobile":"13800000000","nationcode":"86"}}"#;
    assert_eq!(post(&url, answered.into()).await.0, 200);
    assert!(matches!(rx.try_recv(), Ok(OncallEvent::Delivered { .. })));
}

#[tokio::test]
async fn an_event_the_sink_refuses_is_answered_503_and_taken_when_sent_again() {
    let srv = TestServer::start(BASE).await;
    srv.app.reach.set_keys(CallbackKeys {
        voice: Some((Provider::Aliyun, Secret::new(VOICE_SECRET))),
        ..Default::default()
    });
    let url = format!("{}/callback/voice/aliyun/{VOICE_SECRET}", srv.url);
    let report = r#"[{"call_id":"c-9","status_code":"200002","duration":"0"}]"#;
    // No engine connected (the service connects its own at start: taken away here).
    srv.app.reach.connect(Arc::new(Unconnected));
    assert_eq!(post(&url, report.into()).await.0, 503);
    let (tx, mut rx) = mpsc::channel(4);
    srv.app.reach.connect(Arc::new(ChannelSink(tx)));
    assert_eq!(post(&url, report.into()).await.0, 200);
    assert!(matches!(
        rx.try_recv(),
        Ok(OncallEvent::PageFailed { ref failure, .. }) if failure.reason == FailureReason::Busy
    ));
}

/// Sends a request head announcing a large body (with `Expect: 100-continue`) and nothing
/// else; returns what the server answered.
async fn head_only(srv: &TestServer, path: &str, length: usize) -> String {
    let addr = srv.url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = tokio::time::timeout(SOON, s.read(&mut buf))
            .await
            .expect("an answer without the body")
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_wrong_voice_secret_is_refused_before_the_body_is_read() {
    let (srv, _rx) = server(Provider::Aliyun).await;
    let answer = head_only(
        &srv,
        "/callback/voice/aliyun/wrong-secret-0000000000",
        100_000,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    // The right secret asks for the body; one announced over the bound gets 413 at once.
    let answer = head_only(
        &srv,
        &format!("/callback/voice/aliyun/{VOICE_SECRET}"),
        100_000,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 100 Continue"), "{answer}");
    let answer = head_only(
        &srv,
        &format!("/callback/voice/aliyun/{VOICE_SECRET}"),
        10_000_000,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // WeCom without signature parameters: refused from the head.
    let answer = head_only(&srv, "/callback/wecom", 1000).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
}

// ---- sending: the card, its update, the voice calls ----

fn wecom_runtime(mock: &MockWecom) -> Runtime {
    let yaml = format!(
        "global: {{ wecom_api_url: \"{}\" }}\nroute: {{ receiver: a }}\nreceivers:\n  - name: a\n    wecom_app_configs: [ {{ corp_id: {CORP}, agent_id: 1000002, api_secret: app-secret-1, to_user: x, callback_token: {TOKEN}, callback_aes_key: {AES_KEY} }} ]\n",
        mock.url
    );
    let c = Config::parse(&yaml, "test.yml", Path::new(".")).unwrap();
    Runtime::build(c).unwrap()
}

fn wecom_app(rt: &Runtime) -> &WecomApp {
    match &rt.receivers["a"][0].kind {
        Kind::WecomApp(a) => a,
        _ => panic!("not a wecom_app"),
    }
}

fn page<'a>(lines: &'a [String]) -> Page<'a> {
    Page {
        touser: "ZhangSan",
        preview: "[P1] 订单库磁盘 95%",
        reference: "K7Q2",
        incident: "K7Q2",
        step: 1,
        person: "zhangsan",
        lines,
        ack_url: "https://alerts.example.com/ack/TOKEN",
        lang: Lang::Zh,
    }
}

#[tokio::test]
async fn the_card_is_sent_then_updated_once_with_the_clicks_code() {
    let mock = MockWecom::start(&[], CORP, "app-secret-1").await;
    let rt = wecom_runtime(&mock);
    let app = wecom_app(&rt);
    let env = rt.env(chrono::Utc::now());
    let lines = vec!["db-7:9100 磁盘使用率 95%，已持续 12 分钟".to_string()];
    let sent = app.send_page(&env, &page(&lines)).await.unwrap();
    let Sent::Card {
        task_id,
        response_code,
        ..
    } = sent
    else {
        panic!("{sent:?}")
    };
    assert_eq!(response_code.as_deref(), Some("RC_SEND_1"));
    let reqs = mock.app_requests();
    assert_eq!(reqs.len(), 1);
    // Exactly the card as built, with the access token in the query.
    assert_eq!(reqs[0].body, card_body(1000002, &page(&lines), &task_id));
    assert_eq!(reqs[0].param("access_token").as_deref(), Some("WT_1"));
    println!("card as sent: {}", reqs[0].body);

    // After an ack: every card updated with the click's code, once.
    let label = acked_label("张三", "K7Q2", Lang::Zh);
    app.update_card(&env, "RC_CLICK_1", &UpdateTo::All, &label)
        .await
        .unwrap();
    let e = app
        .update_card(&env, "RC_CLICK_1", &UpdateTo::All, &label)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("card not updated"), "{e}");
    let ups = mock.update_requests();
    assert_eq!(ups.len(), 2, "a spent code is not retried");
    assert_eq!(
        ups[0].body,
        json!({"agentid": 1000002, "response_code": "RC_CLICK_1", "atall": 1,
               "button": {"replace_name": "张三 已认领 K7Q2"}})
    );
    assert_eq!(
        ups[0].body,
        update_body(1000002, "RC_CLICK_1", &UpdateTo::All, &label)
    );
    println!("card as updated: {}", ups[0].body);
}

#[tokio::test]
async fn a_refused_card_is_sent_once_more_as_a_textcard() {
    let mock = MockWecom::start(&[], CORP, "app-secret-1").await;
    let rt = wecom_runtime(&mock);
    let app = wecom_app(&rt);
    let env = rt.env(chrono::Utc::now());
    mock.script_send([Reply::Err(40008, "invalid message type")]);
    let lines = vec!["line".to_string()];
    let sent = app.send_page(&env, &page(&lines)).await.unwrap();
    assert!(
        matches!(sent, Sent::Textcard { ref card_error, .. } if card_error.starts_with("40008")),
        "{sent:?}"
    );
    let reqs = mock.app_requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body["msgtype"], "template_card");
    assert_eq!(reqs[1].body["msgtype"], "textcard");
    assert_eq!(
        reqs[1].body["textcard"]["url"],
        "https://alerts.example.com/ack/TOKEN"
    );
    // A card refused for the member, or a textcard refused too: a failure, no third send.
    mock.script_send([Reply::Err(40008, "x"), Reply::Err(40008, "x")]);
    assert!(app.send_page(&env, &page(&lines)).await.is_err());
    assert_eq!(mock.app_requests().len(), 4);
    mock.script_send([Reply::Invalid("ZhangSan", "")]);
    assert!(app.send_page(&env, &page(&lines)).await.is_err());
    assert_eq!(mock.app_requests().len(), 5);
}

#[tokio::test]
async fn check_config_names_a_callback_token_without_its_key() {
    let yaml = format!(
        "route: {{ receiver: a }}\nreceivers:\n  - name: a\n    wecom_app_configs: [ {{ corp_id: ww1, agent_id: 1, api_secret: s-123, to_user: x, callback_token: tok1 }}, {{ corp_id: ww1, agent_id: 1, api_secret: s-123, to_user: y, callback_aes_key: short }} ]\n    official_account_configs: [ {{ app_id: wx1, app_secret: s-123, template_id: T, to_openids: [o1], callback_aes_key: {AES_KEY} }} ]\n"
    );
    let e = Config::parse(&yaml, "test.yml", Path::new("."))
        .unwrap_err()
        .to_string();
    for want in [
        "test.yml: receivers[0].wecom_app_configs[0]: callback_token needs callback_aes_key (both come from the same callback settings)",
        "test.yml: receivers[0].wecom_app_configs[1].callback_aes_key: must be the 43-character EncodingAESKey shown in the callback settings",
        "test.yml: receivers[0].wecom_app_configs[1]: callback_aes_key needs callback_token (both come from the same callback settings)",
        "test.yml: receivers[0].official_account_configs[0]: callback_aes_key needs callback_token (both come from the same callback settings)",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    assert!(!e.contains(AES_KEY) && !e.contains("tok1"), "{e}");
}

fn aliyun(endpoint: &str, secret: &str) -> Voice {
    Voice::new(
        yaml_serde::from_str(&format!(
            "{{provider: aliyun, access_key_id: LTAI5tTestKeyId, access_key_secret: {secret}, called_show_number: '057112345678', start_code: TTS_123, ack_code: TTS_124, callback_secret: {VOICE_SECRET}, endpoint: '{endpoint}'}}"
        ))
        .unwrap(),
    )
}

fn call() -> Call<'static> {
    Call {
        number: "+8613800000000",
        summary: "[P1] 订单库磁盘 95%",
        reference: "K7Q2",
        out_id: "K7Q2-3",
    }
}

#[tokio::test]
async fn aliyun_calls_are_signed_limited_per_number_and_codes_checked() {
    let mock = MockVoice::start(Vendor::Aliyun, "LTAI5tTestKeyId", "aliyun-secret-xyz").await;
    let rt = Runtime::build(Config::parse(BASE, "t.yml", Path::new(".")).unwrap()).unwrap();
    let env = rt.env(chrono::Utc::now());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 100).unwrap();
    let v = aliyun(&mock.url, "aliyun-secret-xyz");
    let placed = v.place(&env, &store, &call()).await.unwrap();
    assert_eq!(placed.call_id, "116012354148^1");
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].signature_ok, "{:?}", reqs[0]);
    assert_eq!(reqs[0].headers["x-acs-action"], "IvrCall");
    assert_eq!(reqs[0].headers["x-acs-version"], "2017-05-25");
    assert_eq!(reqs[0].param("CalledNumber"), Some("13800000000"));
    assert_eq!(reqs[0].param("MenuKeyMap.1.Key"), Some("1"));
    assert_eq!(reqs[0].param("OutId"), Some("K7Q2-3"));
    assert_eq!(
        reqs[0].param("StartTtsParams"),
        Some(r#"{"ref":"K7Q2","summary":"[P1] 订单库磁盘 95%"}"#)
    );
    // The same number again within the minute: not dialled.
    let e = v.place(&env, &store, &call()).await.unwrap_err();
    assert!(
        matches!(
            e,
            VoiceError::Limited {
                window: "minute",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(mock.requests().len(), 1);

    // HTTP 200 with a business code is a failure (another number: its own limits).
    mock.script(200, json!({"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发号码分钟级流控", "RequestId": "R2"}));
    let other = Call {
        number: "+8613900000000",
        ..call()
    };
    let e = v.place(&env, &store, &other).await.unwrap_err();
    assert!(
        matches!(e, VoiceError::Refused { ref code, .. } if code == "isv.BUSINESS_LIMIT_CONTROL"),
        "{e}"
    );
    assert_eq!(e.result_label(), "limited");

    // A wrong secret: the vendor's signature error, and no secret in it.
    let wrong = aliyun(&mock.url, "not-the-aliyun-secret");
    let third = Call {
        number: "+8613700000000",
        ..call()
    };
    let e = wrong.place(&env, &store, &third).await.unwrap_err();
    assert!(
        matches!(e, VoiceError::Refused { ref code, .. } if code == "SignatureDoesNotMatch"),
        "{e}"
    );
    assert!(!mock.requests()[2].signature_ok);
    let text = format!("{e} {e:?}");
    assert!(
        !text.contains("not-the-aliyun-secret") && !text.contains("13700000000"),
        "{text}"
    );
}

#[tokio::test]
async fn tencent_calls_are_signed_and_errors_in_200_are_failures() {
    let mock = MockVoice::start(Vendor::Tencent, "AKIDtestid", "tencent-secret-xyz").await;
    let rt = Runtime::build(Config::parse(BASE, "t.yml", Path::new(".")).unwrap()).unwrap();
    let env = rt.env(chrono::Utc::now());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 100).unwrap();
    let v = Voice::new(
        yaml_serde::from_str(&format!(
            "{{provider: tencent, secret_id: AKIDtestid, secret_key: tencent-secret-xyz, sdk_app_id: '1400006666', template_id: '4356', callback_secret: {VOICE_SECRET}, endpoint: '{}'}}",
            mock.url
        ))
        .unwrap(),
    );
    let placed = v.place(&env, &store, &call()).await.unwrap();
    assert_eq!(placed.call_id, "tc-call-1");
    let r = &mock.requests()[0];
    assert!(r.signature_ok, "{r:?}");
    assert_eq!(r.headers["x-tc-action"], "SendTtsVoice");
    assert_eq!(r.headers["x-tc-version"], "2020-09-02");
    assert_eq!(r.headers["x-tc-region"], "ap-guangzhou");
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        body,
        json!({"TemplateId": "4356", "TemplateParamSet": ["[P1] 订单库磁盘 95%", "K7Q2"],
               "CalledNumber": "+8613800000000", "VoiceSdkAppid": "1400006666",
               "PlayTimes": 2, "SessionContext": "K7Q2-3"})
    );
    mock.script(200, json!({"Response": {"Error": {"Code": "LimitExceeded.DeliveryFrequencyLimit", "Message": "frequency"}, "RequestId": "R"}}));
    let e = v.place(&env, &store, &call()).await.unwrap_err();
    assert!(
        matches!(e, VoiceError::Refused { ref code, .. } if code == "LimitExceeded.DeliveryFrequencyLimit"),
        "{e}"
    );
    assert_eq!(e.result_label(), "limited");
    assert!(!format!("{e:?}").contains("tencent-secret-xyz"));
}

/// Rule: every channel's page carries the ack path it supports (the table in the on-call
/// docs): the one-tap link as the tap target (WxPusher, Official Account, the WeCom robot's
/// markdown), the reference to reply with (weixin-gateway, WxPusher commands), the key to
/// press (voice). The WeCom application's card and textcard are the engine's own sends
/// (`oncall_reach`: the button, and the textcard's url without the callback keys).
#[test]
fn every_channels_page_carries_its_ack_path() {
    let cfg = r#"
global: { locale: zh-CN }
oncall:
  public_url: https://alerts.example.com
  link_secret: link-secret-value
  channels:
    wxpusher: { app_token: AT_oncall_secret }
    official_account: { app_id: wx0123, app_secret: oa-secret, kind: template, template_id: T }
    weixin_gateway: { url: "http://127.0.0.1:1", account_id: wx-account-1 }
    voice: { provider: tencent, secret_id: AKID-test, secret_key: tencent-secret-1, sdk_app_id: "1400000001", template_id: "123", callback_secret: voice-cb-path-secret-1 }
people:
  - name: zhangsan
    contacts:
      wxpusher: { uid: UID_zs }
      official_account: { openid: oZS }
      weixin_gateway: { user_id: o9cq80@im.wechat }
      voice: { number: "+8613800000001" }
escalation_policies:
  - name: sre
    steps: [ { notify: [ {person: zhangsan, contacts: [wxpusher, official_account, weixin_gateway, voice]}, {receiver: group} ], escalate_after: 10m } ]
route: { receiver: group, escalation_policy: sre }
receivers:
  - name: group
    wecom_robot_configs: [ { key: robot-key-secret } ]
"#;
    let rt = Runtime::build(Config::parse(cfg, "t.yml", Path::new(".")).unwrap()).unwrap();
    let now = chrono::Utc::now();
    let pages = alertmanager_wechat::cli::render_person(&rt, "zhangsan", now).unwrap();
    let body = |kind: &str| {
        let r = pages
            .iter()
            .find(|r| r.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} page"));
        r.requests[0].body.clone()
    };
    let reference = alertmanager_wechat::store::incident::reference(1);
    let link = |v: &serde_json::Value| {
        v.as_str()
            .is_some_and(|u| u.starts_with("https://alerts.example.com/ack/"))
    };
    // Link: WxPusher's url, the Official Account template message's url.
    let wx = body("wxpusher");
    assert!(link(&wx["url"]), "{wx}");
    assert!(wx["content"].as_str().unwrap().contains(&reference), "{wx}");
    let oa = body("official_account");
    assert!(link(&oa["url"]), "{oa}");
    // Reply: the gateway's text names the incident to reply `确认 REF` with.
    let gw = body("weixin_gateway").to_string();
    assert!(gw.contains(&reference), "{gw}");
    // Keypress: the call asks for the key.
    let voice = body("voice").to_string();
    assert!(voice.contains("press 1 to acknowledge"), "{voice}");

    // Link: the WeCom robot's markdown, a page to a receiver (a link naming no person).
    let mut n = alertmanager_wechat::runtime::sample_notification();
    n.receiver = "group".into();
    let url = alertmanager_wechat::incident::ack_url(&rt, 1, None, now);
    n.incident = Some(alertmanager_wechat::webhook::IncidentContext {
        id: 1,
        reference: reference.clone(),
        state: "triggered".into(),
        step: 1,
        policy: "sre".into(),
        ack_url: url.clone(),
        acknowledged_by: None,
        person: None,
        update: None,
    });
    n.reference = Some(reference.clone());
    let robot = &rt.receivers["group"][0];
    let requests = robot.prepare(&rt.env(now), &n).unwrap();
    let md = requests[0].body.to_string();
    assert!(md.contains(url.as_deref().unwrap()), "{md}");
}
