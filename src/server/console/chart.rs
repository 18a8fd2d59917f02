//! Charts drawn on the server as inline SVG (no script, no library, nothing the CSP has to
//! allow): stacked bars of notifications per hour by severity, and horizontal bars of the
//! alert names that sent the most. Sizes are in `viewBox` units; the SVG scales to its box,
//! so a phone shows the whole chart without scrolling sideways.

use chrono::{DateTime, Duration, Timelike, Utc};
use chrono_tz::Tz;
use maud::{Markup, html};

use crate::store::stats::{Hour, SEVERITIES};

/// The colour a severity is drawn in (also the legend's).
pub fn colour(severity: &str) -> &'static str {
    match severity {
        "critical" => "#cf222e",
        "error" => "#e16f24",
        "warning" => "#d4a72c",
        "info" => "#0969da",
        "none" => "#8c959f",
        _ => "#8250df",
    }
}

/// The smallest of 1, 2, 5 × 10ⁿ at or above `n`: a readable top for the axis.
fn nice(n: u64) -> u64 {
    let mut p = 1;
    loop {
        for m in [1, 2, 5] {
            if m * p >= n.max(1) {
                return m * p;
            }
        }
        p *= 10;
    }
}

/// One hour's bar: its start and the count of each severity it has.
type Column<'a> = (DateTime<Utc>, Vec<(&'a str, u64)>);

const W: f64 = 400.0;
const H: f64 = 180.0;
const LEFT: f64 = 34.0;
const RIGHT: f64 = 6.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 22.0;

/// Stacked bars, one per hour from `from` (inclusive, on the hour) for `hours` hours, labels
/// in `tz`; `title` names the chart for screen readers.
pub fn per_hour(title: &str, data: &[Hour], from: DateTime<Utc>, hours: i64, tz: Tz) -> Markup {
    let count = |h: &Hour, s: &str| -> u64 {
        h.severities
            .iter()
            .filter(|(k, _)| k == s)
            .map(|(_, n)| *n)
            .sum()
    };
    let columns: Vec<Column> = (0..hours)
        .map(|i| {
            let at = from + Duration::hours(i);
            let stack = data
                .iter()
                .find(|h| h.hour == at)
                .map(|h| {
                    SEVERITIES
                        .iter()
                        .map(|s| (*s, count(h, s)))
                        .filter(|(_, n)| *n > 0)
                        .collect()
                })
                .unwrap_or_default();
            (at, stack)
        })
        .collect();
    let max = columns
        .iter()
        .map(|(_, s)| s.iter().map(|(_, n)| n).sum::<u64>())
        .max()
        .unwrap_or(0);
    let top = nice(max);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let bw = plot_w / hours as f64;
    let y = |v: u64| TOP + plot_h - plot_h * v as f64 / top as f64;
    // Labels: every 6 h over a day, each local midnight over a week.
    let label_at = |at: DateTime<Utc>| -> Option<String> {
        let l = at.with_timezone(&tz);
        if hours <= 48 {
            l.hour()
                .is_multiple_of(6)
                .then(|| l.format("%H:%M").to_string())
        } else {
            (l.hour() == 0).then(|| l.format("%m-%d").to_string())
        }
    };
    html! {
        svg.chart viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) xmlns="http://www.w3.org/2000/svg" {
            title { (title) }
            @for v in [0, top / 2, top].into_iter().enumerate().filter(|(i, v)| *i == 0 || *v > 0).map(|(_, v)| v) {
                line.gridline x1=(LEFT) x2=(W - RIGHT) y1=(y(v)) y2=(y(v)) {}
                text.axis x=(LEFT - 4.0) y=(y(v) + 4.0) text-anchor="end" { (v) }
            }
            @for (i, (at, stack)) in columns.iter().enumerate() {
                @let x = LEFT + bw * i as f64;
                g {
                    title {
                        (at.with_timezone(&tz).format("%m-%d %H:00")) ": "
                        @for (s, n) in stack { (s) " " (n) "  " }
                    }
                    @for (j, (s, n)) in stack.iter().enumerate() {
                        @let base: u64 = stack[..j].iter().map(|(_, n)| n).sum();
                        @let y1 = y(base + n);
                        @let h = y(base) - y1;
                        rect x=(format!("{:.2}", x + bw * 0.1)) y=(format!("{y1:.2}")) width=(format!("{:.2}", bw * 0.8)) height=(format!("{h:.2}")) fill=(colour(s)) data-severity=(s) data-n=(n) {}
                    }
                    @if let Some(l) = label_at(*at) {
                        line.tick x1=(x) x2=(x) y1=(TOP + plot_h) y2=(TOP + plot_h + 4.0) {}
                        text.axis x=(x) y=(H - 6.0) text-anchor="middle" { (l) }
                    }
                }
            }
        }
    }
}

/// The ten alert names with the most notifications in `data`, largest first.
pub fn top_names(data: &[Hour]) -> Vec<(String, u64)> {
    let mut sum: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for h in data {
        for (k, n) in &h.alertnames {
            *sum.entry(k).or_default() += n;
        }
    }
    let mut all: Vec<(String, u64)> = sum.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(10);
    all
}

/// Horizontal bars of `rows`, names cut to fit (whole in each bar's tooltip).
pub fn bars(title: &str, rows: &[(String, u64)]) -> Markup {
    const ROW: f64 = 24.0;
    const NAME_W: f64 = 170.0;
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1);
    let h = ROW * rows.len() as f64 + 4.0;
    let bar_w = W - NAME_W - 50.0;
    html! {
        svg.chart.bars viewBox={ "0 0 " (W) " " (h) } role="img" aria-label=(title) xmlns="http://www.w3.org/2000/svg" {
            title { (title) }
            @for (i, (name, n)) in rows.iter().enumerate() {
                @let y = ROW * i as f64 + 2.0;
                @let w = bar_w * *n as f64 / max as f64;
                g data-name=(name) data-n=(n) {
                    title { (name) ": " (n) }
                    text.name x="0" y=(y + 16.0) { (crate::text::truncate(name, 22)) }
                    rect x=(NAME_W) y=(y + 4.0) width=(format!("{:.2}", w.max(1.0))) height=(ROW - 8.0) rx="2" {}
                    text.axis x=(format!("{:.2}", NAME_W + w.max(1.0) + 4.0)) y=(y + 16.0) { (n) }
                }
            }
        }
    }
}

/// A duration in seconds as an axis or tooltip shows it: `45s`, `12m`, `1.5h`.
fn short_duration(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.0}s")
    } else if secs < 7_200.0 {
        format!("{:.0}m", secs / 60.0)
    } else {
        format!("{:.1}h", secs / 3_600.0)
    }
}

/// Time to acknowledge: per day a pair of bars, the median and the p90 (in seconds).
pub fn ack_days(title: &str, days: &[super::overview::AckDay]) -> Markup {
    let max = days
        .iter()
        .map(|d| d.p90_seconds.max(d.median_seconds))
        .fold(0.0, f64::max);
    let top = nice(max.ceil() as u64) as f64;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / days.len().max(1) as f64;
    let bw = (slot * 0.35).min(40.0);
    let y = |v: f64| TOP + plot_h - plot_h * v / top;
    html! {
        svg.chart.ack viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) xmlns="http://www.w3.org/2000/svg" {
            title { (title) }
            @for v in [0.0, top / 2.0, top] {
                line.gridline x1=(LEFT) x2=(W - RIGHT) y1=(y(v)) y2=(y(v)) {}
                text.axis x=(LEFT - 4.0) y=(y(v) + 4.0) text-anchor="end" { (short_duration(v)) }
            }
            @for (i, d) in days.iter().enumerate() {
                @let mid = LEFT + slot * (i as f64 + 0.5);
                g data-day=(d.day) data-median=(format!("{:.0}", d.median_seconds)) data-p90=(format!("{:.0}", d.p90_seconds)) {
                    title { (d.day) ": " (short_duration(d.median_seconds)) " / p90 " (short_duration(d.p90_seconds)) }
                    @for (k, (class, v)) in [("ack-median", d.median_seconds), ("ack-p90", d.p90_seconds)].into_iter().enumerate() {
                        @let x = mid - bw + bw * k as f64;
                        rect class=(class) x=(format!("{x:.2}")) y=(format!("{:.2}", y(v))) width=(format!("{:.2}", bw * 0.9)) height=(format!("{:.2}", (y(0.0) - y(v)).max(1.0))) {}
                    }
                    text.axis x=(format!("{mid:.2}")) y=(H - 6.0) text-anchor="middle" { (d.day.format("%m-%d")) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice(0), 1);
        assert_eq!(nice(3), 5);
        assert_eq!(nice(7), 10);
        assert_eq!(nice(11), 20);
        assert_eq!(nice(180), 200);
    }

    #[test]
    fn bars_stack_per_hour_and_the_top_ten_sum_over_hours() {
        let from: DateTime<Utc> = "2026-12-06T00:00:00Z".parse().unwrap();
        let data = vec![
            Hour {
                hour: from + Duration::hours(1),
                severities: vec![("critical".into(), 3), ("warning".into(), 1)],
                alertnames: vec![("A".into(), 3), ("B".into(), 1)],
            },
            Hour {
                hour: from + Duration::hours(2),
                severities: vec![("warning".into(), 2)],
                alertnames: vec![("B".into(), 4)],
            },
        ];
        let svg = per_hour("t", &data, from, 24, chrono_tz::Asia::Shanghai).into_string();
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert!(svg.contains(r##"fill="#cf222e" data-severity="critical" data-n="3""##));
        // The axis tops at 5 (4 is the tallest stack), labels in local time (04:00 UTC is 12:00 in UTC+8).
        assert!(svg.contains(">5</text>"));
        assert!(svg.contains(">12:00</text>"), "{svg}");
        assert_eq!(
            top_names(&data),
            vec![("B".to_string(), 5), ("A".to_string(), 3)]
        );
        let bars = bars("t", &top_names(&data)).into_string();
        assert!(bars.contains(r#"data-name="B" data-n="5""#));
    }
}
