//! On-call reach wired into the engine, end to end through the real server and the contract
//! mocks: a WeCom card button click, sent to `/callback/wecom` encrypted as WeCom sends it,
//! acknowledges (or escalates) the incident as the clicker; callback keys follow reloads.

use alertmanager_wechat::channels::wxcrypt::MsgCrypt;
use alertmanager_wechat::secret::Secret;
use alertmanager_wechat::store::incident::IncidentState;

use crate::support::oncall::{WAIT, logged, the_incident, wait_incident};
use crate::support::wecom::MockWecom;
use crate::support::{TestServer, example};

const TOKEN: &str = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo";
const AES_KEY: &str = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt";
const CORP: &str = "ww1436e0e65a779aee";

/// Step 1 pages zhangsan through the WeCom application (with its callback keys), step 2 lisi.
fn config(mock: &MockWecom, callback: &str) -> String {
    format!(
        r#"
global: {{ wecom_api_url: "{url}", locale: zh-CN }}
oncall:
  public_url: https://alerts.example.com
  link_secret: s3cret-link-key
  channels:
    wecom_app: {{ corp_id: {CORP}, agent_id: 1000002, api_secret: app-secret-1{callback} }}
people:
  - {{ name: zhangsan, display_name: 张三, contacts: {{ wecom_app: {{ userid: ZhangSan }} }} }}
  - {{ name: lisi, display_name: 李四, contacts: {{ wecom_app: {{ userid: LiSi }} }} }}
escalation_policies:
  - name: sre
    steps:
      - {{ notify: [ {{person: zhangsan}} ], escalate_after: 1h }}
      - {{ notify: [ {{person: lisi}} ], escalate_after: 1h }}
route:
  receiver: group
  routes:
    - {{ matchers: [ 'severity="critical"' ], receiver: group, escalation_policy: sre }}
receivers:
  - name: group
    console_configs: [ {{}} ]
"#,
        url = mock.url
    )
}

fn keys() -> String {
    format!(", callback_token: {TOKEN}, callback_aes_key: {AES_KEY}")
}

fn crypt() -> MsgCrypt {
    MsgCrypt::new(Secret::new(TOKEN), &Secret::new(AES_KEY), CORP).unwrap()
}

fn click(key: &str, user: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName><CreateTime>1733000000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[template_card_event]]></Event><EventKey><![CDATA[{key}]]></EventKey><TaskId><![CDATA[task-{key}]]></TaskId><CardType><![CDATA[button_interaction]]></CardType><ResponseCode><![CDATA[RC_CLICK_1]]></ResponseCode><AgentID>1000002</AgentID></xml>"
    )
}

/// Posts `message` to `/callback/wecom` encrypted and signed as WeCom does.
async fn post_click(srv: &TestServer, message: &str, nonce: &str) -> u16 {
    let c = crypt();
    let enc = c.encrypt(message.as_bytes());
    let sig = c.sign("1733000000", nonce, &enc);
    reqwest::Client::new()
        .post(format!(
            "{}/callback/wecom?msg_signature={sig}&timestamp=1733000000&nonce={nonce}",
            srv.url
        ))
        .body(format!(
            "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><AgentID><![CDATA[1000002]]></AgentID><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"
        ))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn to(r: &crate::support::wecom::Recorded) -> String {
    r.body["touser"].as_str().unwrap_or("").to_string()
}

/// Waits until `touser` got `n` application messages.
async fn wait_to(mock: &MockWecom, touser: &str, n: usize) {
    let who = touser.to_string();
    mock.wait(WAIT, &format!("{n} messages to {touser}"), move |r| {
        r.iter()
            .filter(|r| r.path == "/cgi-bin/message/send" && to(r) == who)
            .count()
            >= n
    })
    .await;
}

#[tokio::test]
async fn a_card_button_click_acknowledges_as_the_clicker() {
    let mock = MockWecom::start(&[], CORP, "app-secret-1").await;
    let srv = TestServer::start(&config(&mock, &keys())).await;
    let (status, _) = srv
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!(status, 200);
    wait_to(&mock, "ZhangSan", 1).await;
    let inc = the_incident(&srv).await;
    assert_eq!(inc.state, IncidentState::Triggered);
    // The page is a button card whose buttons name the incident and the step.
    let card = mock.app_requests().remove(0).body;
    assert_eq!(card["msgtype"], "template_card", "{card}");
    assert_eq!(card["template_card"]["card_type"], "button_interaction");
    assert_eq!(
        card["template_card"]["button_list"][0]["key"],
        format!("ack:{}:1", inc.reference)
    );
    let task_id = card["template_card"]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    println!("card as sent: {card}");
    // Recorded with the incident once WeCom answered (the store has no change signal: polled).
    let inc = wait_incident(&srv, |i| {
        i.timeline
            .iter()
            .any(|e| e.event == "sent" && e.detail.as_deref().is_some_and(|d| d.contains(&task_id)))
    })
    .await;

    // A click for another incident, and one by someone not configured: nothing changes.
    assert_eq!(
        post_click(&srv, &click("ack:ZZZZ:1", "ZhangSan"), "n0").await,
        200
    );
    let key = format!("ack:{}:1", inc.reference);
    assert_eq!(post_click(&srv, &click(&key, "Stranger"), "n1").await, 200);
    assert_eq!(the_incident(&srv).await.state, IncidentState::Triggered);

    // zhangsan's click (WeCom lower-cases userids): acknowledged as zhangsan, through the card;
    // the status update reaches him.
    assert_eq!(post_click(&srv, &click(&key, "zhangsan"), "n2").await, 200);
    let inc = the_incident(&srv).await;
    assert_eq!(
        inc.state,
        IncidentState::Acknowledged,
        "{:#?}",
        inc.timeline
    );
    assert_eq!(inc.acknowledged_by.as_deref(), Some("zhangsan"));
    assert!(
        inc.timeline.iter().any(|e| e.event == "acknowledged"
            && e.person.as_deref() == Some("zhangsan")
            && e.contact.as_deref() == Some("wecom_card")),
        "{:#?}",
        inc.timeline
    );
    wait_to(&mock, "ZhangSan", 2).await;
    let sent: Vec<_> = mock
        .app_requests()
        .into_iter()
        .filter(|r| to(r) == "ZhangSan")
        .collect();
    assert!(
        sent[1].body.to_string().contains("已认领"),
        "{}",
        sent[1].body
    );
    assert!(
        !mock.app_requests().iter().any(|r| to(r) == "LiSi"),
        "nobody else is paged"
    );
    // The card is greyed out with its own response_code, once.
    mock.wait(WAIT, "the card updated", |r| {
        r.iter()
            .any(|r| r.path == "/cgi-bin/message/update_template_card")
    })
    .await;
    let ups = mock.update_requests();
    assert_eq!(ups.len(), 1, "{ups:#?}");
    assert_eq!(
        ups[0].body,
        serde_json::json!({"agentid": 1000002, "response_code": "RC_SEND_1", "atall": 0,
            "userids": ["ZhangSan"], "button": {"replace_name": format!("张三 已认领 {}", inc.reference)}})
    );
    println!("card as updated: {}", ups[0].body);
}

#[tokio::test]
async fn without_callback_keys_a_page_is_no_card() {
    let mock = MockWecom::start(&[], CORP, "app-secret-1").await;
    let srv = TestServer::start(&config(&mock, "")).await;
    let (status, _) = srv
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!(status, 200);
    wait_to(&mock, "ZhangSan", 1).await;
    // No button without the keys: a textcard whose url is the one-tap link (the ack path).
    let page = mock.app_requests().remove(0).body;
    assert_eq!(page["msgtype"], "textcard", "{page}");
    assert!(
        page["textcard"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://alerts.example.com/ack/")),
        "{page}"
    );
    let inc = the_incident(&srv).await;
    assert!(
        page["textcard"]["description"]
            .as_str()
            .is_some_and(|d| d.contains(&inc.reference)),
        "{page}"
    );
}

#[tokio::test]
async fn a_card_escalate_click_moves_on_once_from_its_step() {
    let mock = MockWecom::start(&[], CORP, "app-secret-1").await;
    let srv = TestServer::start(&config(&mock, &keys())).await;
    let (status, _) = srv
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!(status, 200);
    wait_to(&mock, "ZhangSan", 1).await;
    let inc = the_incident(&srv).await;
    let key = format!("escalate:{}:1", inc.reference);
    assert_eq!(post_click(&srv, &click(&key, "ZhangSan"), "e1").await, 200);
    wait_to(&mock, "LiSi", 1).await;
    let inc = the_incident(&srv).await;
    assert_eq!((inc.state, inc.step), (IncidentState::Triggered, 2));
    assert!(
        inc.timeline
            .iter()
            .any(|e| e.event == "escalate_requested" && e.person.as_deref() == Some("zhangsan")),
        "{:#?}",
        inc.timeline
    );
    // Another escalate from step 1 (a second card, another click) does nothing: rule 9.
    let other = format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[ZhangSan]]></FromUserName><CreateTime>1733000001</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[template_card_event]]></Event><EventKey><![CDATA[{key}]]></EventKey><TaskId><![CDATA[another-card]]></TaskId><CardType><![CDATA[button_interaction]]></CardType><ResponseCode><![CDATA[RC_CLICK_2]]></ResponseCode><AgentID>1000002</AgentID></xml>"
    );
    assert_eq!(post_click(&srv, &other, "e2").await, 200);
    assert_eq!(the_incident(&srv).await.step, 2);
}

#[tokio::test]
async fn the_callback_keys_follow_the_configuration_in_force() {
    let mock = MockWecom::start(&[], CORP, "app-secret-1").await;
    let srv = TestServer::start(&config(&mock, "")).await;
    // Without keys, no WeCom callback.
    assert_eq!(
        post_click(&srv, &click("ack:K7Q2:1", "ZhangSan"), "r1").await,
        404
    );
    std::fs::write(srv.dir.path().join("config.yml"), config(&mock, &keys())).unwrap();
    srv.app.reload().unwrap();
    assert_eq!(
        post_click(&srv, &click("ack:K7Q2:1", "ZhangSan"), "r2").await,
        200
    );
    std::fs::write(srv.dir.path().join("config.yml"), config(&mock, "")).unwrap();
    srv.app.reload().unwrap();
    assert_eq!(
        post_click(&srv, &click("ack:K7Q2:1", "ZhangSan"), "r3").await,
        404
    );
}

/// Step 1 pages zhangsan through the Official Account, step 2 lisi; both steps wait an hour.
fn oa_config(mock: &crate::support::official_account::MockOfficialAccount) -> String {
    format!(
        r#"
global: {{ wechat_api_url: "{url}", locale: zh-CN }}
oncall:
  public_url: https://alerts.example.com
  link_secret: s3cret-link-key
  channels:
    official_account: {{ app_id: wx0123, app_secret: oa-secret-1, kind: template, template_id: T, callback_token: oa-token-1 }}
people:
  - {{ name: zhangsan, contacts: {{ official_account: {{ openid: oZS }} }} }}
  - {{ name: lisi, contacts: {{ official_account: {{ openid: oLS }} }} }}
escalation_policies:
  - name: sre
    steps:
      - {{ notify: [ {{person: zhangsan}} ], escalate_after: 1h }}
      - {{ notify: [ {{person: lisi}} ], escalate_after: 1h }}
route:
  receiver: group
  routes:
    - {{ matchers: [ 'severity="critical"' ], receiver: group, escalation_policy: sre }}
receivers:
  - name: group
    console_configs: [ {{}} ]
"#,
        url = mock.url
    )
}

#[tokio::test]
async fn a_blocked_official_account_page_moves_the_incident_on_at_once() {
    use crate::support::official_account::MockOfficialAccount;
    let mock = MockOfficialAccount::start().await;
    let srv = TestServer::start(&oa_config(&mock)).await;
    let (status, _) = srv
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!(status, 200);
    mock.wait_for_sends(1, WAIT).await;
    // The mock answers msgid 200228332; recorded with the page once sent.
    wait_incident(&srv, |i| {
        i.timeline
            .iter()
            .any(|e| e.event == "sent" && e.detail.as_deref() == Some("step 1: msgid=200228332"))
    })
    .await;

    let report = |msgid: &str, status: &str| {
        format!(
            "<xml><ToUserName><![CDATA[gh_f5b69a2ea37b]]></ToUserName><FromUserName><![CDATA[oZS]]></FromUserName><CreateTime>1717466001</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>{msgid}</MsgID><Status><![CDATA[{status}]]></Status></xml>"
        )
    };
    let sig =
        alertmanager_wechat::channels::wxcrypt::signature(&["oa-token-1", "1717466001", "77"]);
    let url = format!(
        "{}/callback/official-account?signature={sig}&timestamp=1717466001&nonce=77&openid=oZS",
        srv.url
    );
    let post = |body: String| {
        let url = url.clone();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // A report about a message the engine never sent changes nothing.
    assert_eq!(
        post(report("1", "failed:user block")).await,
        (200, "success".to_string())
    );
    assert_eq!(the_incident(&srv).await.step, 1);

    // zhangsan blocked the account: his page failed, the only page of step 1, so lisi is
    // paged now, not after the hour.
    assert_eq!(
        post(report("200228332", "failed:user block")).await,
        (200, "success".to_string())
    );
    // lisi's page and zhangsan's status update (escalated), in either order.
    let sends = mock.wait_for_sends(3, WAIT).await;
    assert!(
        sends[1..].iter().any(|r| r.openid() == "oLS"),
        "{:#?}",
        sends.iter().map(|r| r.openid()).collect::<Vec<_>>()
    );
    let inc = the_incident(&srv).await;
    assert_eq!((inc.state, inc.step), (IncidentState::Triggered, 2));
    assert!(
        inc.timeline.iter().any(|e| e.event == "failed"
            && e.person.as_deref() == Some("zhangsan")
            && e.detail.as_deref() == Some("msgid=200228332: failed:user block")),
        "{:#?}",
        inc.timeline
    );
}

/// Step 1 pages zhangsan through WxPusher, step 2 lisi; both steps wait an hour.
fn wx_config(mock: &crate::support::wxpusher::MockWxPusher) -> String {
    crate::incidents::config(mock, "1h", "")
}

/// Fires the example group and waits for zhangsan's WxPusher page and its first status
/// query: a stored job (it survives a restart like the engine's timers), due 30 s after the
/// page, naming the page's send record; nothing asked yet.
async fn wx_paged(
    srv: &TestServer,
    mock: &crate::support::wxpusher::MockWxPusher,
) -> alertmanager_wechat::channels::wxpusher::oncall::StatusJob {
    use crate::support::oncall::stored_status_queries;
    let (status, _) = srv
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!(status, 200);
    let page = crate::incidents::wait_for_uid(mock, "UID_zs", 1).await;
    assert!(
        page[0].body["url"]
            .as_str()
            .is_some_and(|u| u.contains("/ack/"))
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    let stored = loop {
        let stored = stored_status_queries(srv).await;
        if !stored.is_empty() {
            break stored;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no status query stored"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(stored.len(), 1, "{stored:?}");
    let query = stored[0];
    assert_eq!(
        (query.incident, query.poll),
        (the_incident(srv).await.id, 1)
    );
    assert_eq!(
        query.due(),
        Some(query.sent + chrono::Duration::seconds(30))
    );
    assert!(mock.status_queries().is_empty());
    query
}

#[tokio::test]
async fn a_failed_wxpusher_status_moves_the_incident_on_at_once() {
    use crate::support::oncall::status_due_now;
    use crate::support::wxpusher::{MockWxPusher, Status};
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&wx_config(&mock)).await;
    let query = wx_paged(&srv, &mock).await;
    let record = query.record;
    // The value table of `data` is not published: the words say failure (the integer is
    // this test's own).
    mock.set_status(
        record,
        Status {
            code: 1000,
            msg: "发送失败",
            data: Some(3),
        },
    );
    assert!(status_due_now(&srv, "zhangsan", &query).await);
    // zhangsan's page failed, the only page of step 1: lisi is paged now, not after the hour.
    crate::incidents::wait_for_uid(&mock, "UID_ls", 1).await;
    let inc = wait_incident(&srv, |i| i.step == 2).await;
    assert_eq!(inc.state, IncidentState::Triggered);
    assert!(
        logged(
            &inc,
            "failed",
            "zhangsan",
            "wxpusher",
            &format!("sendRecordId={record}: 发送失败 (status 3)")
        ),
        "{:#?}",
        inc.timeline
    );
    assert_eq!(mock.status_queries(), [record]);
    let (_, m) = srv.get("/metrics").await;
    assert_eq!(
        crate::support::metric(
            &m,
            r#"alertmanager_wechat_oncall_pages_total{contact="wxpusher",result="failed"}"#
        ),
        1.0,
        "{m}"
    );
}

#[tokio::test]
async fn a_delivered_wxpusher_status_is_only_a_timeline_entry() {
    use crate::support::oncall::status_due_now;
    use crate::support::wxpusher::{MockWxPusher, Status};
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&wx_config(&mock)).await;
    let query = wx_paged(&srv, &mock).await;
    let record = query.record;
    mock.set_status(
        record,
        Status {
            code: 1000,
            msg: "发送成功",
            data: Some(2),
        },
    );
    assert!(status_due_now(&srv, "zhangsan", &query).await);
    let inc = wait_incident(&srv, |i| {
        logged(i, "delivered", "zhangsan", "wxpusher", "发送成功")
    })
    .await;
    // Delivered is neither read nor acknowledged: the escalation goes on as it was.
    assert_eq!((inc.state, inc.step), (IncidentState::Triggered, 1));
    assert_eq!(inc.acknowledged_by, None);
    assert!(!inc.timeline.iter().any(|e| e.event == "failed"));
    assert!(
        !mock
            .requests()
            .iter()
            .any(|r| r.body["uids"][0] == "UID_ls"),
        "nobody else is paged"
    );
}

#[tokio::test]
async fn wxpusher_status_queries_are_bounded() {
    use crate::support::oncall::{status_due_now, stored_status_queries};
    use crate::support::wxpusher::MockWxPusher;
    use alertmanager_wechat::channels::wxpusher::oncall::StatusJob;
    let mock = MockWxPusher::start().await;
    let srv = TestServer::start(&wx_config(&mock)).await;
    let query = wx_paged(&srv, &mock).await;
    let record = query.record;
    // The mock answers "等待发送" (data 1), the one value seen in the field, every time.
    let waiting = |n: usize| {
        move |i: &alertmanager_wechat::store::incident::Incident| {
            i.timeline
                .iter()
                .filter(|e| {
                    e.event == "delivery_status"
                        && e.detail.as_deref()
                            == Some(&format!("sendRecordId={record}: 等待发送 (status 1)"))
                })
                .count()
                >= n
        }
    };
    assert!(status_due_now(&srv, "zhangsan", &query).await);
    mock.wait_for_queries(1, WAIT).await;
    wait_incident(&srv, waiting(1)).await;
    // The second and last query is stored, due 2 min after the page.
    let second = stored_status_queries(&srv).await;
    assert_eq!(second, [StatusJob { poll: 2, ..query }]);
    assert_eq!(
        second[0].due(),
        Some(query.sent + chrono::Duration::seconds(120))
    );
    assert!(status_due_now(&srv, "zhangsan", &second[0]).await);
    mock.wait_for_queries(2, WAIT).await;
    let inc = wait_incident(&srv, waiting(2)).await;
    // No third query is stored: two per page, no more.
    let third = StatusJob { poll: 3, ..query };
    assert_eq!(third.due(), None);
    assert!(!status_due_now(&srv, "zhangsan", &third).await);
    assert_eq!(stored_status_queries(&srv).await, []);
    assert_eq!(mock.status_queries(), [record, record]);
    // Waiting is a timeline entry, nothing more.
    assert_eq!((inc.state, inc.step), (IncidentState::Triggered, 1));
}

#[tokio::test]
async fn a_wecom_page_past_the_members_limit_is_sent_and_counted_failed() {
    use alertmanager_wechat::channels::wecom_app::card::count_member;
    let mock = MockWecom::start(&[], CORP, "app-secret-1").await;
    let srv = TestServer::start(&config(&mock, &keys())).await;
    // 30 messages to zhangsan this minute and the next (counted in the store, as another
    // replica would have): WeCom drops the next ones silently.
    let now = chrono::Utc::now();
    for at in [now, now + chrono::Duration::seconds(60)] {
        for _ in 0..30 {
            count_member(&srv.app.queue.store, CORP, "ZhangSan", at)
                .await
                .unwrap();
        }
    }
    let (status, _) = srv
        .post("/webhook", example("alertmanager-firing.json"))
        .await;
    assert_eq!(status, 200);
    // Sent all the same, marked likely dropped, failed: the only page of step 1, so lisi now.
    wait_to(&mock, "ZhangSan", 1).await;
    wait_to(&mock, "LiSi", 1).await;
    let inc = wait_incident(&srv, |i| i.step == 2).await;
    assert!(
        logged(&inc, "failed", "zhangsan", "wecom_app", "likely dropped"),
        "{:#?}",
        inc.timeline
    );
    assert!(!logged(&inc, "failed", "lisi", "wecom_app", ""));
    let (_, m) = srv.get("/metrics").await;
    assert_eq!(
        crate::support::metric(
            &m,
            r#"alertmanager_wechat_oncall_pages_total{contact="wecom_app",result="failed"}"#
        ),
        1.0,
        "{m}"
    );
}
