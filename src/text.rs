//! Text measured the way people and upstream APIs measure it.
//!
//! People see grapheme clusters: `👨‍👩‍👧`, `🇨🇳`, `é` (e + combining accent) and `告` are one
//! character each, and cutting inside one shows garbage. WxPusher and WeChat are Java and count
//! UTF-16 code units, where an emoji counts two; their limits are checked with
//! [`upstream_len`], which is never smaller than what they count.

use unicode_segmentation::UnicodeSegmentation;

/// The ellipsis appended when text is cut; it counts as one character of the limit.
pub const ELLIPSIS: &str = "…";

/// User-visible characters.
pub fn visible_len(s: &str) -> usize {
    s.graphemes(true).count()
}

/// Cuts `s` to at most `max` visible characters, the ellipsis included; never splits a
/// grapheme cluster.
pub fn truncate(s: &str, max: usize) -> String {
    if max == 0 {
        return String::new();
    }
    let mut end = 0;
    for (count, (i, _)) in s.grapheme_indices(true).enumerate() {
        if count == max - 1 {
            end = i;
        }
        if count == max {
            return format!("{}{ELLIPSIS}", &s[..end]);
        }
    }
    s.to_string()
}

/// Folds all whitespace runs (newlines included) into single spaces and trims; a preview
/// line has no room for layout.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Length as a Java `String.length()` counts it: UTF-16 code units.
pub fn upstream_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// The longest prefix of `s` within `max` UTF-16 units that ends on a grapheme boundary.
pub fn upstream_prefix(s: &str, max: usize) -> &str {
    let mut used = 0;
    let mut end = 0;
    for (i, g) in s.grapheme_indices(true) {
        let n = g.encode_utf16().count();
        if used + n > max {
            break;
        }
        used += n;
        end = i + g.len();
    }
    &s[..end]
}

/// The longest prefix of `s` within `max` UTF-8 bytes that ends on a grapheme boundary
/// (WeCom measures its limits in bytes).
pub fn byte_prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = 0;
    for (i, g) in s.grapheme_indices(true) {
        if i + g.len() > max {
            break;
        }
        end = i + g.len();
    }
    &s[..end]
}

/// `s` cut to at most `max` UTF-8 bytes, the ellipsis included, never inside a character.
pub fn truncate_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let room = max.saturating_sub(ELLIPSIS.len());
    format!("{}{ELLIPSIS}", byte_prefix(s, room))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii() {
        assert_eq!(truncate("short", 20), "short");
        assert_eq!(
            truncate("abcdefghijklmnopqrstuvwxyz", 20),
            "abcdefghijklmnopqrs…"
        );
        assert_eq!(visible_len(&truncate("abcdefghijklmnopqrstuvwxyz", 20)), 20);
        assert_eq!(truncate("exactly twenty chars", 20), "exactly twenty chars");
        assert_eq!(truncate("abc", 1), "…");
        assert_eq!(truncate("abc", 0), "");
    }

    #[test]
    fn cjk_counts_one_each() {
        let s = "磁盘空间不足告警：生产环境数据库服务器的根分区使用率超过百分之九十";
        let t = truncate(s, 20);
        assert_eq!(t, "磁盘空间不足告警：生产环境数据库服务器…");
        assert_eq!(visible_len(&t), 20);
    }

    #[test]
    fn mixed_scripts() {
        let t = truncate("🔥 HighCPU 告警 on node-1 生产环境", 12);
        assert_eq!(t, "🔥 HighCPU 告…");
    }

    #[test]
    fn emoji_with_skin_tone_is_one_character() {
        let s = "👍🏽".repeat(25);
        let t = truncate(&s, 20);
        assert_eq!(t, format!("{}…", "👍🏽".repeat(19)));
        assert!(t.starts_with("👍🏽"));
    }

    #[test]
    fn zwj_family_is_never_split() {
        let fam = "👨‍👩‍👧‍👦";
        let s = format!("{}{fam}{fam}", "a".repeat(18));
        // 18 + 2 families = 20: fits exactly.
        assert_eq!(truncate(&s, 20), s);
        let s2 = format!("{s}x");
        assert_eq!(truncate(&s2, 20), format!("{}{fam}…", "a".repeat(18)));
    }

    #[test]
    fn flags_are_one_character() {
        let s = "🇨🇳🇺🇸🇯🇵".repeat(10);
        let t = truncate(&s, 4);
        assert_eq!(t, "🇨🇳🇺🇸🇯🇵…");
    }

    #[test]
    fn combining_marks_stay_on_their_base() {
        let s = "e\u{301}".repeat(30);
        let t = truncate(&s, 20);
        assert_eq!(t, format!("{}…", "e\u{301}".repeat(19)));
    }

    #[test]
    fn upstream_measure_counts_utf16() {
        assert_eq!(upstream_len("告警"), 2);
        assert_eq!(upstream_len("🔥"), 2);
        assert_eq!(upstream_prefix("ab🔥c", 3), "ab");
        assert_eq!(upstream_prefix("ab🔥c", 4), "ab🔥");
        assert_eq!(one_line("  a\n b\t\tc "), "a b c");
    }

    #[test]
    fn byte_measure_never_cuts_a_character() {
        // 告 is three bytes in UTF-8.
        assert_eq!(byte_prefix("告警abc", 5), "告");
        assert_eq!(byte_prefix("告警abc", 6), "告警");
        assert_eq!(byte_prefix("ab", 10), "ab");
        let t = truncate_bytes(&"告".repeat(10), 10);
        assert_eq!(t, "告告…");
        assert!(t.len() <= 10);
    }
}
