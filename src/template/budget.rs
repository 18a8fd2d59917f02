//! What a template may cost, bounded by construction: handlebars cannot be interrupted and a
//! thread cannot be killed, so a template that could overflow the stack or run for minutes
//! must be refused before it renders, and one that renders must stop when it has used its share.
//!
//! Three checks, in the order a template meets them:
//! - [`check_source`]: the raw text, before the parser sees it (the parser recurses too): blocks
//!   and subexpressions nested at most [`MAX_NESTING`] deep.
//! - [`analyze`]: the parsed templates together, before any renders: no partial includes
//!   itself, directly, through others or as an inline partial; blocks and partials nested at
//!   most [`MAX_NESTING`] deep along any path; at most [`MAX_EXPANDED`] elements once every
//!   partial is written out (a chain of partials that each include the next twice doubles).
//! - [`render`]: while one renders: every block body and every partial entered (each `each`
//!   iteration, each `with`, each branch taken) charges its size to a budget of
//!   [`MAX_STEPS`], helpers charge the size of what they are given, and the output stops at
//!   [`MAX_OUTPUT_BYTES`].
//!
//! The render budget is counted by a step the templates are given when they are compiled
//! ([`instrument`]): a hidden `{{__budget}}` at the start of every body, so no built-in helper
//! has to be replaced.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use handlebars::template::{Parameter, TemplateElement};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderErrorReason, Template,
};
use serde_json::Value;

/// How deep blocks (`{{#if}}`, `{{#each}}`, …), subexpressions and partials may nest along any
/// path a render can take. The shipped templates use at most 6.
pub const MAX_NESTING: usize = 32;
/// Most elements (text, expressions, blocks, partial calls) a template may become once its
/// partials are written out where they are called, loops counted once.
pub const MAX_EXPANDED: u64 = 100_000;
/// Most render steps of one template: each block body or partial entered costs its number of
/// elements, a helper 1 plus the items of the lists and maps it is given. A 10,000-alert group
/// through the shipped templates uses well under a tenth of it.
pub const MAX_STEPS: u64 = 4_000_000;
/// Most bytes one template renders.
pub const MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

/// The helper every body starts with once instrumented; its one parameter is the body's size.
pub(super) const STEP_HELPER: &str = "__budget";

/// The raw text's nesting, checked before parsing: blocks opened by `{{#…}}` or `{{^…}}`
/// and parentheses inside a `{{…}}`. Comments are skipped. An error says what is too deep.
pub fn check_source(src: &str) -> Result<(), String> {
    let b = src.as_bytes();
    let (mut i, mut depth, mut deepest_block, mut deepest_paren) = (0usize, 0usize, 0usize, 0usize);
    while let Some(at) = find(b, i, b"{{") {
        i = at + 2;
        while i < b.len() && (b[i] == b'{' || b[i] == b'~') {
            i += 1;
        }
        // A comment runs to its own end and opens nothing.
        if b.get(i) == Some(&b'!') {
            let end: &[u8] = if b[i..].starts_with(b"!--") {
                b"--}}"
            } else {
                b"}}"
            };
            i = find(b, i, end).map_or(b.len(), |e| e + end.len());
            continue;
        }
        match b.get(i) {
            Some(b'#') => depth += 1,
            // `{{^}}` alone is an else; `{{^name}}` opens an inverse block.
            Some(b'^') if !matches!(b.get(i + 1), Some(b'}' | b'~')) => depth += 1,
            Some(b'/') => depth = depth.saturating_sub(1),
            _ => {}
        }
        deepest_block = deepest_block.max(depth);
        let end = find(b, i, b"}}").unwrap_or(b.len());
        let mut paren = 0usize;
        for &c in &b[i..end] {
            match c {
                b'(' => {
                    paren += 1;
                    deepest_paren = deepest_paren.max(paren);
                }
                b')' => paren = paren.saturating_sub(1),
                _ => {}
            }
        }
        i = end;
    }
    if deepest_block > MAX_NESTING {
        return Err(format!(
            "blocks are nested {deepest_block} deep; the limit is {MAX_NESTING}"
        ));
    }
    if deepest_paren > MAX_NESTING {
        return Err(format!(
            "subexpressions are nested {deepest_paren} deep; the limit is {MAX_NESTING}"
        ));
    }
    Ok(())
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Puts a `{{__budget N}}` at the start of the template and of every body inside it (block,
/// else branch, inline partial, partial block), N being the body's element count: entering a
/// body is what each iteration, branch and partial costs.
pub fn instrument(t: &mut Template) {
    for e in t.elements.iter_mut() {
        match e {
            TemplateElement::HelperBlock(h) => {
                if let Some(t) = h.template.as_mut() {
                    instrument(t);
                }
                if let Some(t) = h.inverse.as_mut() {
                    instrument(t);
                }
            }
            TemplateElement::DecoratorBlock(d)
            | TemplateElement::PartialBlock(d)
            | TemplateElement::PartialExpression(d) => {
                if let Some(t) = d.template.as_mut() {
                    instrument(t);
                }
            }
            _ => {}
        }
    }
    let cost = t.elements.len() as u64 + 1;
    if let Some(step) = step_element(cost) {
        t.elements.insert(0, step);
        if !t.mapping.is_empty() {
            let first = t.mapping[0].clone();
            t.mapping.insert(0, first);
        }
    }
}

/// `{{__budget cost}}` as a parsed element.
fn step_element(cost: u64) -> Option<TemplateElement> {
    let mut t = Template::compile(&format!("{{{{{STEP_HELPER} 0}}}}")).ok()?;
    let mut e = t.elements.pop()?;
    if let TemplateElement::Expression(h) = &mut e {
        h.params = vec![Parameter::Literal(Value::from(cost))];
    }
    Some(e)
}

/// What one partial name stands for, as far as cost goes.
#[derive(Clone, Copy, Default)]
struct Cost {
    depth: usize,
    size: u64,
}

/// The registered templates that cannot be rendered safely, each with why: a partial cycle
/// reachable from it, or nesting or expanded size over the limits. Inline partials are taken
/// by name wherever they are defined (a call may reach any of them), which can only refuse
/// more, never less.
pub fn analyze(templates: &HashMap<String, Template>) -> BTreeMap<String, String> {
    let mut inline: HashMap<String, Vec<&Template>> = HashMap::new();
    for t in templates.values() {
        collect_inline(t, &mut inline);
    }
    let mut a = Analysis {
        templates,
        inline,
        memo: HashMap::new(),
        stack: Vec::new(),
    };
    let mut problems = BTreeMap::new();
    let mut names: Vec<&String> = templates.keys().collect();
    names.sort();
    for name in names {
        let verdict = a.node(name).and_then(|c| {
            if c.depth > MAX_NESTING {
                Err(format!(
                    "blocks and partials are nested {} deep; the limit is {MAX_NESTING}",
                    c.depth
                ))
            } else if c.size > MAX_EXPANDED {
                Err(format!(
                    "its partials expand to more than {MAX_EXPANDED} elements (the limit)"
                ))
            } else {
                Ok(())
            }
        });
        if let Err(e) = verdict {
            problems.insert(name.clone(), e);
        }
    }
    problems
}

fn collect_inline<'a>(t: &'a Template, out: &mut HashMap<String, Vec<&'a Template>>) {
    for e in &t.elements {
        match e {
            TemplateElement::HelperBlock(h) => {
                for t in [&h.template, &h.inverse].into_iter().flatten() {
                    collect_inline(t, out);
                }
            }
            TemplateElement::DecoratorBlock(d) => {
                if let Some(body) = &d.template {
                    if d.name.as_name() == Some("inline")
                        && let Some(name) = d.params.first().and_then(literal_name)
                    {
                        out.entry(name).or_default().push(body);
                    }
                    collect_inline(body, out);
                }
            }
            TemplateElement::PartialBlock(d) | TemplateElement::PartialExpression(d) => {
                if let Some(body) = &d.template {
                    collect_inline(body, out);
                }
            }
            _ => {}
        }
    }
}

/// A name written out: `x.a`, `"x.a"`.
fn literal_name(p: &Parameter) -> Option<String> {
    match p {
        Parameter::Literal(Value::String(s)) => Some(s.clone()),
        Parameter::Name(_) | Parameter::Path(_) => p.as_name().map(str::to_string),
        _ => None,
    }
}

struct Analysis<'a> {
    templates: &'a HashMap<String, Template>,
    inline: HashMap<String, Vec<&'a Template>>,
    memo: HashMap<String, Result<Cost, String>>,
    stack: Vec<String>,
}

impl Analysis<'_> {
    /// The cost of rendering what a partial name stands for (its template and every inline
    /// partial of that name), or why it must not render.
    fn node(&mut self, name: &str) -> Result<Cost, String> {
        if let Some(r) = self.memo.get(name) {
            return r.clone();
        }
        if let Some(at) = self.stack.iter().position(|n| n == name) {
            let mut path: Vec<&str> = self.stack[at..].iter().map(String::as_str).collect();
            path.push(name);
            return Err(format!(
                "partials include each other without end: {}",
                path.join(" → ")
            ));
        }
        self.stack.push(name.to_string());
        let bodies: Vec<&Template> = self
            .templates
            .get(name)
            .into_iter()
            .chain(self.inline.get(name).into_iter().flatten().copied())
            .collect();
        let mut cost = Ok(Cost::default());
        for t in bodies {
            cost = cost.and_then(|c| {
                let b = self.body(t)?;
                Ok(Cost {
                    depth: c.depth.max(b.depth),
                    size: c.size.max(b.size),
                })
            });
            if cost.is_err() {
                break;
            }
        }
        self.stack.pop();
        self.memo.insert(name.to_string(), cost.clone());
        cost
    }

    fn body(&mut self, t: &Template) -> Result<Cost, String> {
        let mut c = Cost::default();
        for e in &t.elements {
            let (depth, size) = match e {
                TemplateElement::HelperBlock(h) => {
                    let mut inner = Cost::default();
                    for t in [&h.template, &h.inverse].into_iter().flatten() {
                        let b = self.body(t)?;
                        inner.depth = inner.depth.max(b.depth);
                        inner.size = inner.size.saturating_add(b.size);
                    }
                    (inner.depth + 1, inner.size.saturating_add(1))
                }
                TemplateElement::PartialExpression(d) | TemplateElement::PartialBlock(d) => {
                    let Some(name) = literal_name(&d.name) else {
                        return Err(
                            "a partial's name must be written out: `{{> (…)}}` is not supported"
                                .into(),
                        );
                    };
                    // A partial block's own body renders before the partial, in this template.
                    let block = match &d.template {
                        Some(t) => self.body(t)?,
                        None => Cost::default(),
                    };
                    let called = if name == "@partial-block" {
                        Cost::default()
                    } else {
                        self.node(&name)?
                    };
                    (
                        1 + called.depth.max(block.depth),
                        called.size.saturating_add(block.size).saturating_add(1),
                    )
                }
                // An inline partial costs where it is called.
                _ => (0, 1),
            };
            c.depth = c.depth.max(depth);
            c.size = c.size.saturating_add(size);
        }
        Ok(c)
    }
}

/// Why a render stopped, kept where the render runs.
struct Budget {
    steps: u64,
    stopped: Option<String>,
}

thread_local! {
    static BUDGET: RefCell<Option<Budget>> = const { RefCell::new(None) };
}

/// Charges `steps` to the render running on this thread; an error once it has used
/// [`MAX_STEPS`]. Outside a [`render`] nothing is counted.
pub fn charge(steps: u64) -> Result<(), String> {
    BUDGET.with(|b| {
        let mut b = b.borrow_mut();
        let Some(b) = b.as_mut() else {
            return Ok(());
        };
        if let Some(why) = &b.stopped {
            return Err(why.clone());
        }
        b.steps = b.steps.saturating_add(steps);
        if b.steps > MAX_STEPS {
            let why =
                format!("stopped after {MAX_STEPS} render steps (the limit for one template)");
            b.stopped = Some(why.clone());
            return Err(why);
        }
        Ok(())
    })
}

fn stop(why: String) {
    BUDGET.with(|b| {
        if let Some(b) = b.borrow_mut().as_mut() {
            b.stopped.get_or_insert(why);
        }
    });
}

/// The output of one render, refusing to grow past [`MAX_OUTPUT_BYTES`].
pub struct Bounded(pub Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_OUTPUT_BYTES {
            let why = format!(
                "stopped at {MAX_OUTPUT_BYTES} bytes of output (the limit for one template)"
            );
            stop(why.clone());
            return Err(std::io::Error::other(why));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Text rendered inside a helper (a block it escapes), bounded like [`Bounded`].
#[derive(Default)]
pub struct BoundedText(pub String);

impl handlebars::Output for BoundedText {
    fn write(&mut self, seg: &str) -> std::io::Result<()> {
        if self.0.len() + seg.len() > MAX_OUTPUT_BYTES {
            let why = format!(
                "stopped at {MAX_OUTPUT_BYTES} bytes of output (the limit for one template)"
            );
            stop(why.clone());
            return Err(std::io::Error::other(why));
        }
        self.0.push_str(seg);
        Ok(())
    }
}

/// Runs one render with a fresh budget on this thread. `Err(Some(why))` when a limit stopped
/// it, `Err(None)` on any other error (the caller reports handlebars' own).
pub fn render<T, E>(f: impl FnOnce() -> Result<T, E>) -> Result<T, (Option<String>, E)> {
    let outer = BUDGET.with(|b| {
        b.borrow_mut().replace(Budget {
            steps: 0,
            stopped: None,
        })
    });
    let result = f();
    let stopped = BUDGET.with(|b| {
        let mine = std::mem::replace(&mut *b.borrow_mut(), outer);
        mine.and_then(|m| m.stopped)
    });
    result.map_err(|e| (stopped, e))
}

/// Renders moved off the async workers at most at once. Each move hands the worker's other
/// tasks to a thread of tokio's blocking pool, which lives on for seconds with its own
/// allocator heap: a burst of deliveries rendering at once grew the process by 2 MB a thread
/// (27 threads, 68 MB) before the cap. Past it, a render runs where it is.
const MAX_OFF_THE_WORKERS: usize = 2;

static OFF_THE_WORKERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One render counted against [`MAX_OFF_THE_WORKERS`] while it lives.
struct Off;

impl Drop for Off {
    fn drop(&mut self) {
        OFF_THE_WORKERS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Runs `f`, a render, where it does not hold up the service's other work: on a worker of the
/// multi-threaded runtime, tokio moves that worker's other tasks elsewhere while it runs
/// (at most [`MAX_OFF_THE_WORKERS`] at once).
pub fn off_the_async_workers<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            let _off = Off;
            if OFF_THE_WORKERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                < MAX_OFF_THE_WORKERS
            {
                tokio::task::block_in_place(f)
            } else {
                f()
            }
        }
        _ => f(),
    }
}

/// `{{__budget N}}`: charges N steps; renders nothing.
pub(super) struct StepHelper;

impl HelperDef for StepHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        _: &mut dyn handlebars::Output,
    ) -> handlebars::HelperResult {
        let n = h.param(0).and_then(|p| p.value().as_u64()).unwrap_or(1);
        charge(n).map_err(|why| RenderErrorReason::Other(why).into())
    }
}

/// What a helper's parameters cost: 1, plus the items of every list and map among them.
pub fn helper_cost<'a>(params: impl IntoIterator<Item = &'a Value>) -> u64 {
    params.into_iter().fold(1u64, |n, v| {
        n.saturating_add(match v {
            Value::Array(a) => a.len() as u64,
            Value::Object(m) => m.len() as u64,
            _ => 0,
        })
    })
}

#[cfg(test)]
mod tests {

    use crate::template::{Locale, Templates};
    use serde_json::json;

    fn templates() -> Templates {
        Templates::new(chrono_tz::Asia::Shanghai, Locale::En)
    }

    fn refused(t: &Templates, name: &str) -> String {
        t.refused()
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| e.message)
            .unwrap_or_default()
    }

    #[test]
    fn partials_that_include_each_other_are_refused_and_never_render() {
        let mut t = templates();
        t.add("x.a", "{{> x.b}}").unwrap();
        t.add("x.b", "{{> x.a}}").unwrap();
        t.add("wxpusher.summary", "{{> x.a}}").unwrap();
        let why = refused(&t, "wxpusher.summary");
        assert!(why.contains("include each other"), "{why}");
        let e = t.render("wxpusher.summary", &json!({})).unwrap_err();
        assert_eq!(e.name, "wxpusher.summary");
        assert!(e.message.contains("x.a → x.b → x.a"), "{e}");
    }

    #[test]
    fn an_inline_partial_calling_itself_is_refused() {
        let mut t = templates();
        t.add("r", r#"{{#*inline "r"}}x{{> r}}{{/inline}}{{> r}}"#)
            .unwrap();
        let e = t.render("r", &json!({})).unwrap_err();
        assert!(e.message.contains("include each other"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!("{}x{}", "{{#if true}}".repeat(1000), "{{/if}}".repeat(1000));
        let e = templates().add("deep", &deep).unwrap_err();
        assert_eq!(e.name, "deep");
        assert!(
            e.message.contains("nested 1000 deep; the limit is 32"),
            "{e}"
        );
        let parens = format!("{{{{x {}y{}}}}}", "(a ".repeat(100), ")".repeat(100));
        let e = templates().add("p", &parens).unwrap_err();
        assert!(
            e.message.contains("subexpressions are nested 100 deep"),
            "{e}"
        );
        // At the limit it compiles and renders.
        let ok = format!("{}x{}", "{{#if true}}".repeat(32), "{{/if}}".repeat(32));
        let mut t = templates();
        t.add("ok", &ok).unwrap();
        assert_eq!(t.render("ok", &json!({})).unwrap(), "x");
    }

    #[test]
    fn nesting_through_partials_counts_along_the_path() {
        let mut t = templates();
        let twenty = format!("{}x{}", "{{#if true}}".repeat(20), "{{/if}}".repeat(20));
        t.add("p", &twenty).unwrap();
        t.add(
            "q",
            &format!(
                "{}{{{{> p}}}}{}",
                "{{#if true}}".repeat(20),
                "{{/if}}".repeat(20)
            ),
        )
        .unwrap();
        assert!(
            refused(&t, "q").contains("the limit is 32"),
            "{:?}",
            t.refused()
        );
        assert!(refused(&t, "p").is_empty());
    }

    #[test]
    fn doubling_partials_are_refused_by_their_expanded_size() {
        let mut t = templates();
        t.add("d20", "xx").unwrap();
        for i in (0..20).rev() {
            t.add(
                &format!("d{i}"),
                &format!("{{{{> d{n}}}}}{{{{> d{n}}}}}", n = i + 1),
            )
            .unwrap();
        }
        let e = t.render("d0", &json!({})).unwrap_err();
        assert!(e.message.contains("more than 100000 elements"), "{e}");
        // A few levels are fine.
        assert_eq!(t.render("d17", &json!({})).unwrap(), "xx".repeat(8));
    }

    #[test]
    fn a_render_stops_at_its_step_budget() {
        let alerts: Vec<_> = (0..400).map(|i| json!({ "i": i })).collect();
        let mut t = templates();
        t.add(
            "each3",
            "{{#each alerts}}{{#each ../alerts}}{{#each ../../alerts}}{{/each}}{{/each}}{{/each}}",
        )
        .unwrap();
        let e = t.render("each3", &json!({ "alerts": alerts })).unwrap_err();
        assert_eq!(e.name, "each3");
        assert!(e.message.contains("4000000 render steps"), "{e}");
    }

    #[test]
    fn a_render_stops_at_its_output_limit() {
        let mut t = templates();
        let big = "x".repeat(1024 * 1024);
        t.add("big", "{{#each list}}{{../big}}{{/each}}").unwrap();
        let e = t
            .render("big", &json!({ "big": big, "list": vec![0; 40] }))
            .unwrap_err();
        assert!(e.message.contains("bytes of output"), "{e}");
        // HTML-escaped blocks are bounded too.
        t.add(
            "html",
            "{{#html}}{{#each list}}{{../big}}{{/each}}{{/html}}",
        )
        .unwrap();
        let e = t
            .render("html", &json!({ "big": big, "list": vec![0; 40] }))
            .unwrap_err();
        assert!(e.message.contains("bytes of output"), "{e}");
    }

    #[test]
    fn instrumented_templates_render_as_written() {
        let mut t = templates();
        t.add(
            "t",
            "{{#if a}}A{{else if b}}B{{else}}C{{/if}}\n{{#each l}}{{@index}}{{#unless @last}},{{/unless}}{{/each}}\n{{#with o}}{{k}}{{/with}}{{#*inline \"i\"}}[{{this}}]{{/inline}}{{> i}}",
        )
        .unwrap();
        let out = t
            .render("t", &json!({"b": true, "l": [1, 2, 3], "o": {"k": "v"}}))
            .unwrap();
        assert_eq!(out, "B\n0,1,2\nv[[object]]");
    }

    #[test]
    fn a_dynamic_partial_name_is_refused() {
        let mut t = templates();
        t.add("dyn", "{{> (lower n)}}").unwrap();
        assert!(refused(&t, "dyn").contains("must be written out"));
    }

    #[test]
    fn comments_do_not_count_as_nesting() {
        let src = format!("{{{{!-- {} --}}}}ok", "{{#if}}".repeat(100));
        let mut t = templates();
        t.add("c", &src).unwrap();
        assert_eq!(t.render("c", &json!({})).unwrap(), "ok");
    }
}
