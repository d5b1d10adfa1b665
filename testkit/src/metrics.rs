//! Reading a number out of a service's `/metrics` (Prometheus text format), as the tests and the
//! benchmark do to watch a service's own counters.

/// The value of a counter or gauge in a Prometheus text exposition: `series` is a metric name
/// (summed over its label sets) or a whole series with its labels (`name{label="…"}`). `None`
/// when no line matches.
pub fn value(text: &str, series: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(series) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(value) = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::value;

    #[test]
    fn reads_counters_with_and_without_labels() {
        let text = "# HELP x\norder_events_applied_total 42\nlag{partition=\"0\"} 3\n\
                    lag{partition=\"1\"} 4\nlagx 9\n";
        assert_eq!(value(text, "order_events_applied_total"), Some(42.0));
        assert_eq!(value(text, "lag"), Some(7.0));
        assert_eq!(value(text, "lag{partition=\"1\"}"), Some(4.0));
        assert_eq!(value(text, "missing"), None);
    }
}
