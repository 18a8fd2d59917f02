//! Voice call reports as neutral events: Aliyun's HTTP batch push (`VoiceReport` after the
//! call, `VoiceCallReport` during it: a JSON array) and Tencent Cloud's callbacks
//! (`voicekey_callback`, `voiceprompt_callback`, `voice_failure_callback`).
//!
//! The key `1` acknowledges as the person called; answered without the key is delivered,
//! never acknowledged; not answered, busy or failed is a failed page. Each event comes with
//! its dedupe key: the call id and what it says (`ack` or `final`), so a keypress reported
//! during the call and again in the final report acknowledges once. The reports are unsigned:
//! the endpoint's path secret is the credential, and only call ids the engine issued mean
//! anything.

use serde::Deserialize;
use serde_json::Value;

use super::oncall::CallRef;
use super::{ACK_KEY, Provider};
use crate::channels::reach::{Contact, Failure, FailureReason, OncallEvent, PageRef, dedupe_key};

/// Why a report body was refused (answered 400).
#[derive(Debug, thiserror::Error)]
#[error("malformed voice report: {0}")]
pub struct ReportError(String);

/// The answer the vendor expects once the reports are taken.
pub fn ok_answer(provider: Provider) -> &'static str {
    match provider {
        Provider::Aliyun => r#"{"code":0,"msg":"接收成功"}"#,
        Provider::Tencent => r#"{"result":0,"errmsg":"OK"}"#,
    }
}

/// Reads a report body into events with their dedupe keys (in the order reported).
pub fn parse(provider: Provider, body: &[u8]) -> Result<Vec<(OncallEvent, String)>, ReportError> {
    match provider {
        Provider::Aliyun => aliyun(body),
        Provider::Tencent => tencent(body),
    }
}

#[derive(Debug, Deserialize)]
struct AliyunReport {
    #[serde(default)]
    call_id: String,
    #[serde(default)]
    out_id: Option<String>,
    #[serde(default)]
    status_code: String,
    #[serde(default)]
    status_msg: Option<String>,
    #[serde(default)]
    dtmf: Option<String>,
    #[serde(default)]
    callee: Option<String>,
    /// Present in `VoiceCallReport` (during the call) only.
    #[serde(default)]
    status_time: Option<String>,
    /// Present in `VoiceReport` (after the call).
    #[serde(default)]
    duration: Option<String>,
}

fn voice_page(provider: Provider, call_id: &str, out_id: Option<String>) -> PageRef {
    PageRef::Voice(CallRef {
        provider,
        call_id: call_id.to_string(),
        out_id: out_id.filter(|s| !s.is_empty()),
    })
}

/// `callee` as E.164 when it is a full national number (reports may mask it).
fn aliyun_callee(callee: Option<&str>) -> String {
    match callee {
        Some(c) if !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) => format!("+86{c}"),
        Some(c) => c.to_string(),
        None => String::new(),
    }
}

fn aliyun_failure(code: &str) -> FailureReason {
    match code {
        "200003" | "200008" => FailureReason::NotAnswered,
        "200002" => FailureReason::Busy,
        "200004" | "200005" | "200007" | "200010" | "200011" => FailureReason::Unreachable,
        "200119" | "200121" => FailureReason::Limited,
        _ => FailureReason::Other,
    }
}

fn pressed(dtmf: Option<&str>) -> bool {
    dtmf.is_some_and(|d| d.contains(ACK_KEY))
}

fn aliyun(body: &[u8]) -> Result<Vec<(OncallEvent, String)>, ReportError> {
    let reports: Vec<AliyunReport> =
        serde_json::from_slice(body).map_err(|e| ReportError(e.to_string()))?;
    let mut out = Vec::new();
    for r in reports {
        if r.call_id.is_empty() {
            continue;
        }
        let page = voice_page(Provider::Aliyun, &r.call_id, r.out_id.clone());
        let by = Contact::Voice {
            number: aliyun_callee(r.callee.as_deref()),
        };
        let ack = || {
            (
                OncallEvent::Ack {
                    by: by.clone(),
                    incident: None,
                    page: page.clone(),
                },
                dedupe_key("voice", &format!("aliyun\n{}\nack", r.call_id)),
            )
        };
        let during = r.status_time.is_some() && r.duration.is_none();
        if during {
            // Only the keypress matters before the call ends.
            if r.status_code == "300000" && pressed(r.dtmf.as_deref()) {
                out.push(ack());
            }
            continue;
        }
        if pressed(r.dtmf.as_deref()) {
            out.push(ack());
            continue;
        }
        let final_key = dedupe_key("voice", &format!("aliyun\n{}\nfinal", r.call_id));
        let event = match r.status_code.as_str() {
            "200000" | "200001" => OncallEvent::Delivered { page },
            code => OncallEvent::PageFailed {
                page,
                failure: Failure {
                    reason: aliyun_failure(code),
                    detail: crate::text::truncate(
                        format!("{code} {}", r.status_msg.unwrap_or_default()).trim(),
                        100,
                    ),
                },
            },
        };
        out.push((event, final_key));
    }
    Ok(out)
}

fn string_of(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn tencent(body: &[u8]) -> Result<Vec<(OncallEvent, String)>, ReportError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ReportError(e.to_string()))?;
    let items = match v {
        Value::Array(a) => a,
        one @ Value::Object(_) => vec![one],
        _ => return Err(ReportError("expected a JSON object".into())),
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Object(map) = item else {
            return Err(ReportError("expected a JSON object".into()));
        };
        for (kind, r) in map {
            let call_id = string_of(&r, "callid");
            if call_id.is_empty() {
                continue;
            }
            let page = voice_page(Provider::Tencent, &call_id, None);
            let number = {
                let (cc, m) = (string_of(&r, "nationcode"), string_of(&r, "mobile"));
                if cc.is_empty() {
                    m
                } else {
                    format!("+{cc}{m}")
                }
            };
            let final_key = dedupe_key("voice", &format!("tencent\n{call_id}\nfinal"));
            match kind.as_str() {
                "voicekey_callback" if string_of(&r, "keypress") == ACK_KEY => {
                    out.push((
                        OncallEvent::Ack {
                            by: Contact::Voice { number },
                            incident: None,
                            page,
                        },
                        dedupe_key("voice", &format!("tencent\n{call_id}\nack")),
                    ));
                }
                "voiceprompt_callback" => {
                    let result = string_of(&r, "result");
                    let event = match result.as_str() {
                        "0" => OncallEvent::Delivered { page },
                        "1" => OncallEvent::PageFailed {
                            page,
                            failure: Failure {
                                reason: FailureReason::NotAnswered,
                                detail: "result 1: not answered".into(),
                            },
                        },
                        other => OncallEvent::PageFailed {
                            page,
                            failure: Failure {
                                reason: FailureReason::Other,
                                detail: crate::text::truncate(
                                    &format!("result {other}: call error"),
                                    100,
                                ),
                            },
                        },
                    };
                    out.push((event, final_key));
                }
                "voice_failure_callback" => {
                    let code = string_of(&r, "failure_code");
                    let reason = string_of(&r, "failure_reason");
                    out.push((
                        OncallEvent::PageFailed {
                            page,
                            failure: Failure {
                                reason: FailureReason::Unreachable,
                                detail: crate::text::truncate(
                                    format!("{code} {reason}").trim(),
                                    100,
                                ),
                            },
                        },
                        final_key,
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNANSWERED: &str = r#"[{"status_code":"200003","callee":"130****0000","ring_time":"2021-04-28 10:02:40","duration":"0",
    "voice_type":"voice","originate_time":"2021-04-28 10:02:34","end_time":"","call_id":"122628733198^10942206****",
    "caller":"20200900****","status_msg":"执行完成","out_id":"K7Q2-1","dtmf":"","toll_type":"LOCAL"}]"#;

    fn page(call_id: &str, out: Option<&str>) -> PageRef {
        PageRef::Voice(CallRef {
            provider: Provider::Aliyun,
            call_id: call_id.into(),
            out_id: out.map(String::from),
        })
    }

    #[test]
    fn aliyun_not_answered_is_a_failed_page() {
        let e = parse(Provider::Aliyun, UNANSWERED.as_bytes()).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].0,
            OncallEvent::PageFailed {
                page: page("122628733198^10942206****", Some("K7Q2-1")),
                failure: Failure {
                    reason: FailureReason::NotAnswered,
                    detail: "200003 执行完成".into()
                }
            }
        );
    }

    #[test]
    fn aliyun_keypress_during_and_after_the_call_is_one_ack() {
        let during = r#"[{"call_id":"c1","status_code":"300000","status_time":"2021-04-28 10:02:50","out_id":"K7Q2-1","dtmf":"1"}]"#;
        let after = r#"[{"call_id":"c1","status_code":"200000","duration":"12","callee":"13800000000","out_id":"K7Q2-1","dtmf":"1"},
                        {"call_id":"c2","status_code":"200001","duration":"3","dtmf":""},
                        {"call_id":"c3","status_code":"200002","duration":"0"},
                        {"call_id":"c4","status_code":"200101","status_time":"x"}]"#;
        let d = parse(Provider::Aliyun, during.as_bytes()).unwrap();
        let a = parse(Provider::Aliyun, after.as_bytes()).unwrap();
        assert!(matches!(d[0].0, OncallEvent::Ack { incident: None, .. }));
        assert_eq!(d[0].1, a[0].1, "the same keypress has one dedupe key");
        assert_eq!(
            a[0].0,
            OncallEvent::Ack {
                by: Contact::Voice {
                    number: "+8613800000000".into()
                },
                incident: None,
                page: page("c1", Some("K7Q2-1"))
            }
        );
        assert_eq!(
            a[1].0,
            OncallEvent::Delivered {
                page: page("c2", None)
            }
        );
        assert!(matches!(
            &a[2].0,
            OncallEvent::PageFailed { failure, .. } if failure.reason == FailureReason::Busy
        ));
        assert_eq!(a.len(), 3, "a middle state is no event");
        assert!(parse(Provider::Aliyun, b"{\"not\":\"an array\"}").is_err());
    }

    #[test]
    fn tencent_callbacks() {
        let key = r#"{"voicekey_callback":{"call_from":"","callid":"t1","keypress":"1","mobile":"13788888888","nationcode":"86"}}"#;
        let other_key = r#"{"voicekey_callback":{"callid":"t1","keypress":"2","mobile":"1","nationcode":"86"}}"#;
        let prompt = |r: &str| {
            format!(
                r#"{{"voiceprompt_callback":{{"result":"{r}","accept_time":"1470197211","callid":"t2","end_calltime":"1470197221","fee":"1","mobile":"13xxxxxxxxx","nationcode":"86","start_calltime":"1470197196"}}}}"#
            )
        };
        let failure = r#"{"voice_failure_callback":{"call_from":"","callid":"t3","failure_code":8,"failure_reason":"空号","mobile":"1","nationcode":"86"}}"#;
        let k = parse(Provider::Tencent, key.as_bytes()).unwrap();
        assert_eq!(
            k[0].0,
            OncallEvent::Ack {
                by: Contact::Voice {
                    number: "+8613788888888".into()
                },
                incident: None,
                page: PageRef::Voice(CallRef {
                    provider: Provider::Tencent,
                    call_id: "t1".into(),
                    out_id: None
                })
            }
        );
        assert!(
            parse(Provider::Tencent, other_key.as_bytes())
                .unwrap()
                .is_empty()
        );
        let answered = parse(Provider::Tencent, prompt("0").as_bytes()).unwrap();
        assert!(matches!(answered[0].0, OncallEvent::Delivered { .. }));
        let missed = parse(Provider::Tencent, prompt("1").as_bytes()).unwrap();
        assert!(matches!(
            &missed[0].0,
            OncallEvent::PageFailed { failure, .. } if failure.reason == FailureReason::NotAnswered
        ));
        assert_eq!(missed[0].1, answered[0].1, "one final outcome per call");
        let f = parse(Provider::Tencent, failure.as_bytes()).unwrap();
        assert!(matches!(
            &f[0].0,
            OncallEvent::PageFailed { failure, .. } if failure.detail == "8 空号"
        ));
    }
}
