//! Template syntax errors in words: what is wrong (an unclosed `{{`, a block closed by
//! another's end or never closed, …), where (line and column, counted in characters from 1),
//! and the line itself with a caret under the place, once — instead of the parser's grammar
//! rule names. Only the message is made here; compiling stays handlebars'.

use handlebars::{TemplateError, TemplateErrorReason};

/// `line L, column C: what is wrong`, then the line and a caret; without a place, the words
/// alone.
pub fn describe(src: &str, e: &TemplateError) -> String {
    let (what, at) = explain(src, e);
    match at {
        Some((line, column)) => {
            let mut out = format!("line {line}, column {column}: {what}");
            if let Some(shown) = excerpt(src, line, column) {
                out.push('\n');
                out.push_str(&shown);
            }
            out
        }
        None => what,
    }
}

fn explain(src: &str, e: &TemplateError) -> (String, Option<(usize, usize)>) {
    match e.reason() {
        TemplateErrorReason::MismatchingClosedHelper(open, close) => (
            format!(
                "`{{{{/{close}}}}}` closes the block `{{{{#{open}}}}}`: end it with `{{{{/{open}}}}}` first"
            ),
            e.pos(),
        ),
        TemplateErrorReason::MismatchingClosedDecorator(open, close) => (
            format!(
                "`{{{{/{close}}}}}` closes the decorator block `{{{{#*{open}}}}}`: end it with `{{{{/{open}}}}}` first"
            ),
            e.pos(),
        ),
        TemplateErrorReason::InvalidSyntax(expected) => {
            if let Some((what, at)) = unclosed_tag(src).or_else(|| unbalanced_block(src)) {
                return (what, Some(at));
            }
            let found = e.pos().and_then(|(l, c)| {
                src.lines()
                    .nth(l.wrapping_sub(1))?
                    .chars()
                    .nth(c.wrapping_sub(1))
            });
            let found = match found {
                Some(c) => format!("unexpected `{c}`"),
                None => "unexpected end of the template".to_string(),
            };
            match expected_in_words(expected) {
                Some(words) => (format!("{found}, expected {words}"), e.pos()),
                None => (format!("{found}: invalid template syntax"), e.pos()),
            }
        }
        other => (other.to_string(), e.pos()),
    }
}

/// The first tag opened and not closed before the next one opens or the template ends.
fn unclosed_tag(src: &str) -> Option<(String, (usize, usize))> {
    let mut i = 0;
    while let Some(off) = src[i..].find("{{") {
        let start = i + off;
        if src[..start].ends_with('\\') {
            // `\{{` is text.
            i = start + 2;
            continue;
        }
        let rest = &src[start..];
        if rest.starts_with("{{{{") {
            // Raw blocks are rare; their rules are the parser's to tell.
            return None;
        }
        let (open, close) = if rest.starts_with("{{!--") {
            ("{{!--", "--}}")
        } else if rest.starts_with("{{{") {
            ("{{{", "}}}")
        } else {
            ("{{", "}}")
        };
        let body = start + open.len();
        let end = src[body..].find(close).map(|k| body + k);
        let comment = open.starts_with("{{!") || rest.starts_with("{{!");
        let next = (!comment)
            .then(|| src[body..].find("{{").map(|k| body + k))
            .flatten();
        match end {
            Some(e) if next.is_none_or(|n| n > e) => i = e + close.len(),
            _ => {
                return Some((
                    format!("unclosed `{open}`: no `{close}` ends the tag opened here"),
                    line_col(src, start),
                ));
            }
        }
    }
    None
}

/// A block end with no block open, or a block never ended.
fn unbalanced_block(src: &str) -> Option<(String, (usize, usize))> {
    let mut open: Vec<(String, String, usize)> = Vec::new();
    let mut i = 0;
    while let Some(off) = src[i..].find("{{") {
        let start = i + off;
        let body_at = start + 2;
        let Some(len) = src[body_at..].find("}}") else {
            break;
        };
        i = body_at + len + 2;
        let body = src[body_at..body_at + len].trim_matches('~').trim_start();
        let name = |s: &str| s.split_whitespace().next().unwrap_or("").to_string();
        if let Some(rest) = body.strip_prefix("#>") {
            open.push(("#>".into(), name(rest), start));
        } else if let Some(rest) = body.strip_prefix("#*") {
            open.push(("#*".into(), name(rest), start));
        } else if let Some(rest) = body.strip_prefix('#') {
            open.push(("#".into(), name(rest), start));
        } else if let Some(rest) = body.strip_prefix('^')
            && !name(rest).is_empty()
        {
            open.push(("^".into(), name(rest), start));
        } else if let Some(rest) = body.strip_prefix('/') {
            let closing = name(rest);
            if open.pop().is_none() {
                return Some((
                    format!("`{{{{/{closing}}}}}` ends a block that was never opened"),
                    line_col(src, start),
                ));
            }
        }
    }
    let (sigil, name, at) = open.pop()?;
    Some((
        format!("the block `{{{{{sigil}{name}}}}}` is never ended: add `{{{{/{name}}}}}`"),
        line_col(src, at),
    ))
}

/// The parser's `expected a, b, or c` in words, when it names something a person would write.
fn expected_in_words(expected: &str) -> Option<String> {
    let list = expected.strip_prefix("expected ")?;
    let mut words: Vec<&str> = Vec::new();
    for rule in list
        .split([',', ' '])
        .filter(|r| !r.is_empty() && *r != "or")
    {
        let word = match rule {
            "identifier" | "path_inline" | "name" | "reference" => "a name",
            "partial_identifier" => "a partial name",
            "helper_parameter" | "param" | "literal" => "a value",
            "subexpression" => "`(`",
            "trailing_tilde_to_omit_whitespace" => "`}}`",
            "leading_tilde_to_omit_whitespace" => continue,
            // A list of every kind of tag: the template ended too early.
            _ => return None,
        };
        if !words.contains(&word) {
            words.push(word);
        }
    }
    match words.as_slice() {
        [] => None,
        [one] => Some(one.to_string()),
        [init @ .., last] => Some(format!("{} or {last}", init.join(", "))),
    }
}

/// Line and column, both from 1, of a byte offset; the column counts characters.
fn line_col(src: &str, at: usize) -> (usize, usize) {
    let before = &src[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |n| n + 1);
    (line, src[line_start..at].chars().count() + 1)
}

/// Whether a character takes two columns in a terminal (CJK, full-width forms, most emoji).
fn wide(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x1F300..=0x1F64F
        | 0x1F900..=0x1F9FF | 0x20000..=0x3FFFD)
}

/// Characters of the line shown on each side of the column: a long line is cut around it.
const AROUND: usize = 60;

/// The line, numbered, and a caret under the column.
fn excerpt(src: &str, line: usize, column: usize) -> Option<String> {
    let whole = src.lines().nth(line.checked_sub(1)?)?;
    let chars: Vec<char> = whole.chars().collect();
    let at = column.saturating_sub(1);
    let from = at.saturating_sub(AROUND);
    let to = (at + AROUND).min(chars.len());
    let mut text: String = if from < chars.len() {
        chars[from..to.max(from)].iter().collect()
    } else {
        String::new()
    };
    let lead = if from > 0 { "…" } else { "" };
    if to < chars.len() {
        text.push('…');
    }
    let text = format!("{lead}{text}");
    let number = line.to_string();
    let pad = " ".repeat(number.len());
    let mut caret = String::from(if from > 0 { " " } else { "" });
    for c in chars.iter().skip(from).take(at - from) {
        caret.push_str(match *c {
            '\t' => "\t",
            c if wide(c) => "  ",
            _ => " ",
        });
    }
    Some(format!("  {number} | {text}\n  {pad} | {caret}^"))
}

#[cfg(test)]
mod tests {
    fn error(src: &str) -> String {
        let mut hb = handlebars::Handlebars::new();
        let e = hb
            .register_template_string("t", src)
            .expect_err("a syntax error");
        super::describe(src, &e)
    }

    #[test]
    fn syntax_errors_say_what_and_where_with_the_line_and_a_caret() {
        assert_eq!(
            error("[{{status_text] {{alertnames}}"),
            "line 1, column 2: unclosed `{{`: no `}}` ends the tag opened here\n  1 | [{{status_text] {{alertnames}}\n    |  ^"
        );
        assert_eq!(
            error("ok\n  告警 {{ labels.x\nmore"),
            "line 2, column 6: unclosed `{{`: no `}}` ends the tag opened here\n  2 |   告警 {{ labels.x\n    |        ^"
        );
        assert_eq!(
            error("{{#each alerts}}{{name}}{{/each}"),
            "line 1, column 25: unclosed `{{`: no `}}` ends the tag opened here\n  1 | {{#each alerts}}{{name}}{{/each}\n    |                         ^"
        );
        assert_eq!(
            error("{{{raw}}"),
            "line 1, column 1: unclosed `{{{`: no `}}}` ends the tag opened here\n  1 | {{{raw}}\n    | ^"
        );
        assert_eq!(
            error("ok\nsecond {{#if status}}\nno close"),
            "line 2, column 8: the block `{{#if}}` is never ended: add `{{/if}}`\n  2 | second {{#if status}}\n    |        ^"
        );
        assert_eq!(
            error("{{#if x}}a{{/each}}"),
            "line 1, column 11: `{{/each}}` closes the block `{{#if}}`: end it with `{{/if}}` first\n  1 | {{#if x}}a{{/each}}\n    |           ^"
        );
        assert_eq!(
            error("a {{/if}}"),
            "line 1, column 3: `{{/if}}` ends a block that was never opened\n  1 | a {{/if}}\n    |   ^"
        );
        assert_eq!(
            error("a\nb {{> }}\nc"),
            "line 2, column 7: unexpected `}`, expected a partial name, `(` or a name\n  2 | b {{> }}\n    |       ^"
        );
        // A long line is cut around the place.
        let long = format!("{}{{{{oops{}", "a".repeat(200), "b".repeat(200));
        let e = error(&long);
        let shown: Vec<&str> = e.lines().collect();
        assert_eq!(
            shown[0],
            "line 1, column 201: unclosed `{{`: no `}}` ends the tag opened here"
        );
        assert_eq!(
            shown[1],
            format!("  1 | …{}{{{{oops{}…", "a".repeat(60), "b".repeat(54))
        );
        assert_eq!(shown[2], format!("    | {}^", " ".repeat(61)));
        // No parser internals, and the place is said once.
        for src in ["{{ foo bar=}}", "{{foo (bar}}", "x {{#if a}}y"] {
            let e = error(src);
            assert!(
                !e.contains("trailing_tilde") && !e.contains("helper_parameter"),
                "{e}"
            );
            assert_eq!(e.matches("line ").count(), 1, "{e}");
            assert!(
                e.lines().next().unwrap().starts_with("line 1, column "),
                "{e}"
            );
        }
    }
}
