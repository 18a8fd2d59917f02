//! The channels' shipped templates ([`super::SHIPPED_TEMPLATES`]), tested as the runtime compiles
//! them: every one compiles, and what an alert says reaches the message inert.

use chrono::Utc;
use serde_json::json;

use crate::template::{Locale, Templates};
use crate::webhook::Notification;

fn t(locale: Locale) -> Templates {
    super::templates(chrono_tz::Asia::Shanghai, locale)
}

#[test]
fn shipped_templates_compile_in_both_locales() {
    for loc in [Locale::ZhCn, Locale::En] {
        let tpl = t(loc);
        for (l, name, src) in super::SHIPPED_TEMPLATES.iter().copied().flatten() {
            if *l == loc.as_str() {
                let mut fresh = t(loc);
                fresh.add(name, src).unwrap();
                assert!(tpl.has(name), "{name}");
            }
        }
    }
}

#[test]
fn a_first_notification_after_the_recovery_shows_no_span() {
    // The examples' alert resolved at 16:42 (Shanghai); its firing notification came
    // either 42 minutes before that or, replayed, a week later.
    let payload = include_str!("../../examples/alertmanager-resolved.json");
    let mut n = Notification::parse(payload.as_bytes()).unwrap();
    let ended = n.alerts[0].ended().unwrap().with_timezone(&Utc);
    let now = ended + chrono::Duration::days(7);
    for (loc, before, after) in [
        (
            Locale::ZhCn,
            "- 首次通知：2026-11-25 16:00:00，至恢复 42分钟；告警消息未发出",
            "- 首次通知：2026-12-02 16:42:00（晚于恢复时间）；告警消息未发出",
        ),
        (
            Locale::En,
            "- First notified: 2026-11-25 16:00:00, 42m before it resolved; no firing message went out",
            "- First notified: 2026-12-02 16:42:00, after it had resolved; no firing message went out",
        ),
    ] {
        let tpl = t(loc);
        n.alerts[0].first_notified_at = Some(ended - chrono::Duration::minutes(42));
        let text = tpl
            .render("wxpusher.content", &tpl.context(&n, now))
            .unwrap();
        assert!(text.contains(before), "{text}");
        n.alerts[0].first_notified_at = Some(now);
        let ctx = tpl.context(&n, now);
        assert!(ctx["alerts"][0].get("notifiedDuration").is_none(), "{ctx}");
        assert!(ctx["alerts"][0].get("notifiedDurationSeconds").is_none());
        let text = tpl.render("wxpusher.content", &ctx).unwrap();
        assert!(text.contains(after), "{text}");
        assert!(!text.contains("0秒") && !text.contains(" 0s "), "{text}");
    }
}

/// A notification whose every URL field would close its link and open a second one, and
/// whose labels and annotations carry markup.
fn hostile() -> Notification {
    let url = "http://ok.example/a)[x](javascript:alert(1))";
    let payload = json!({
        "receiver": "r", "status": "firing", "externalURL": url,
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "A<a href=x>y</a>", "severity": "<b>s</b>", "instance": "[i](javascript:1)"},
            "annotations": {"summary": "S[x](javascript:2)", "description": "Runbook: <i>restart</i> the pool"},
            "startsAt": "2026-01-01T00:00:00Z",
            "generatorURL": url, "silenceURL": url, "dashboardURL": url, "panelURL": url
        }]
    });
    Notification::parse(payload.to_string().as_bytes()).unwrap()
}

#[test]
fn every_link_in_a_shipped_markdown_template_goes_through_md_url() {
    for loc in [Locale::ZhCn, Locale::En] {
        let tpl = t(loc);
        let mut ctx = tpl.context(&hostile(), Utc::now());
        ctx["preview"] = json!("P[x](javascript:3)");
        for name in ["wxpusher.content", "wecom.markdown", "wecom.markdown_v2"] {
            let out = tpl.render(name, &ctx).unwrap();
            // An escaped `\]` closes no link.
            let links = out.replace("\\]", "");
            assert!(!links.contains("](javascript"), "{loc:?} {name}: {out}");
            assert!(!out.contains("((javascript"), "{loc:?} {name}: {out}");
            assert!(
                out.contains("javascript:alert%281%29"),
                "{loc:?} {name}: {out}"
            );
        }
    }
}

#[test]
fn the_wecom_textcard_escapes_what_the_alert_says() {
    for loc in [Locale::ZhCn, Locale::En] {
        let tpl = t(loc);
        let ctx = tpl.context(&hostile(), Utc::now());
        let out = tpl.render("wecom.textcard.description", &ctx).unwrap();
        assert!(out.contains("A&lt;a href=x&gt;y&lt;/a&gt;"), "{out}");
        assert!(out.contains("&lt;b&gt;s&lt;/b&gt;"), "{out}");
        assert!(!out.contains("<a href"), "{out}");
        assert!(!out.contains("<i>"), "{out}");
    }
}

#[test]
fn wecom_messages_show_the_description_annotation() {
    for loc in [Locale::ZhCn, Locale::En] {
        let tpl = t(loc);
        let mut ctx = tpl.context(&hostile(), Utc::now());
        ctx["preview"] = json!("P");
        for name in [
            "wecom.markdown",
            "wecom.markdown_v2",
            "wecom.text",
            "wecom.textcard.description",
        ] {
            let out = tpl.render(name, &ctx).unwrap();
            assert!(
                out.contains("Runbook: ") && out.contains("restart") && out.contains("the pool"),
                "{loc:?} {name}: {out}"
            );
        }
    }
}
