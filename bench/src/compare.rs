//! Two benchmark runs side by side: the figures that decide which embedded broker to ship,
//! read from each run's `results.json`, in one Markdown table with the ratio between them.
//!
//! Why from files: the two brokers cannot run at once on the same ports and cores, so the
//! benchmark runs once per broker, back to back on the same machine (`--broker tansu` writes its
//! results, then the default run reads them with `--compare-with`). Each figure is taken from the
//! same phase of the same method; the report says when the runs were made.

use std::fmt::Write as _;

use serde_json::Value;

/// One row: a label and where its number is in `results.json`.
struct Figure {
    label: &'static str,
    /// Lower is better (latency, time) or higher is better (throughput).
    lower_is_better: bool,
    get: fn(&Value) -> Option<f64>,
}

fn e2e_at(v: &Value, rate: f64, series: &str, pct: &str) -> Option<f64> {
    v["endToEnd"]
        .as_array()?
        .iter()
        .find(|r| r["rate"].as_f64() == Some(rate))?[series][pct]
        .as_f64()
}

fn broker_startup(v: &Value) -> Option<f64> {
    v["startupSeconds"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.contains("broker"))?
        .1
        .as_f64()
}

fn broker_cpu(v: &Value, phase_prefix: &str) -> Option<f64> {
    v["usage"].as_array()?.iter().find(|u| {
        u["phase"]
            .as_str()
            .is_some_and(|p| p.starts_with(phase_prefix))
    })?["processes"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == "broker")?["cpuCores"]
        .as_f64()
}

const FIGURES: &[Figure] = &[
    Figure {
        label: "broker start-up, s",
        lower_is_better: true,
        get: broker_startup,
    },
    Figure {
        label: "broker CPU idle, cores",
        lower_is_better: true,
        get: |v| broker_cpu(v, "idle"),
    },
    Figure {
        label: "create → 201 p50 at 100/s, ms",
        lower_is_better: true,
        get: |v| e2e_at(v, 100.0, "createMs", "p50"),
    },
    Figure {
        label: "end to end p50 at 100/s, ms",
        lower_is_better: true,
        get: |v| e2e_at(v, 100.0, "e2eMs", "p50"),
    },
    Figure {
        label: "end to end p99 at 100/s, ms",
        lower_is_better: true,
        get: |v| e2e_at(v, 100.0, "e2eMs", "p99"),
    },
    Figure {
        label: "create → 201 p50 at 1,000/s, ms",
        lower_is_better: true,
        get: |v| e2e_at(v, 1000.0, "createMs", "p50"),
    },
    Figure {
        label: "end to end p50 at 1,000/s, ms",
        lower_is_better: true,
        get: |v| e2e_at(v, 1000.0, "e2eMs", "p50"),
    },
    Figure {
        label: "end to end p99 at 1,000/s, ms",
        lower_is_better: true,
        get: |v| e2e_at(v, 1000.0, "e2eMs", "p99"),
    },
    Figure {
        label: "CartService closed loop, orders/s",
        lower_is_better: false,
        get: |v| v["closedLoop"]["throughput"].as_f64(),
    },
    Figure {
        label: "raw produce ceiling, records/s",
        lower_is_better: false,
        get: |v| v["rawProduce"]["rate"].as_f64(),
    },
    Figure {
        label: "raw consume ceiling, records/s",
        lower_is_better: false,
        get: |v| v["rawConsume"]["rate"].as_f64(),
    },
    Figure {
        label: "OrderService catch-up, s",
        lower_is_better: true,
        get: |v| v["catchup"]["ingestSeconds"].as_f64(),
    },
    Figure {
        label: "ID scan, s",
        lower_is_better: true,
        get: |v| v["scan"]["seconds"].as_f64(),
    },
    Figure {
        label: "CartService start-up with the topic full, s",
        lower_is_better: true,
        get: |v| v["cartStartupLoadedSeconds"].as_f64(),
    },
];

fn name(v: &Value) -> String {
    v["broker"].as_str().unwrap_or("unknown broker").to_string()
}

/// The side-by-side section: `this` is the run being reported, `other` the earlier run.
pub fn side_by_side(this: &Value, other: &Value) -> String {
    let (a, b) = (name(this), name(other));
    let mut md = String::new();
    let _ = writeln!(md, "## Brokers side by side\n");
    let _ = writeln!(
        md,
        "The same benchmark, same binaries and arguments, run back to back on this machine: \
         {a} (this report; {} orders) and {b} (generated {}, {} orders, machine {:.0} % busy \
         before it). Ratio = {a} / {b}; **bold** marks the better of the two.\n",
        this["orders"],
        other["generated"].as_str().unwrap_or("earlier"),
        other["orders"],
        other["machineBusyBefore"].as_f64().unwrap_or(0.0) * 100.0,
    );
    let _ = writeln!(md, "| figure | {a} | {b} | ratio |");
    let _ = writeln!(md, "| --- | --- | --- | --- |");
    for figure in FIGURES {
        let (x, y) = ((figure.get)(this), (figure.get)(other));
        let cell = |v: Option<f64>, better: bool| match v {
            Some(v) if better => format!("**{}**", format_number(v)),
            Some(v) => format_number(v),
            None => "–".to_string(),
        };
        let (x_better, y_better) = match (x, y) {
            (Some(x), Some(y)) if x != y => {
                let x_wins = (x < y) == figure.lower_is_better;
                (x_wins, !x_wins)
            }
            _ => (false, false),
        };
        let ratio = match (x, y) {
            (Some(x), Some(y)) if y != 0.0 => format!("{:.2}", x / y),
            _ => "–".to_string(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {ratio} |",
            figure.label,
            cell(x, x_better),
            cell(y, y_better)
        );
    }
    md.push('\n');
    md
}

fn format_number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_better_figure_is_bold_and_the_ratio_is_this_over_other() {
        let this = serde_json::json!({
            "broker": "Nisshi 0.8.1", "orders": 10,
            "endToEnd": [{"rate": 100.0, "e2eMs": {"p50": 8.0}}],
            "rawProduce": {"rate": 1000.0},
        });
        let other = serde_json::json!({
            "broker": "Tansu 0.6.0", "orders": 10,
            "endToEnd": [{"rate": 100.0, "e2eMs": {"p50": 20.0}}],
            "rawProduce": {"rate": 2000.0},
        });
        let md = side_by_side(&this, &other);
        assert!(
            md.contains("| end to end p50 at 100/s, ms | **8.0** | 20.0 | 0.40 |"),
            "{md}"
        );
        assert!(
            md.contains("| raw produce ceiling, records/s | 1000 | **2000** | 0.50 |"),
            "{md}"
        );
        assert!(md.contains("| ID scan, s | – | – | – |"), "{md}");
    }
}
