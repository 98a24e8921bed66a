//! How hoptrace shows figures to people, the same way in every command and tool: the nearest-rank
//! percentile behind every percentile printed, durations in milliseconds, aligned tables for a terminal,
//! and text escaped for HTML and XML. A leaf crate: the analyzer and the load generator both use it.

mod table;

pub use table::{Align, Table};

/// The position of the nearest-rank percentile among `n` sorted samples (`n > 0`): the smallest sample
/// with at least `fraction` of the samples at or below it.
pub fn nearest_rank_index(n: usize, fraction: f64) -> usize {
    ((fraction * n as f64).ceil().max(1.0) as usize).min(n) - 1
}

/// The nearest-rank percentile of sorted samples, `fraction` in 0..=1; `None` when there are none.
pub fn nearest_rank<T: Copy>(sorted: &[T], fraction: f64) -> Option<T> {
    (!sorted.is_empty()).then(|| sorted[nearest_rank_index(sorted.len(), fraction)])
}

/// Nanoseconds as milliseconds with `decimals` decimals: `millis(19_500_000, 2)` is `19.50 ms`.
pub fn millis(ns: i64, decimals: usize) -> String {
    format!("{:.decimals$} ms", ns as f64 / 1e6)
}

/// A duration for people, about four significant digits: `0.842 ms`, `12.50 ms`, `125.0 ms`, `1.204 s`.
pub fn duration(ns: i64) -> String {
    let ms = (ns as f64 / 1e6).abs();
    if ms >= 1000.0 {
        format!("{:.3} s", ns as f64 / 1e9)
    } else {
        millis(
            ns,
            if ms >= 100.0 {
                1
            } else if ms >= 10.0 {
                2
            } else {
                3
            },
        )
    }
}

/// `text` with `&`, `<`, `>` and `"` escaped, for HTML and XML text and attribute values.
pub fn escape_markup(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms: Vec<u64> = (1..=100).collect();
        assert_eq!(nearest_rank(&ms, 0.50), Some(50));
        assert_eq!(nearest_rank(&ms, 0.99), Some(99));
        assert_eq!(nearest_rank(&ms, 1.0), Some(100));
        assert_eq!(nearest_rank(&ms[..1], 0.99), Some(1));
        assert_eq!(nearest_rank::<u64>(&[], 0.5), None);
        assert_eq!(nearest_rank(&[3, 7], 0.0), Some(3));
    }

    #[test]
    fn durations_keep_about_four_digits() {
        assert_eq!(duration(842_000), "0.842 ms");
        assert_eq!(duration(12_500_000), "12.50 ms");
        assert_eq!(duration(125_000_000), "125.0 ms");
        assert_eq!(duration(1_204_000_000), "1.204 s");
        assert_eq!(duration(-2_500_000), "-2.500 ms");
        assert_eq!(millis(2_000_000, 2), "2.00 ms");
    }

    #[test]
    fn markup_is_escaped() {
        assert_eq!(escape_markup(r#"<a href="x">&</a>"#), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
    }
}
