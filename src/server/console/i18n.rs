//! The console's words in its two languages. Every page string is a field of [`Text`], so a
//! string missing in one language does not compile; the strings the script needs are the
//! [`SCRIPT`] table, handed to the page as JSON in a `data-` attribute (no inline script).
//!
//! The language is `global.locale` unless the browser chose the other one: `?lang=` on any
//! page sets the `amw_lang` cookie, remembered for a year.

use axum::http::HeaderMap;
use axum::http::header;

use crate::template::Locale;

/// The cookie that remembers a browser's choice.
pub const COOKIE: &str = "amw_lang";

/// A console language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn of(locale: Locale) -> Lang {
        match locale {
            Locale::ZhCn => Lang::Zh,
            Locale::En => Lang::En,
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "zh-CN" | "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The `<html lang>` and cookie value.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    pub fn text(self) -> &'static Text {
        match self {
            Lang::Zh => &ZH,
            Lang::En => &EN,
        }
    }

    /// The script's strings as a JSON object.
    pub fn script_json(self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = SCRIPT
            .iter()
            .map(|(k, en, zh)| {
                let v = if self == Lang::Zh { zh } else { en };
                (k.to_string(), serde_json::Value::from(*v))
            })
            .collect();
        serde_json::Value::Object(map).to_string()
    }
}

/// The language of a request: `?lang=` (then `set` is true: remember it), the cookie, or
/// `global.locale`.
pub fn choose(headers: &HeaderMap, query: Option<&str>, locale: Locale) -> (Lang, bool) {
    if let Some(l) = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|kv| kv.strip_prefix("lang="))
        .find_map(Lang::parse)
    {
        return (l, true);
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .find_map(Lang::parse);
    (cookie.unwrap_or(Lang::of(locale)), false)
}

/// Every string a page shows, in one language.
pub struct Text {
    pub switch_to: &'static str,
    pub nav_overview: &'static str,
    pub nav_playground: &'static str,
    pub nav_deliveries: &'static str,
    pub nav_deadletters: &'static str,
    pub nav_incidents: &'static str,
    pub nav_oncall: &'static str,
    pub times_in: &'static str,
    // Overview
    pub firing_now: &'static str,
    pub firing_none: &'static str,
    pub firing_note: &'static str,
    pub since: &'static str,
    pub last_sent: &'static str,
    pub alerts: &'static str,
    pub open_incidents: &'static str,
    pub no_incidents: &'static str,
    pub oncall_now: &'static str,
    pub until: &'static str,
    pub next: &'static str,
    pub nobody: &'static str,
    pub no_change: &'static str,
    pub no_schedules: &'static str,
    pub dead_waiting: &'static str,
    pub dead_none: &'static str,
    pub dead_open: &'static str,
    pub per_hour: &'static str,
    pub top_names: &'static str,
    pub time_to_ack: &'static str,
    pub step: &'static str,
    pub next_escalation: &'static str,
    pub median: &'static str,
    pub last_24h: &'static str,
    pub last_7d: &'static str,
    pub no_data: &'static str,
    pub notifications: &'static str,
    pub chart_total: &'static str,
    // Playground
    pub playground: &'static str,
    pub playground_note: &'static str,
    pub receiver: &'static str,
    pub route_tree_picks: &'static str,
    pub payload: &'static str,
    pub pick_payload: &'static str,
    pub payload_json: &'static str,
    pub templates: &'static str,
    pub templates_note: &'static str,
    pub add_template: &'static str,
    pub render: &'static str,
    pub send_test: &'static str,
    // Deliveries
    pub deliveries: &'static str,
    pub any_receiver: &'static str,
    pub status: &'static str,
    pub any_status: &'static str,
    pub alert_name: &'static str,
    pub filter: &'static str,
    pub no_deliveries: &'static str,
    pub accepted: &'static str,
    pub tries: &'static str,
    pub links: &'static str,
    pub source: &'static str,
    pub alert_n: &'static str,
    pub at: &'static str,
    pub next_attempt: &'static str,
    pub into_digest: &'static str,
    pub as_duplicate: &'static str,
    pub digest_of: &'static str,
    // Dead letters
    pub deadletters: &'static str,
    pub deadletters_note: &'static str,
    pub replay_all: &'static str,
    pub purge_all: &'static str,
    pub no_deadletters: &'static str,
    pub failed: &'static str,
    pub reason_error: &'static str,
    pub replay: &'static str,
    // On call
    pub oncall: &'static str,
    pub schedule: &'static str,
    pub on_call: &'static str,
    pub overrides: &'static str,
    pub no_overrides: &'static str,
    pub covers: &'static str,
    pub replaces: &'static str,
    pub whoever: &'static str,
    pub from: &'static str,
    pub delete: &'static str,
    pub cover_title: &'static str,
    pub cover_note: &'static str,
    pub cover_person: &'static str,
    pub cover_replaces: &'static str,
    pub cover_until: &'static str,
    pub cover_add: &'static str,
    // Incidents
    pub incidents: &'static str,
    pub incidents_note: &'static str,
    pub any_state: &'static str,
    pub loading: &'static str,
    // State names
    pub state_names: &'static [(&'static str, &'static str)],
}

impl Text {
    /// A delivery or incident state in this language (the key itself when unknown).
    pub fn state<'a>(&self, key: &'a str) -> &'a str {
        self.state_names
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .unwrap_or(key)
    }
}

pub static EN: Text = Text {
    switch_to: "中文",
    nav_overview: "Overview",
    nav_playground: "Playground",
    nav_deliveries: "Deliveries",
    nav_deadletters: "Dead letters",
    nav_incidents: "Incidents",
    nav_oncall: "On call",
    times_in: "Times in",
    firing_now: "Firing now",
    firing_none: "Nothing is firing.",
    firing_note: "Groups whose latest notification was firing, newest first.",
    since: "since",
    last_sent: "last",
    alerts: "alerts",
    open_incidents: "Open incidents",
    no_incidents: "No incidents.",
    oncall_now: "On call now",
    until: "until",
    next: "next",
    nobody: "nobody",
    no_change: "no change planned",
    no_schedules: "No schedules configured.",
    dead_waiting: "Dead letters waiting",
    dead_none: "No dead letters.",
    dead_open: "Open the dead letters",
    per_hour: "Notifications per hour, by severity",
    top_names: "The ten alert names that sent the most notifications",
    time_to_ack: "Time to acknowledge (median and p90 per day)",
    step: "step",
    next_escalation: "escalates at",
    median: "median",
    last_24h: "Last 24 h",
    last_7d: "Last 7 days",
    no_data: "No notifications sent in this period.",
    notifications: "notifications",
    chart_total: "in all",
    playground: "Template playground",
    playground_note: "Nothing is sent from here, except through Send test.",
    receiver: "Receiver",
    route_tree_picks: "all the route tree picks",
    payload: "Payload",
    pick_payload: "pick an example or a recent notification…",
    payload_json: "Payload JSON",
    templates: "Templates",
    templates_note: "Override a template by name (for example",
    add_template: "Add a template",
    render: "Render",
    send_test: "Send test to receiver…",
    deliveries: "Deliveries",
    any_receiver: "any receiver",
    status: "Status",
    any_status: "any status",
    alert_name: "Alert name",
    filter: "Filter",
    no_deliveries: "No deliveries recorded (yet) for this filter.",
    accepted: "Accepted",
    tries: "Tries",
    links: "Links",
    source: "source",
    alert_n: "alert",
    at: "at",
    next_attempt: "next attempt",
    into_digest: "into digest",
    as_duplicate: "as a duplicate",
    digest_of: "digest of",
    deadletters: "Dead letters",
    deadletters_note: "What gave up, with its last error. Replaying re-queues with the attempts reset.",
    replay_all: "Replay all",
    purge_all: "Purge all",
    no_deadletters: "No dead letters.",
    failed: "Failed",
    reason_error: "Reason · last error",
    replay: "Replay",
    oncall: "On call",
    schedule: "Schedule",
    on_call: "On call",
    overrides: "Overrides",
    no_overrides: "No overrides.",
    covers: "covers",
    replaces: "for",
    whoever: "whoever is on call",
    from: "from",
    delete: "Delete",
    cover_title: "Cover for me until…",
    cover_note: "From now until the time you pick, the person below is on call instead.",
    cover_person: "Who covers",
    cover_replaces: "For whom (optional)",
    cover_until: "Until",
    cover_add: "Add the override",
    incidents: "Incidents",
    incidents_note: "Newest first. Acknowledging stops the escalation; it never silences the alerts.",
    any_state: "any state",
    loading: "Loading…",
    state_names: &[
        ("queued", "queued"),
        ("sent", "sent"),
        ("retrying", "retrying"),
        ("dead", "dead"),
        ("suppressed", "suppressed"),
        ("merged", "merged"),
        ("triggered", "triggered"),
        ("acknowledged", "acknowledged"),
        ("resolved", "resolved"),
        ("firing", "firing"),
    ],
};

pub static ZH: Text = Text {
    switch_to: "English",
    nav_overview: "概览",
    nav_playground: "模板试验",
    nav_deliveries: "投递记录",
    nav_deadletters: "死信",
    nav_incidents: "事件",
    nav_oncall: "值班",
    times_in: "时间按",
    firing_now: "正在告警",
    firing_none: "当前没有告警。",
    firing_note: "最近一次通知为告警中的分组，最新的在前。",
    since: "始于",
    last_sent: "最近",
    alerts: "条告警",
    open_incidents: "未关闭的事件",
    no_incidents: "没有事件。",
    oncall_now: "当前值班",
    until: "至",
    next: "下一位",
    nobody: "无人",
    no_change: "暂无交接",
    no_schedules: "未配置排班。",
    dead_waiting: "待处理的死信",
    dead_none: "没有死信。",
    dead_open: "查看死信",
    per_hour: "每小时通知数（按级别）",
    top_names: "通知最多的十个告警名",
    time_to_ack: "认领用时（每日中位数与 p90）",
    step: "步骤",
    next_escalation: "升级于",
    median: "中位数",
    last_24h: "最近 24 小时",
    last_7d: "最近 7 天",
    no_data: "此期间没有发送通知。",
    notifications: "条通知",
    chart_total: "共",
    playground: "模板试验",
    playground_note: "这里不会发送任何消息，“发送测试”除外。",
    receiver: "接收者",
    route_tree_picks: "由路由树决定",
    payload: "告警数据",
    pick_payload: "选择示例或最近的通知…",
    payload_json: "告警数据 JSON",
    templates: "模板",
    templates_note: "按名称覆盖模板（例如",
    add_template: "添加模板",
    render: "渲染",
    send_test: "向接收者发送测试…",
    deliveries: "投递记录",
    any_receiver: "全部接收者",
    status: "状态",
    any_status: "全部状态",
    alert_name: "告警名",
    filter: "筛选",
    no_deliveries: "此筛选条件下（暂时）没有投递记录。",
    accepted: "接收时间",
    tries: "尝试次数",
    links: "链接",
    source: "来源",
    alert_n: "告警",
    at: "于",
    next_attempt: "下次尝试",
    into_digest: "并入摘要",
    as_duplicate: "重复，未再发送",
    digest_of: "摘要，合并",
    deadletters: "死信",
    deadletters_note: "放弃投递的通知及其最后的错误。重放会重新排队并重置尝试次数。",
    replay_all: "全部重放",
    purge_all: "全部清除",
    no_deadletters: "没有死信。",
    failed: "失败时间",
    reason_error: "原因 · 最后的错误",
    replay: "重放",
    oncall: "值班",
    schedule: "排班",
    on_call: "值班人",
    overrides: "替班",
    no_overrides: "没有替班。",
    covers: "代替",
    replaces: "",
    whoever: "当班的人",
    from: "从",
    delete: "删除",
    cover_title: "替我值班，直到…",
    cover_note: "从现在起到所选时间，由下面的人代为值班。",
    cover_person: "替班人",
    cover_replaces: "代替谁（可选）",
    cover_until: "截止",
    cover_add: "添加替班",
    incidents: "事件",
    incidents_note: "最新的在前。认领会停止升级，但不会静默告警。",
    any_state: "全部状态",
    loading: "加载中…",
    state_names: &[
        ("queued", "排队中"),
        ("sent", "已发送"),
        ("retrying", "重试中"),
        ("dead", "已放弃"),
        ("suppressed", "已去重"),
        ("merged", "已合并"),
        ("triggered", "待认领"),
        ("acknowledged", "已认领"),
        ("resolved", "已解决"),
        ("firing", "告警中"),
    ],
};

/// The script's strings: key, English, Chinese.
pub const SCRIPT: &[(&str, &str, &str)] = &[
    ("rendering", "rendering…", "渲染中…"),
    (
        "rendered",
        "rendered {n} integration(s) · nothing was sent",
        "已渲染 {n} 个集成 · 未发送任何消息",
    ),
    (
        "no_integration",
        "No integration gets this notification (route tree, send_resolved).",
        "没有集成会收到这条通知（路由树、send_resolved）。",
    ),
    (
        "requests",
        "{n} upstream request(s), secrets masked",
        "{n} 个上游请求（已隐去密钥）",
    ),
    ("opens", "opens", "打开"),
    ("examples", "examples/", "示例"),
    ("recent", "recently stored", "最近存储的"),
    (
        "choose_receiver",
        "choose a receiver to send a test message to",
        "请选择要发送测试消息的接收者",
    ),
    (
        "confirm_send",
        "Send a one-line test message to every integration of {r}? This really sends.",
        "向 {r} 的每个集成发送一条测试消息？这会真的发送。",
    ),
    (
        "confirm_replay",
        "Replay dead letter {id}?",
        "重放死信 {id}？",
    ),
    (
        "confirm_replay_all",
        "Replay every dead letter?",
        "重放全部死信？",
    ),
    (
        "confirm_purge",
        "Delete every dead letter for good? This cannot be undone.",
        "永久删除全部死信？此操作无法撤销。",
    ),
    ("requeued", "re-queued {n}", "已重新排队 {n} 条"),
    ("deleted", "deleted {n}", "已删除 {n} 条"),
    ("template_name", "Name", "名称"),
    ("template_text", "Text", "内容"),
    ("in_template", "template", "模板"),
    ("line", "line", "行"),
    ("column", "column", "列"),
    ("work_app", "WeCom", "企业微信"),
    ("robot_app", "WeCom group robot", "企业微信群机器人"),
    ("wechat", "WeChat", "微信"),
    ("mp_app", "WeChat · Official Account", "微信 · 公众号"),
    // Incidents
    (
        "incidents_unavailable",
        "Incidents are not available on this server yet (no incidents API). Nothing to show.",
        "此服务尚未提供事件接口，暂无可显示的内容。",
    ),
    ("no_incidents", "No incidents.", "没有事件。"),
    ("opened", "opened", "开始"),
    ("policy", "policy", "策略"),
    ("step", "step", "步骤"),
    ("acknowledged_by", "acknowledged by", "认领人"),
    ("resolved_at", "resolved", "解决于"),
    ("next_escalation", "next escalation", "下次升级"),
    ("timeline", "Timeline", "时间线"),
    ("ack", "Acknowledge", "认领"),
    ("escalate", "Escalate", "升级"),
    ("resolve", "Resolve", "解决"),
    (
        "confirm_ack",
        "Acknowledge incident {ref}?",
        "认领事件 {ref}？",
    ),
    (
        "confirm_escalate",
        "Escalate incident {ref} to the next step now?",
        "立即将事件 {ref} 升级到下一步？",
    ),
    (
        "confirm_resolve",
        "Resolve incident {ref}?",
        "将事件 {ref} 标记为已解决？",
    ),
    ("done", "done", "完成"),
    ("triggered", "triggered", "待认领"),
    ("acknowledged", "acknowledged", "已认领"),
    ("resolved", "resolved", "已解决"),
    // On call
    ("confirm_delete", "Delete this override?", "删除这条替班？"),
    (
        "pick_until",
        "pick when the cover ends",
        "请选择替班截止时间",
    ),
    ("added", "override added", "已添加替班"),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every word the script asks for (`T("key"…)`) is in both languages, once.
    #[test]
    fn the_script_finds_each_of_its_words() {
        let js = include_str!("../assets/console.js");
        let mut missing = Vec::new();
        for part in js.split("T(\"").skip(1) {
            let key = part.split('"').next().unwrap_or_default();
            if !SCRIPT.iter().any(|(k, _, _)| *k == key) {
                missing.push(key.to_string());
            }
        }
        assert!(missing.is_empty(), "{missing:?}");
        let mut keys: Vec<_> = SCRIPT.iter().map(|(k, _, _)| *k).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), SCRIPT.len(), "a key twice");
        for (k, en, zh) in SCRIPT {
            assert!(!en.is_empty() && !zh.is_empty(), "{k}");
        }
    }

    #[test]
    fn a_query_beats_the_cookie_which_beats_the_locale() {
        let mut h = HeaderMap::new();
        assert_eq!(choose(&h, None, Locale::ZhCn), (Lang::Zh, false));
        h.insert(header::COOKIE, "a=b; amw_lang=en".parse().unwrap());
        assert_eq!(choose(&h, None, Locale::ZhCn), (Lang::En, false));
        assert_eq!(
            choose(&h, Some("range=7d&lang=zh-CN"), Locale::En),
            (Lang::Zh, true)
        );
        assert_eq!(choose(&h, Some("lang=fr"), Locale::ZhCn), (Lang::En, false));
    }
}
