//! Finding every structural error in a configuration, not just the first.
//!
//! Strict deserialization stops at the first unknown key, wrong type or bad duration. To list
//! them all, the document is parsed into a [`Value`] tree, the offending node is removed (or,
//! for a required key, replaced by an empty placeholder) and the tree is deserialized again,
//! for at most [`MAX_ROUNDS`] rounds. Removing a sequence element shifts its later siblings,
//! so paths are mapped back to the indices of the file as written, and later errors get their
//! line and column by walking the original text to that path.
//!
//! Deserializing each section on its own (each receiver, each integration) was weighed as a
//! simpler way to the same list, and kept out: serde stops at the first problem *within* a
//! mapping (an unknown key hides a wrong type or a missing required key beside it, and the
//! tests pin both being listed), so it would list less, or need this same repair per mapping.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use yaml_serde::Value;

use super::Config;

/// How many re-parses are tried before giving up on finding more errors.
pub(super) const MAX_ROUNDS: usize = 50;

/// One step of a path in the YAML document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// `a.b[0].c`, as `serde_path_to_error` writes it; empty for the document itself.
pub(super) fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Parses what [`render`] writes; `None` when the text is not such a path.
fn parse_path(text: &str) -> Option<Vec<Seg>> {
    let mut out = Vec::new();
    if text.is_empty() {
        return Some(out);
    }
    for part in text.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() && out.is_empty() {
            return None;
        }
        if !key.is_empty() {
            out.push(Seg::Key(key.to_string()));
        }
        while !rest.is_empty() {
            let end = rest.find(']')?;
            let index = rest.get(1..end)?.parse().ok()?;
            out.push(Seg::Index(index));
            rest = &rest[end + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return None;
            }
        }
    }
    Some(out)
}

/// The path of a `serde_path_to_error` error, cut before any enum or unknown step.
pub(super) fn segs(path: &serde_path_to_error::Path) -> Vec<Seg> {
    let mut out = Vec::new();
    for s in path.iter() {
        match s {
            serde_path_to_error::Segment::Seq { index } => out.push(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => out.push(Seg::Key(key.clone())),
            _ => break,
        }
    }
    out
}

/// A structural error: where (in the tree as it was deserialized) and what, without position.
struct Failure {
    path: Option<Vec<Seg>>,
    message: String,
}

/// Deserializes a config from YAML text; the error's message has neither path nor position.
fn deserialize(text: &str) -> Result<Config, Failure> {
    let de = yaml_serde::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
        let path = segs(e.path());
        let inner = e.into_inner();
        let mut message = super::strip_path_prefix(&inner.to_string(), &render(&path));
        if let Some(loc) = inner.location() {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(m) = message.strip_suffix(&suffix) {
                message = m.to_string();
            }
        }
        Failure {
            path: Some(path),
            message: redact_values(&message),
        }
    })
}

/// A serde or YAML message with the offending value taken out, its kind kept.
///
/// Serde quotes what it could not use — `invalid type: string "AT_…", expected struct Auth`,
/// `invalid value: integer `123456`, …`, `unknown variant `…``. When a secret is written where a
/// map or list is expected (`auth: <token>`, `basic_auth: user:pass`, a `wxpusher_configs`
/// entry that is just the token), that value is the secret, and the message would carry it into
/// `check-config` output, the `/-/reload` answer, logs and start-up errors. So no value from the
/// file is ever quoted: the path and the line and column say where it is.
pub(crate) fn redact_values(message: &str) -> String {
    const KINDS: [(&str, &str); 5] = [
        ("integer `", "an integer"),
        ("floating point `", "a floating point number"),
        ("boolean `", "a boolean"),
        ("character `", "a character"),
        ("unknown variant `", "unknown variant"),
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    'scan: while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix("string \"") {
            // Rust's Debug quoting: `\` escapes the next character, `"` ends it.
            let mut chars = quoted.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => {
                        out.push_str("a string");
                        rest = &quoted[i + 1..];
                        continue 'scan;
                    }
                    _ => {}
                }
            }
            // Unterminated: drop the rest rather than quote part of it.
            out.push_str("a string");
            break;
        }
        for (prefix, kind) in KINDS {
            let Some(value) = rest.strip_prefix(prefix) else {
                continue;
            };
            let end = if prefix == "unknown variant `" {
                // The variant may hold backticks; serde's own text follows it.
                ["`, expected", "`, there are no variants"]
                    .iter()
                    .filter_map(|t| value.find(t))
                    .min()
            } else if prefix == "character `" {
                value
                    .chars()
                    .next()
                    .map(char::len_utf8)
                    .filter(|n| value[*n..].starts_with('`'))
            } else {
                value.find('`')
            };
            out.push_str(kind);
            match end {
                Some(e) => rest = &value[e + 1..],
                None => rest = "",
            }
            continue 'scan;
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// An error met while re-parsing the repaired tree.
pub(super) struct Found {
    /// Its path in the repaired tree; `None` when it has none (nothing left to repair).
    pub(super) current: Option<Vec<Seg>>,
    /// The same path in the file as written.
    pub(super) original: Vec<Seg>,
    /// What is wrong, without path or position.
    pub(super) message: String,
}

/// What replaces an offending node.
#[derive(Clone, Copy)]
enum Patch {
    Remove,
    Put(fn() -> Value),
}

const PATCHES: [Patch; 7] = [
    Patch::Remove,
    Patch::Put(|| Value::Null),
    Patch::Put(|| Value::String(String::new())),
    Patch::Put(|| Value::Number(0.into())),
    Patch::Put(|| Value::Bool(false)),
    Patch::Put(|| Value::Sequence(Vec::new())),
    Patch::Put(|| Value::Mapping(yaml_serde::Mapping::new())),
];

/// The document being repaired, and what was done to it.
#[derive(Clone)]
pub(super) struct Recovery {
    value: Value,
    /// Sequence elements removed: the sequence's original path and the element's original index.
    removed: BTreeSet<(Vec<Seg>, usize)>,
    /// Original paths of every node removed or replaced.
    patched: Vec<Vec<Seg>>,
}

impl Recovery {
    /// The document as a tree, or `None` when it is not one YAML document.
    pub(super) fn new(text: &str) -> Option<Recovery> {
        let mut value: Value = yaml_serde::from_str(text).ok()?;
        empty_keys(&mut value);
        Some(Recovery {
            value,
            removed: BTreeSet::new(),
            patched: Vec::new(),
        })
    }

    /// The path in the file as written of a path in the repaired tree.
    pub(super) fn original(&self, current: &[Seg]) -> Vec<Seg> {
        let mut out = Vec::with_capacity(current.len());
        for s in current {
            match s {
                Seg::Key(_) => out.push(s.clone()),
                Seg::Index(i) => {
                    let mut j = *i;
                    for (_, r) in self
                        .removed
                        .range((out.clone(), 0)..=(out.clone(), usize::MAX))
                    {
                        if *r <= j {
                            j += 1;
                        }
                    }
                    out.push(Seg::Index(j));
                }
            }
        }
        out
    }

    /// A semantic error's path (`a.b[0].c`) mapped back to the file as written.
    pub(super) fn original_text(&self, path: &str) -> String {
        if self.removed.is_empty() {
            return path.to_string();
        }
        match parse_path(path) {
            Some(p) => render(&self.original(&p)),
            None => path.to_string(),
        }
    }

    /// Whether a path (in the file as written) is at or below a node that was patched, so that
    /// errors about it restate one already reported.
    pub(super) fn is_patched(&self, path: &str) -> bool {
        self.patched.iter().any(|p| {
            let p = render(p);
            path == p
                || path
                    .strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
    }

    /// Deserializes the repaired tree; errors name paths in the repaired tree.
    fn parse(&self) -> Result<Config, Failure> {
        // Some trees do not survive being written out: a node under the non-specific tag `!`
        // cannot be emitted, or no longer parses once it is. Then the tree itself is read, so
        // the errors still name the node at fault rather than the document.
        match yaml_serde::to_string(&self.value) {
            Ok(text) if yaml_serde::from_str::<Value>(&text).is_ok() => deserialize(&text),
            _ => serde_path_to_error::deserialize::<_, Config>(self.value.clone()).map_err(|e| {
                let path = segs(e.path());
                let message = super::strip_path_prefix(&e.into_inner().to_string(), &render(&path));
                Failure {
                    path: Some(path),
                    message: redact_values(&message),
                }
            }),
        }
    }

    /// The next error, its path mapped to the file as written; `Ok` when none is left.
    pub(super) fn next(&self) -> Result<Config, Found> {
        self.parse().map_err(|f| Found {
            original: f
                .path
                .as_deref()
                .map(|p| self.original(p))
                .unwrap_or_default(),
            current: f.path,
            message: f.message,
        })
    }

    fn apply(&mut self, at: &[Seg], patch: Patch) -> bool {
        let Some((last, parent)) = at.split_last() else {
            return false;
        };
        let original = self.original(at);
        let original_parent = self.original(parent);
        let mut node = &mut self.value;
        for s in parent {
            let next = match s {
                Seg::Key(k) => node.get_mut(k.as_str()),
                Seg::Index(i) => node.get_mut(*i),
            };
            match next {
                Some(n) => node = n,
                None => return false,
            }
        }
        let done = match (last, patch) {
            (Seg::Key(k), Patch::Remove) => node
                .as_mapping_mut()
                .and_then(|m| m.remove(k.as_str()))
                .is_some(),
            (Seg::Index(i), Patch::Remove) => match node.as_sequence_mut() {
                Some(s) if *i < s.len() => {
                    s.remove(*i);
                    if let Some(Seg::Index(j)) = original.last() {
                        self.removed.insert((original_parent, *j));
                    }
                    true
                }
                _ => false,
            },
            (Seg::Key(k), Patch::Put(v)) => match node.get_mut(k.as_str()) {
                Some(n) => {
                    *n = v();
                    true
                }
                None => false,
            },
            (Seg::Index(i), Patch::Put(v)) => match node.get_mut(*i) {
                Some(n) => {
                    *n = v();
                    true
                }
                None => false,
            },
        };
        if done {
            self.patched.push(original);
        }
        done
    }

    /// Removes or replaces the node at `at` (a path in the repaired tree) so that it no longer
    /// fails, climbing to its parent when nothing placed there parses. `false` when even the
    /// document itself would have to go.
    ///
    /// A placeholder in place is preferred to removing a key its parent requires; when no
    /// placeholder parses, the key is removed all the same and [`Recovery::restore`] fills it
    /// in when the parser asks for it.
    pub(super) fn neutralise(&mut self, at: &[Seg]) -> bool {
        let mut at = at.to_vec();
        while !at.is_empty() {
            let original = self.original(&at);
            let mut required = None;
            for patch in PATCHES {
                let mut trial = self.clone();
                if !trial.apply(&at, patch) {
                    continue;
                }
                let fixed = match trial.next() {
                    Ok(_) => true,
                    Err(found) if found.current.is_none() => true,
                    Err(found) => {
                        let missing = match (patch, at.last()) {
                            (Patch::Remove, Some(Seg::Key(k))) => {
                                found.original.as_slice() == &original[..original.len() - 1]
                                    && found.message.starts_with(&format!("missing field `{k}`"))
                            }
                            _ => false,
                        };
                        if missing && required.is_none() {
                            required = Some(trial.clone());
                        }
                        found.original != original && !missing
                    }
                };
                if fixed {
                    *self = trial;
                    return true;
                }
            }
            if let Some(trial) = required {
                *self = trial;
                return true;
            }
            at.pop();
        }
        false
    }

    /// Whether a "missing field" error (its path in the repaired tree, and the field) follows
    /// from a repair: the field itself, or the node missing it, was removed or replaced.
    pub(super) fn caused_missing(&self, at: &[Seg], field: &str) -> bool {
        let mut path = self.original(at);
        path.push(Seg::Key(field.to_string()));
        self.is_patched(&render(&path))
    }

    /// Puts a placeholder under `parent` (a path in the repaired tree) for the required `key`
    /// the parser found missing, filling the placeholder's own required fields the same way,
    /// so that parsing goes on past it. Errors below a placeholder are not the file's: it is
    /// recorded as patched. `false` when no placeholder parses.
    pub(super) fn restore(&mut self, parent: &[Seg], key: &str) -> bool {
        self.restore_within(parent, key, RESTORE_DEPTH)
    }

    fn restore_within(&mut self, parent: &[Seg], key: &str, depth: usize) -> bool {
        if depth == 0 {
            return false;
        }
        let mut at = parent.to_vec();
        at.push(Seg::Key(key.to_string()));
        for patch in PATCHES {
            let Patch::Put(value) = patch else {
                continue;
            };
            let mut trial = self.clone();
            if !trial.insert(parent, key, value()) {
                continue;
            }
            let fixed = match trial.next() {
                Ok(_) => true,
                Err(found) => match found.current {
                    None => true,
                    Some(current) => match missing_field(&found.message) {
                        Some(inner) if current == at => trial.restore_within(&at, inner, depth - 1),
                        Some(again) if current == parent && again == key => false,
                        _ => !current.starts_with(&at),
                    },
                },
            };
            if fixed {
                *self = trial;
                return true;
            }
        }
        false
    }

    /// Inserts `key: value` into the mapping at `parent` (a path in the repaired tree).
    fn insert(&mut self, parent: &[Seg], key: &str, value: Value) -> bool {
        let mut original = self.original(parent);
        let mut node = &mut self.value;
        for s in parent {
            let next = match s {
                Seg::Key(k) => node.get_mut(k.as_str()),
                Seg::Index(i) => node.get_mut(*i),
            };
            match next {
                Some(n) => node = n,
                None => return false,
            }
        }
        let Some(map) = node.as_mapping_mut() else {
            return false;
        };
        if map.contains_key(key) {
            return false;
        }
        map.insert(Value::String(key.to_string()), value);
        original.push(Seg::Key(key.to_string()));
        self.patched.push(original);
        true
    }
}

/// How deep placeholders are nested to fill a required field (a struct in a struct …).
const RESTORE_DEPTH: usize = 8;

/// The field of serde's "missing field `…`" message.
pub(super) fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.find('`').map(|end| &rest[..end])
}

/// Makes null mapping keys (`: x`, `&anchor: x`) the empty string, as the direct parse reads
/// them, so that errors name them the same way and they can be removed by name.
fn empty_keys(value: &mut Value) {
    match value {
        Value::Mapping(m) => {
            if let Some(v) = m.remove(Value::Null) {
                m.insert(Value::String(String::new()), v);
            }
            for (_, v) in m.iter_mut() {
                empty_keys(v);
            }
        }
        Value::Sequence(s) => s.iter_mut().for_each(empty_keys),
        Value::Tagged(t) => empty_keys(&mut t.value),
        _ => {}
    }
}

/// Line and column (1-based) of the node at `path` in the YAML text: the key for a mapping
/// entry, the element for a sequence index.
pub(super) fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    if path.is_empty() {
        return None;
    }
    let de = yaml_serde::Deserializer::from_str(text);
    match Locate(path).deserialize(de) {
        Err(e) if e.to_string().contains(FOUND) => e.location().map(|l| (l.line(), l.column())),
        _ => None,
    }
}

/// The message of the error a [`Locate`] raises at its target, to read the position from.
const FOUND: &str = "\u{0}located";

/// Walks a document to a path and fails there, so the parser names the position.
struct Locate<'a>(&'a [Seg]);

impl<'de> DeserializeSeed<'de> for Locate<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Locate<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("anything")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.leaf()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.leaf()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.leaf()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.0.is_empty() {
            return Err(de::Error::custom(FOUND));
        }
        let mut i = 0;
        loop {
            let more = match self.0.first() {
                Some(Seg::Index(want)) if *want == i => {
                    seq.next_element_seed(Locate(&self.0[1..]))?.is_some()
                }
                _ => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.0.is_empty() {
            return Err(de::Error::custom(FOUND));
        }
        while let Some(matched) = map.next_key_seed(Key(self.0))? {
            if matched {
                map.next_value_seed(Locate(&self.0[1..]))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl Locate<'_> {
    fn leaf<E: de::Error>(&self) -> Result<(), E> {
        if self.0.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

/// A mapping key: whether it is the path's next step; fails there when it is the last one.
struct Key<'a>(&'a [Seg]);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        match self.0 {
            [Seg::Key(k)] if k == v => Err(E::custom(FOUND)),
            [Seg::Key(k), ..] => Ok(k == v),
            _ => Ok(false),
        }
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        self.visit_str("")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Vec<Seg> {
        parse_path(text).unwrap()
    }

    #[test]
    fn paths_round_trip() {
        for text in [
            "",
            "a",
            "a.b[0].c",
            "receivers[2].wxpusher_configs[0].uids[1]",
        ] {
            assert_eq!(render(&p(text)), text);
        }
        assert_eq!(parse_path("a[x]"), None);
        assert_eq!(parse_path("a[0]b"), None);
    }

    #[test]
    fn locate_finds_keys_and_elements() {
        let text = "route: {receiver: a}\nreceivers:\n  - name: a\n  - name: b\n    colour: red\n";
        assert_eq!(locate(text, &p("receivers[1].colour")), Some((5, 5)));
        assert_eq!(locate(text, &p("route.receiver")), Some((1, 9)));
        assert_eq!(locate(text, &p("receivers[1]")), Some((4, 5)));
        assert_eq!(locate(text, &p("receivers[7]")), None);
        assert_eq!(locate(text, &p("nope")), None);
    }

    #[test]
    fn removed_elements_keep_original_indices() {
        let mut r = Recovery::new("a: [x, y, z, w]\n").unwrap();
        assert!(r.apply(&p("a[1]"), Patch::Remove));
        assert_eq!(render(&r.original(&p("a[1]"))), "a[2]");
        assert!(r.apply(&p("a[0]"), Patch::Remove));
        assert_eq!(render(&r.original(&p("a[0]"))), "a[2]");
        assert_eq!(render(&r.original(&p("a[1]"))), "a[3]");
        assert_eq!(r.original_text("a[1].b"), "a[3].b");
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact_values;

    #[test]
    fn values_are_named_by_kind_only() {
        for (message, want) in [
            (
                "invalid type: string \"AT_x \\\" \\\\ y\", expected struct Auth",
                "invalid type: a string, expected struct Auth",
            ),
            (
                "invalid value: integer `1234567`, expected u16",
                "invalid value: an integer, expected u16",
            ),
            (
                "invalid type: floating point `1.5`, expected a string",
                "invalid type: a floating point number, expected a string",
            ),
            (
                "invalid type: character ```, expected x",
                "invalid type: a character, expected x",
            ),
            (
                "unknown variant `a`, b`, expected `template` or `subscribe`",
                "unknown variant, expected `template` or `subscribe`",
            ),
            (
                "unknown variant `x`, there are no variants",
                "unknown variant, there are no variants",
            ),
            (
                "invalid type: string \"unterminated",
                "invalid type: a string",
            ),
            (
                "unknown field `colour`, expected one of `name`",
                "unknown field `colour`, expected one of `name`",
            ),
            (
                "invalid type: map, expected a string",
                "invalid type: map, expected a string",
            ),
        ] {
            assert_eq!(redact_values(message), want, "{message}");
        }
    }
}
