//! Handlebars rendering: the shipped templates, users' overrides, the context and the helpers.
//!
//! Templates are compiled once when the configuration loads (a template that does not compile
//! is a configuration error) and rendered per delivery. The context keeps the payload's own
//! names (`commonLabels`, `alerts`, `externalURL`, …) and adds derived values (`firing`,
//! `resolved`, `status_text`, per-alert `duration`). Output is not HTML-escaped: messages are
//! markdown or plain text.
//!
//! Alert text is untrusted (anyone who can post a webhook, or set a label, writes it), so the
//! context and the shipped templates are safe by default: the URL fields (`generatorURL`,
//! `silenceURL`, `dashboardURL`, `panelURL`, `externalURL`) hold only `http`/`https` URLs (anything
//! else becomes empty; `{{raw_url "generatorURL"}}` is the knowing opt-out), and the shipped
//! templates pass text through `html`, `md_escape`, `md_code` and `md_url`.

pub mod budget;

use std::collections::BTreeMap;
use std::path::Path;

use crate::text;
use chrono::{DateTime, FixedOffset, Utc};
use chrono_tz::Tz;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderErrorReason, Renderable,
    ScopedJson,
};
use serde_json::{Map, Value, json};

use crate::webhook::{Alert, Notification, Status};

mod syntax;

/// The shipped templates: (locale, name, source). Names are what `{{> name}}` and the config's
/// template fields refer to; a user file with the same name replaces one.
const DEFAULTS: &[(&str, &str, &str)] = &[
    (
        "zh-CN",
        "oncall.status",
        include_str!("../../templates/zh-CN/oncall.status.hbs"),
    ),
    (
        "en",
        "oncall.status",
        include_str!("../../templates/en/oncall.status.hbs"),
    ),
    (
        "zh-CN",
        "chatops.ref",
        include_str!("../../templates/zh-CN/chatops.ref.hbs"),
    ),
    (
        "en",
        "chatops.ref",
        include_str!("../../templates/en/chatops.ref.hbs"),
    ),
    (
        "zh-CN",
        "wxpusher.summary",
        include_str!("../../templates/zh-CN/wxpusher.summary.hbs"),
    ),
    (
        "zh-CN",
        "wxpusher.content",
        include_str!("../../templates/zh-CN/wxpusher.content.hbs"),
    ),
    (
        "zh-CN",
        "wxpusher.html",
        include_str!("../../templates/zh-CN/wxpusher.html.hbs"),
    ),
    (
        "zh-CN",
        "wxpusher.text",
        include_str!("../../templates/zh-CN/wxpusher.text.hbs"),
    ),
    (
        "zh-CN",
        "console.text",
        include_str!("../../templates/zh-CN/console.text.hbs"),
    ),
    (
        "zh-CN",
        "gateway.text",
        include_str!("../../templates/zh-CN/gateway.text.hbs"),
    ),
    (
        "en",
        "wxpusher.summary",
        include_str!("../../templates/en/wxpusher.summary.hbs"),
    ),
    (
        "en",
        "wxpusher.content",
        include_str!("../../templates/en/wxpusher.content.hbs"),
    ),
    (
        "en",
        "wxpusher.html",
        include_str!("../../templates/en/wxpusher.html.hbs"),
    ),
    (
        "en",
        "wxpusher.text",
        include_str!("../../templates/en/wxpusher.text.hbs"),
    ),
    (
        "en",
        "console.text",
        include_str!("../../templates/en/console.text.hbs"),
    ),
    (
        "en",
        "gateway.text",
        include_str!("../../templates/en/gateway.text.hbs"),
    ),
    (
        "zh-CN",
        "official_account.title",
        include_str!("../../templates/zh-CN/official_account.title.hbs"),
    ),
    (
        "zh-CN",
        "official_account.time",
        include_str!("../../templates/zh-CN/official_account.time.hbs"),
    ),
    (
        "zh-CN",
        "official_account.status",
        include_str!("../../templates/zh-CN/official_account.status.hbs"),
    ),
    (
        "zh-CN",
        "official_account.severity",
        include_str!("../../templates/zh-CN/official_account.severity.hbs"),
    ),
    (
        "zh-CN",
        "official_account.instance",
        include_str!("../../templates/zh-CN/official_account.instance.hbs"),
    ),
    (
        "zh-CN",
        "official_account.summary",
        include_str!("../../templates/zh-CN/official_account.summary.hbs"),
    ),
    (
        "zh-CN",
        "official_account.url",
        include_str!("../../templates/zh-CN/official_account.url.hbs"),
    ),
    (
        "en",
        "official_account.title",
        include_str!("../../templates/en/official_account.title.hbs"),
    ),
    (
        "en",
        "official_account.time",
        include_str!("../../templates/en/official_account.time.hbs"),
    ),
    (
        "en",
        "official_account.status",
        include_str!("../../templates/en/official_account.status.hbs"),
    ),
    (
        "en",
        "official_account.severity",
        include_str!("../../templates/en/official_account.severity.hbs"),
    ),
    (
        "en",
        "official_account.instance",
        include_str!("../../templates/en/official_account.instance.hbs"),
    ),
    (
        "en",
        "official_account.summary",
        include_str!("../../templates/en/official_account.summary.hbs"),
    ),
    (
        "en",
        "official_account.url",
        include_str!("../../templates/en/official_account.url.hbs"),
    ),
    (
        "zh-CN",
        "wecom.summary",
        include_str!("../../templates/zh-CN/wecom.summary.hbs"),
    ),
    (
        "zh-CN",
        "wecom.markdown",
        include_str!("../../templates/zh-CN/wecom.markdown.hbs"),
    ),
    (
        "zh-CN",
        "wecom.markdown_v2",
        include_str!("../../templates/zh-CN/wecom.markdown_v2.hbs"),
    ),
    (
        "zh-CN",
        "wecom.text",
        include_str!("../../templates/zh-CN/wecom.text.hbs"),
    ),
    (
        "zh-CN",
        "wecom.textcard.title",
        include_str!("../../templates/zh-CN/wecom.textcard.title.hbs"),
    ),
    (
        "zh-CN",
        "wecom.textcard.description",
        include_str!("../../templates/zh-CN/wecom.textcard.description.hbs"),
    ),
    (
        "en",
        "wecom.summary",
        include_str!("../../templates/en/wecom.summary.hbs"),
    ),
    (
        "en",
        "wecom.markdown",
        include_str!("../../templates/en/wecom.markdown.hbs"),
    ),
    (
        "en",
        "wecom.markdown_v2",
        include_str!("../../templates/en/wecom.markdown_v2.hbs"),
    ),
    (
        "en",
        "wecom.text",
        include_str!("../../templates/en/wecom.text.hbs"),
    ),
    (
        "en",
        "wecom.textcard.title",
        include_str!("../../templates/en/wecom.textcard.title.hbs"),
    ),
    (
        "en",
        "wecom.textcard.description",
        include_str!("../../templates/en/wecom.textcard.description.hbs"),
    ),
];

/// A template failed to compile or render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {name}: {message}")]
pub struct TemplateError {
    pub name: String,
    pub message: String,
}

/// The compiled templates of one configuration.
#[derive(Debug)]
pub struct Templates {
    hb: Handlebars<'static>,
    tz: Tz,
    locale: Locale,
    /// The templates that must not render, each with why ([`budget::analyze`]); kept up to
    /// date by every [`Templates::add`].
    refused: BTreeMap<String, String>,
}

impl Templates {
    /// The shipped templates for `locale`, with every helper registered.
    pub fn new(tz: Tz, locale: Locale) -> Templates {
        let mut hb = Handlebars::new();
        hb.register_escape_fn(handlebars::no_escape);
        hb.set_prevent_indent(true);
        register_helpers(&mut hb, tz, locale);
        let mut t = Templates {
            hb,
            tz,
            locale,
            refused: BTreeMap::new(),
        };
        for (loc, name, src) in DEFAULTS {
            if *loc == locale.as_str() {
                // The shipped templates are compiled in a unit test; a failure here is a bug.
                if let Err(e) = t.add(name, src) {
                    tracing::error!(error = %e, "shipped template does not compile");
                }
            }
        }
        t
    }

    /// Compiles a template under a name, replacing any of that name. Its nesting is checked
    /// before it is parsed, and it is compiled with its render budget ([`budget`]). Problems
    /// that only show with the other templates (partials that include each other) are found
    /// here too and listed by [`Templates::refused`].
    pub fn add(&mut self, name: &str, src: &str) -> Result<(), TemplateError> {
        let err = |message: String| TemplateError {
            name: name.to_string(),
            message,
        };
        budget::check_source(src).map_err(err)?;
        self.hb
            .register_template_string(name, src)
            .map_err(|e| err(syntax::describe(src, &e)))?;
        if let Some(mut t) = self.hb.get_template(name).cloned() {
            budget::instrument(&mut t);
            self.hb.register_template(name, t);
        }
        self.refused = budget::analyze(self.hb.get_templates());
        Ok(())
    }

    /// The templates that must not render (a partial cycle, nesting or size over the limits),
    /// each as an error naming it and the limit.
    pub fn refused(&self) -> Vec<TemplateError> {
        self.refused
            .iter()
            .map(|(name, message)| TemplateError {
                name: name.clone(),
                message: message.clone(),
            })
            .collect()
    }

    /// Adds every `*.hbs` file the globs match; the file name without `.hbs` is the name.
    pub fn add_files(&mut self, globs: &[String]) -> Vec<TemplateError> {
        let mut errors = Vec::new();
        for pattern in globs {
            let paths = match glob::glob(pattern) {
                Ok(p) => p,
                Err(e) => {
                    errors.push(TemplateError {
                        name: pattern.clone(),
                        message: format!("bad glob: {e}"),
                    });
                    continue;
                }
            };
            for entry in paths {
                let path = match entry {
                    Ok(p) => p,
                    Err(e) => {
                        errors.push(TemplateError {
                            name: pattern.clone(),
                            message: e.to_string(),
                        });
                        continue;
                    }
                };
                let Some(name) = template_name(&path) else {
                    continue;
                };
                match std::fs::read_to_string(&path) {
                    Ok(src) => {
                        if let Err(mut e) = self.add(&name, &src) {
                            e.name = path.display().to_string();
                            errors.push(e);
                        }
                    }
                    Err(e) => errors.push(TemplateError {
                        name: path.display().to_string(),
                        message: format!("cannot read: {e}"),
                    }),
                }
            }
        }
        errors
    }

    pub fn has(&self, name: &str) -> bool {
        self.hb.has_template(name)
    }

    /// Renders a template within its budget ([`budget`]), where it does not hold up the
    /// service's other work. A template over a limit is an error naming the limit.
    pub fn render(&self, name: &str, ctx: &Value) -> Result<String, TemplateError> {
        let err = |message: String| TemplateError {
            name: name.to_string(),
            message,
        };
        if let Some(why) = self.refused.get(name) {
            return Err(err(why.clone()));
        }
        budget::off_the_async_workers(|| {
            let mut out = budget::Bounded(Vec::new());
            budget::render(|| self.hb.render_to_write(name, ctx, &mut out)).map_err(
                |(stopped, e)| err(stopped.unwrap_or_else(|| e.to_string().replace('\n', " "))),
            )?;
            String::from_utf8(out.0).map_err(|e| err(e.to_string()))
        })
    }

    pub fn locale(&self) -> Locale {
        self.locale
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The template context for a notification: the payload's names plus derived values.
    pub fn context(&self, n: &Notification, now: DateTime<Utc>) -> Value {
        // Everything but the alerts, which are added below in their template form: they are
        // serialized once, not twice.
        let mut root = match serde_json::to_value(n.without_alerts()) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        keep_safe_urls(&mut root);
        let alerts: Vec<Value> = n.alerts.iter().map(|a| self.alert_value(a, now)).collect();
        let pick = |s: Status| -> Vec<Value> {
            n.alerts
                .iter()
                .zip(&alerts)
                .filter(|(a, _)| a.status == s)
                .map(|(_, v)| v.clone())
                .collect()
        };
        root.insert("firing".into(), Value::Array(pick(Status::Firing)));
        root.insert("resolved".into(), Value::Array(pick(Status::Resolved)));
        root.insert("alerts".into(), Value::Array(alerts));
        root.insert(
            "status_text".into(),
            json!(status_text(self.locale, n.status)),
        );
        root.insert("now".into(), json!(now.to_rfc3339()));
        root.insert("locale".into(), json!(self.locale.as_str()));
        let mut ctx = Value::Object(root);
        describe_group(&mut ctx, n);
        ctx
    }

    /// The context of a notification for its one-line fields (a preview, a link, a card's
    /// fields), bounded whatever the size of the group: of a group of more than
    /// [`BOUNDED_ALERTS`] alerts, `alerts` holds only the first [`BOUNDED_ALERTS`] of each
    /// status (`firing` and `resolved` likewise), while `alertnames`, `alertCount`,
    /// `firingCount` and `resolvedCount` still describe the whole group. A smaller group gets
    /// its whole [`Templates::context`].
    pub fn bounded_context(&self, n: &Notification, now: DateTime<Utc>) -> Value {
        if n.alerts.len() <= BOUNDED_ALERTS {
            return self.context(n, now);
        }
        let mut shown = n.without_alerts();
        let (mut firing, mut resolved) = (0, 0);
        shown.alerts = n
            .alerts
            .iter()
            .filter(|a| {
                let taken = match a.status {
                    Status::Firing => &mut firing,
                    Status::Resolved => &mut resolved,
                };
                *taken += 1;
                *taken <= BOUNDED_ALERTS
            })
            .cloned()
            .collect();
        let mut ctx = self.context(&shown, now);
        describe_group(&mut ctx, n);
        ctx
    }

    fn alert_value(&self, a: &Alert, now: DateTime<Utc>) -> Value {
        let mut v = match serde_json::to_value(a) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        keep_safe_urls(&mut v);
        let end = a.ended().map(|e| e.with_timezone(&Utc)).unwrap_or(now);
        let secs = (end - a.starts_at.with_timezone(&Utc)).num_seconds().max(0);
        v.insert("duration".into(), json!(humanize(secs, self.locale)));
        v.insert("durationSeconds".into(), json!(secs));
        v.insert(
            "status_text".into(),
            json!(status_text(self.locale, a.status)),
        );
        // Pairing with the firing notification (resolved alerts only, when known).
        v.insert("firingSent".into(), json!(a.firing_sent_at.is_some()));
        // Only when the first notification came before the end: one that came after it (a
        // late or replayed firing notification) has no span to show, and a clamped `0s`
        // would read as an instant recovery.
        if let Some(first) = a.first_notified_at
            && first <= end
        {
            let secs = (end - first).num_seconds();
            v.insert(
                "notifiedDuration".into(),
                json!(humanize(secs, self.locale)),
            );
            v.insert("notifiedDurationSeconds".into(), json!(secs));
        }
        Value::Object(v)
    }
}

/// Most alerts of each status in a [`Templates::bounded_context`].
pub const BOUNDED_ALERTS: usize = 128;

/// Sets, in a context made from some or all of `n`'s alerts, what describes the whole group:
/// `alertnames` (the distinct `alertname` labels, comma-separated), `alertCount`,
/// `firingCount` and `resolvedCount`.
pub fn describe_group(ctx: &mut Value, n: &Notification) {
    let Value::Object(root) = ctx else {
        return;
    };
    let mut names: Vec<&str> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for a in &n.alerts {
        if !a.name().is_empty() && seen.insert(a.name()) {
            names.push(a.name());
        }
    }
    let firing = n.firing().count();
    root.insert("alertnames".into(), json!(names.join(", ")));
    root.insert("alertCount".into(), json!(n.alerts.len()));
    root.insert("firingCount".into(), json!(firing));
    root.insert("resolvedCount".into(), json!(n.alerts.len() - firing));
}

/// The context's URL fields: only `http`/`https` values reach a template under these names.
pub const URL_FIELDS: &[&str] = &[
    "generatorURL",
    "silenceURL",
    "dashboardURL",
    "panelURL",
    "externalURL",
];

/// Where the context keeps the URL fields as the payload sent them, for `{{raw_url "name"}}`.
const RAW_URLS: &str = "__raw_urls";

/// `s` trimmed, when it is an absolute `http`/`https` URL with no control characters; `None`
/// for every other scheme (`javascript:`, `data:`, `vbscript:`, …, whatever their case or the
/// whitespace around them) and for relative or scheme-less text.
pub fn safe_url(s: &str) -> Option<&str> {
    let t = s.trim();
    if t.chars().any(char::is_control) {
        return None;
    }
    let lower = t.get(..8).unwrap_or(t).to_ascii_lowercase();
    let host_starts = if lower.starts_with("https://") {
        8
    } else if lower.starts_with("http://") {
        7
    } else {
        return None;
    };
    // "http://" alone, or "http:///x", names no host.
    match t[host_starts..].chars().next() {
        None | Some('/') => None,
        Some(_) => Some(t),
    }
}

/// Replaces each URL field of a context object by its safe form ("" when it is not http(s)),
/// keeping what the payload sent under [`RAW_URLS`].
fn keep_safe_urls(obj: &mut Map<String, Value>) {
    let mut raw = Map::new();
    for key in URL_FIELDS {
        if let Some(Value::String(s)) = obj.get_mut(*key) {
            raw.insert((*key).to_string(), Value::String(s.clone()));
            *s = safe_url(s).unwrap_or_default().to_string();
        }
    }
    obj.insert(RAW_URLS.into(), Value::Object(raw));
}

/// Text made safe for HTML element content and (double- or single-) quoted attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text made inert in markdown: no link, image, autolink or HTML tag can start in it, and it
/// cannot close a link or a code span around it. Emphasis characters are left alone (they can
/// only change how the text looks).
pub fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '[' | ']' | '`' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

/// Text for inside a markdown code span: backticks (which would end it) become `'`, and line
/// breaks (which would end a line of markdown) spaces.
pub fn md_code(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '`' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// A markdown link target: the URL when it is http(s) (else ""), with every character that
/// could end the target or the link percent-encoded.
pub fn md_url(s: &str) -> String {
    let Some(u) = safe_url(s) else {
        return String::new();
    };
    let mut out = String::with_capacity(u.len());
    for c in u.chars() {
        match c {
            ' ' => out.push_str("%20"),
            '"' => out.push_str("%22"),
            '\'' => out.push_str("%27"),
            '(' => out.push_str("%28"),
            ')' => out.push_str("%29"),
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            '[' => out.push_str("%5B"),
            '\\' => out.push_str("%5C"),
            ']' => out.push_str("%5D"),
            '`' => out.push_str("%60"),
            c => out.push(c),
        }
    }
    out
}

fn template_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    file.strip_suffix(".hbs").map(str::to_string)
}

/// The localized word for a status.
pub fn status_text(locale: Locale, s: Status) -> &'static str {
    match (locale, s) {
        (Locale::ZhCn, Status::Firing) => "告警",
        (Locale::ZhCn, Status::Resolved) => "已恢复",
        (Locale::En, Status::Firing) => "FIRING",
        (Locale::En, Status::Resolved) => "RESOLVED",
    }
}

/// A duration in its two largest units: `1小时5分钟` / `1h5m`.
pub fn humanize(secs: i64, locale: Locale) -> String {
    let units: [(i64, &str, &str); 4] = [
        (86_400, "天", "d"),
        (3_600, "小时", "h"),
        (60, "分钟", "m"),
        (1, "秒", "s"),
    ];
    let mut rest = secs.max(0);
    let mut parts = Vec::new();
    for (size, zh, en) in units {
        if rest >= size || (size == 1 && parts.is_empty()) {
            let n = rest / size;
            rest %= size;
            parts.push(match locale {
                Locale::ZhCn => format!("{n}{zh}"),
                Locale::En => format!("{n}{en}"),
            });
        } else if !parts.is_empty() {
            // Keep the two units adjacent: "1h" then "0m" would be noise, so stop.
            break;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.concat()
}

/// A helper computed from its parameters' values, usable as a subexpression.
struct ValueHelper<F>(&'static str, F);

impl<F> HelperDef for ValueHelper<F>
where
    F: Fn(&[&Value], &Map<String, Value>) -> Result<Value, String> + Send + Sync,
{
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, handlebars::RenderError> {
        let params: Vec<&Value> = h.params().iter().map(|p| p.value()).collect();
        budget::charge(budget::helper_cost(params.iter().copied()))
            .map_err(RenderErrorReason::Other)?;
        let hash: Map<String, Value> = h
            .hash()
            .iter()
            .map(|(k, v)| (k.to_string(), v.value().clone()))
            .collect();
        (self.1)(&params, &hash)
            .map(ScopedJson::Derived)
            .map_err(|m| RenderErrorReason::Other(format!("{}: {m}", self.0)).into())
    }
}

fn register<F>(hb: &mut Handlebars<'static>, name: &'static str, f: F)
where
    F: Fn(&[&Value], &Map<String, Value>) -> Result<Value, String> + Send + Sync + 'static,
{
    hb.register_helper(name, Box::new(ValueHelper(name, f)));
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        // 1.0 from a JSON float reads better as 1.
        Value::Number(n)
            if n.as_f64()
                .is_some_and(|f| f.fract() == 0.0 && f.abs() < 1e15) =>
        {
            format!("{}", n.as_f64().unwrap_or_default() as i64)
        }
        other => other.to_string(),
    }
}

fn parse_time(v: &Value) -> Option<DateTime<FixedOffset>> {
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s).ok(),
        Value::Number(n) => n
            .as_i64()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .map(|d| d.fixed_offset()),
        _ => None,
    }
}

/// `{{html text}}` escapes its parameter; `{{#html}}…{{/html}}` escapes what the block renders
/// (for partials such as `{{> chatops.ref}}` inside an HTML template).
struct HtmlHelper;

impl HelperDef for HtmlHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn handlebars::Output,
    ) -> handlebars::HelperResult {
        let text = match h.template() {
            Some(t) => {
                // Bounded like the output it goes to.
                let mut inner = budget::BoundedText::default();
                t.render(r, ctx, rc, &mut inner)?;
                inner.0
            }
            None => h.param(0).map(|p| as_text(p.value())).unwrap_or_default(),
        };
        out.write(&html_escape(&text))?;
        Ok(())
    }
}

/// `{{raw_url "generatorURL"}}`: the URL field as the payload sent it, whatever its scheme — the
/// knowing opt-out of the context's http(s)-only URL fields. Looks in the current alert, then at
/// the top level.
struct RawUrlHelper;

impl HelperDef for RawUrlHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, handlebars::RenderError> {
        let name = h
            .param(0)
            .and_then(|p| p.value().as_str())
            .filter(|n| URL_FIELDS.contains(n))
            .ok_or_else(|| {
                RenderErrorReason::Other(format!(
                    "raw_url: expects one of {}",
                    URL_FIELDS.join(", ")
                ))
            })?;
        let here = rc.evaluate(ctx, &format!("{RAW_URLS}.{name}"))?;
        let found = match here.as_json() {
            Value::String(s) => Some(s.clone()),
            _ => ctx
                .data()
                .get(RAW_URLS)
                .and_then(|m| m.get(name))
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        Ok(ScopedJson::Derived(json!(found.unwrap_or_default())))
    }
}

fn register_helpers(hb: &mut Handlebars<'static>, tz: Tz, locale: Locale) {
    hb.register_helper(budget::STEP_HELPER, Box::new(budget::StepHelper));
    hb.register_helper("html", Box::new(HtmlHelper));
    hb.register_helper("raw_url", Box::new(RawUrlHelper));
    // {{safe_url x}}: x when it is an http(s) URL, else "".
    register(hb, "safe_url", |p, _| {
        let s = p.first().map(|v| as_text(v)).unwrap_or_default();
        Ok(json!(safe_url(&s).unwrap_or_default()))
    });
    // {{md_escape text}}: untrusted text in markdown; {{md_code text}}: inside `…`;
    // {{md_url url}}: a link target, http(s) only.
    register(hb, "md_escape", |p, _| {
        Ok(json!(md_escape(
            &p.first().map(|v| as_text(v)).unwrap_or_default()
        )))
    });
    register(hb, "md_code", |p, _| {
        Ok(json!(md_code(
            &p.first().map(|v| as_text(v)).unwrap_or_default()
        )))
    });
    register(hb, "md_url", |p, _| {
        Ok(json!(md_url(
            &p.first().map(|v| as_text(v)).unwrap_or_default()
        )))
    });
    // {{date startsAt}} / {{date startsAt "%H:%M"}}: a time in the configured zone; empty for
    // Go's zero time and for anything that is not a time.
    register(hb, "date", move |p, _| {
        let Some(t) = p.first().and_then(|v| parse_time(v)) else {
            return Ok(json!(""));
        };
        if t.timestamp() <= DateTime::<Utc>::MIN_UTC.timestamp() || chrono::Datelike::year(&t) <= 1
        {
            return Ok(json!(""));
        }
        let fmt = p
            .get(1)
            .and_then(|v| v.as_str())
            .unwrap_or("%Y-%m-%d %H:%M:%S");
        let mut out = String::new();
        use std::fmt::Write;
        write!(out, "{}", t.with_timezone(&tz).format(fmt))
            .map_err(|_| format!("bad format {fmt:?}"))?;
        Ok(json!(out))
    });
    // {{humanize 754}} or {{humanize startsAt endsAt}}: "12分钟34秒" / "12m34s". (Each alert's
    // own `duration` is already humanized in the context.)
    register(hb, "humanize", move |p, _| {
        let secs = match (p.first(), p.get(1)) {
            (Some(a), Some(b)) => match (parse_time(a), parse_time(b)) {
                (Some(a), Some(b)) => (b - a).num_seconds(),
                _ => return Err("expects two RFC 3339 times".into()),
            },
            (Some(Value::Number(n)), None) => n.as_f64().unwrap_or(0.0) as i64,
            _ => return Err("expects seconds or two times".into()),
        };
        Ok(json!(humanize(secs, locale)))
    });
    // {{truncate text 20}}: at most 20 visible characters, ellipsis included.
    register(hb, "truncate", |p, _| {
        let s = p.first().map(|v| as_text(v)).unwrap_or_default();
        let n = p
            .get(1)
            .and_then(|v| v.as_u64())
            .ok_or("expects a length")?;
        Ok(json!(text::truncate(&s, n as usize)))
    });
    // {{oneline text}}: whitespace folded to single spaces.
    register(hb, "oneline", |p, _| {
        Ok(json!(text::one_line(
            &p.first().map(|v| as_text(v)).unwrap_or_default()
        )))
    });
    // {{join list ", "}}: array items or map values, joined.
    register(hb, "join", |p, _| {
        let sep = p.get(1).and_then(|v| v.as_str()).unwrap_or(", ");
        let items: Vec<String> = match p.first() {
            Some(Value::Array(a)) => a.iter().map(as_text).collect(),
            Some(Value::Object(m)) => m.values().map(as_text).collect(),
            Some(other) => vec![as_text(other)],
            None => vec![],
        };
        Ok(json!(items.join(sep)))
    });
    // {{pairs labels}}: `k=v k=v`, sorted by key (labels are sorted maps already).
    register(hb, "pairs", |p, h| {
        let sep = h.get("sep").and_then(|v| v.as_str()).unwrap_or(", ");
        let Some(Value::Object(m)) = p.first() else {
            return Ok(json!(""));
        };
        let items: Vec<String> = m
            .iter()
            .map(|(k, v)| format!("{k}={}", as_text(v)))
            .collect();
        Ok(json!(items.join(sep)))
    });
    register(hb, "upper", |p, _| {
        Ok(json!(
            p.first()
                .map(|v| as_text(v))
                .unwrap_or_default()
                .to_uppercase()
        ))
    });
    register(hb, "lower", |p, _| {
        Ok(json!(
            p.first()
                .map(|v| as_text(v))
                .unwrap_or_default()
                .to_lowercase()
        ))
    });
    register(hb, "title", |p, _| {
        let s = p.first().map(|v| as_text(v)).unwrap_or_default();
        let mut c = s.chars();
        Ok(json!(match c.next() {
            Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
            None => String::new(),
        }))
    });
    register(hb, "trim", |p, _| {
        Ok(json!(
            p.first().map(|v| as_text(v)).unwrap_or_default().trim()
        ))
    });
    // {{replace text "from" "to"}}
    register(hb, "replace", |p, _| {
        let s = p.first().map(|v| as_text(v)).unwrap_or_default();
        let from = p
            .get(1)
            .map(|v| as_text(v))
            .ok_or("expects text, from, to")?;
        let to = p.get(2).map(|v| as_text(v)).unwrap_or_default();
        if from.is_empty() {
            return Ok(json!(s));
        }
        Ok(json!(s.replace(&from, &to)))
    });
    // {{default value "fallback"}}: the fallback when value is missing, null or "".
    register(hb, "default", |p, _| {
        Ok(match p.first() {
            Some(Value::Null) | None => p.get(1).map(|v| (*v).clone()).unwrap_or(Value::Null),
            Some(Value::String(s)) if s.is_empty() => {
                p.get(1).map(|v| (*v).clone()).unwrap_or(Value::Null)
            }
            Some(v) => (*v).clone(),
        })
    });
    // {{#each (exclude labels "alertname" "severity")}}: a label map without those keys.
    register(hb, "exclude", |p, _| {
        let Some(Value::Object(m)) = p.first() else {
            return Ok(json!({}));
        };
        let drop: Vec<&str> = p[1..].iter().filter_map(|v| v.as_str()).collect();
        let out: BTreeMap<&String, &Value> = m
            .iter()
            .filter(|(k, _)| !drop.contains(&k.as_str()))
            .collect();
        Ok(json!(out))
    });
    // {{#each (only labels "instance" "job")}}: a label map with just those keys.
    register(hb, "only", |p, _| {
        let Some(Value::Object(m)) = p.first() else {
            return Ok(json!({}));
        };
        let keep: Vec<&str> = p[1..].iter().filter_map(|v| v.as_str()).collect();
        let out: BTreeMap<&String, &Value> = m
            .iter()
            .filter(|(k, _)| keep.contains(&k.as_str()))
            .collect();
        Ok(json!(out))
    });
}

/// Language of the default templates and of derived words (`status_text`, durations).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub enum Locale {
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

impl Locale {
    pub fn as_str(self) -> &'static str {
        match self {
            Locale::ZhCn => "zh-CN",
            Locale::En => "en",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(locale: Locale) -> Templates {
        Templates::new(chrono_tz::Asia::Shanghai, locale)
    }

    fn render(tpl: &Templates, src: &str, ctx: Value) -> String {
        let mut tpl_owned = Templates::new(tpl.tz, tpl.locale);
        tpl_owned.add("t", src).unwrap();
        tpl_owned.render("t", &ctx).unwrap()
    }

    /// A group of `firing` firing alerts followed by `resolved` resolved ones, named after
    /// their status and number.
    fn group(firing: usize, resolved: usize) -> Notification {
        let base = crate::webhook::sample_notification();
        let mut n = base.without_alerts();
        for i in 0..firing + resolved {
            let mut a = base.alerts[0].clone();
            a.status = if i < firing {
                Status::Firing
            } else {
                Status::Resolved
            };
            a.labels
                .insert("alertname".into(), format!("{}{i}", a.status.as_str()));
            n.alerts.push(a);
        }
        n
    }

    #[test]
    fn a_bounded_context_holds_the_first_alerts_of_each_status_and_counts_the_group() {
        let tpl = t(Locale::En);
        let now = Utc::now();
        let src = "{{len alerts}} {{len firing}} {{len resolved}} {{alertCount}} {{firingCount}} {{resolvedCount}} {{alerts.0.labels.alertname}} {{resolved.0.labels.alertname}}";
        let n = group(1000, 200);
        assert_eq!(
            render(&tpl, src, tpl.bounded_context(&n, now)),
            "256 128 128 1200 1000 200 firing0 resolved1000"
        );
        assert_eq!(
            render(&tpl, src, tpl.context(&n, now)),
            "1200 1000 200 1200 1000 200 firing0 resolved1000"
        );
        // The names are the whole group's.
        let names = render(&tpl, "{{alertnames}}", tpl.bounded_context(&n, now));
        assert!(names.ends_with("resolved1199"), "{names}");
        assert_eq!(names.split(", ").count(), 1200);
        // A small group gets its whole context.
        let n = group(BOUNDED_ALERTS, 0);
        assert_eq!(tpl.bounded_context(&n, now), tpl.context(&n, now));
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

    #[test]
    fn shipped_templates_compile_in_both_locales() {
        for loc in [Locale::ZhCn, Locale::En] {
            let tpl = t(loc);
            for (l, name, src) in DEFAULTS {
                if *l == loc.as_str() {
                    let mut fresh = Templates::new(tpl.tz, loc);
                    fresh.add(name, src).unwrap();
                    assert!(tpl.has(name), "{name}");
                }
            }
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
                    out.contains("Runbook: ")
                        && out.contains("restart")
                        && out.contains("the pool"),
                    "{loc:?} {name}: {out}"
                );
            }
        }
    }

    #[test]
    fn humanized_durations() {
        assert_eq!(humanize(0, Locale::En), "0s");
        assert_eq!(humanize(45, Locale::ZhCn), "45秒");
        assert_eq!(humanize(720, Locale::ZhCn), "12分钟");
        assert_eq!(humanize(720, Locale::En), "12m");
        assert_eq!(humanize(3_900, Locale::En), "1h5m");
        assert_eq!(humanize(3_605, Locale::En), "1h");
        assert_eq!(
            humanize(2 * 86_400 + 3 * 3_600 + 59, Locale::ZhCn),
            "2天3小时"
        );
    }

    #[test]
    fn helpers() {
        let tpl = t(Locale::En);
        let ctx = json!({
            "t": "2026-01-01T00:00:00Z", "zero": "0001-01-01T00:00:00Z",
            "labels": {"alertname": "X", "instance": "n1", "severity": "critical"},
            "list": ["a", "b"], "long": "告警告警告警告警告警告警"
        });
        assert_eq!(
            render(&tpl, "{{date t}}", ctx.clone()),
            "2026-01-01 08:00:00"
        );
        assert_eq!(
            render(&tpl, "{{date t \"%H:%M\"}}|{{date zero}}", ctx.clone()),
            "08:00|"
        );
        assert_eq!(render(&tpl, "{{humanize 754}}", ctx.clone()), "12m34s");
        assert_eq!(
            render(&tpl, "{{humanize t \"2026-01-01T01:00:00Z\"}}", ctx.clone()),
            "1h"
        );
        assert_eq!(
            render(&tpl, "{{truncate long 5}}", ctx.clone()),
            "告警告警…"
        );
        assert_eq!(render(&tpl, "{{join list \"+\"}}", ctx.clone()), "a+b");
        assert_eq!(
            render(
                &tpl,
                "{{pairs (exclude labels \"alertname\")}}",
                ctx.clone()
            ),
            "instance=n1, severity=critical"
        );
        assert_eq!(
            render(
                &tpl,
                "{{#each (only labels \"instance\")}}{{@key}}:{{this}}{{/each}}",
                ctx.clone()
            ),
            "instance:n1"
        );
        assert_eq!(
            render(
                &tpl,
                "{{upper labels.severity}} {{title labels.instance}}",
                ctx.clone()
            ),
            "CRITICAL N1"
        );
        assert_eq!(
            render(&tpl, "{{default labels.missing \"none\"}}", ctx.clone()),
            "none"
        );
        assert_eq!(
            render(&tpl, "{{replace \"a-b\" \"-\" \"_\"}}", ctx.clone()),
            "a_b"
        );
        assert_eq!(
            render(&tpl, "<b>{{labels.alertname}}&</b>", ctx),
            "<b>X&</b>"
        );
    }

    #[test]
    fn only_http_urls_are_safe() {
        for ok in [
            "http://a.example/x",
            "HTTPS://A.example",
            " https://a.example/?q=\"> ",
        ] {
            assert_eq!(safe_url(ok), Some(ok.trim()), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            " \tjavascript:alert(1)",
            "java\nscript:alert(1)",
            "data:text/html,x",
            "vbscript:x",
            "//evil.example",
            "/relative",
            "http:/x",
            "http://",
            "https:///x",
            "https://a.example/\u{0}",
            "\u{1b}[31mhttp://x",
            "",
        ] {
            assert_eq!(safe_url(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn escaping_helpers() {
        assert_eq!(
            html_escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(
            md_escape("[x](javascript:y) \\ <b> `c` a_b"),
            "\\[x\\](javascript:y) \\\\ &lt;b&gt; \\`c\\` a_b"
        );
        assert_eq!(md_code("a`b\nc"), "a'b c");
        assert_eq!(md_url("javascript:x"), "");
        assert_eq!(
            md_url("https://a.example/(x) [y]\"<z>'"),
            "https://a.example/%28x%29%20%5By%5D%22%3Cz%3E%27"
        );
    }

    #[test]
    fn url_fields_are_http_only_unless_raw_url_is_asked_for() {
        let tpl = t(Locale::En);
        let ctx = json!({
            "externalURL": "javascript:top",
            "__raw_urls": {"externalURL": "javascript:top"},
            "alerts": [{"generatorURL": "", "__raw_urls": {"generatorURL": "javascript:a"}}]
        });
        assert_eq!(
            render(
                &tpl,
                "{{#each alerts}}{{raw_url \"generatorURL\"}}|{{raw_url \"externalURL\"}}{{/each}}",
                ctx.clone()
            ),
            "javascript:a|javascript:top"
        );
        let mut root = Map::new();
        root.insert("externalURL".into(), json!(" javascript:x"));
        keep_safe_urls(&mut root);
        assert_eq!(root["externalURL"], json!(""));
        assert_eq!(root[RAW_URLS]["externalURL"], json!(" javascript:x"));
        let mut tpl2 = Templates::new(tpl.tz, tpl.locale);
        assert!(tpl2.add("bad", "{{raw_url \"labels\"}}").is_ok());
        assert!(tpl2.render("bad", &json!({})).is_err());
        assert_eq!(
            render(
                &tpl,
                "{{#html}}<{{x}}>{{/html}}|{{html x}}",
                json!({"x": "<i>"})
            ),
            "&lt;&lt;i&gt;&gt;|&lt;i&gt;"
        );
    }

    #[test]
    fn zh_locale_durations_in_templates() {
        let tpl = t(Locale::ZhCn);
        assert_eq!(
            render(&tpl, "持续 {{humanize 720}}", json!({})),
            "持续 12分钟"
        );
    }
}
