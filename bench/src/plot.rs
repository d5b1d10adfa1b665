//! The latency plot of BENCHMARKS.md: latency by percentile, one line per series, as a PNG.
//!
//! Why these choices: the x axis is in "nines" (90 %, 99 %, 99.9 %) so the tail, which is what
//! an SLO is about, gets as much room as the median; the y axis is logarithmic because the
//! series span sub-millisecond to seconds. plotters draws text with `ab_glyph` from a TTF file
//! read at run time (DejaVu Sans on Debian), so no fontconfig/font-kit is involved; without any
//! font file the plot is still drawn, only without text.

use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;
use plotters::prelude::*;

/// One line of the plot: a name and a µs histogram.
pub struct Series<'a> {
    pub name: String,
    pub histogram: &'a Histogram<u64>,
}

const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a font for plotters' "sans-serif" family; `false` if none was found.
fn register_font() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| {
        for path in FONT_CANDIDATES {
            if let Ok(bytes) = std::fs::read(path) {
                // plotters keeps the font for the whole process: leaking it once is the point.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

fn nines_label(x: &f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-*x));
    if p < 99.0 {
        format!("{p:.0}%")
    } else {
        let digits = (*x - 2.0).ceil().max(0.0) as usize;
        format!("{p:.digits$}%")
    }
}

/// Draws the series into a PNG at `path`.
pub fn latency_by_percentile(
    path: &Path,
    title: &str,
    series: &[Series<'_>],
) -> anyhow::Result<()> {
    let text = register_font();
    let max_nines = 3.0_f64;
    let values: Vec<f64> = series
        .iter()
        .filter(|s| !s.histogram.is_empty())
        .flat_map(|s| {
            [
                s.histogram.min().max(1) as f64 / 1e3,
                s.histogram.max() as f64 / 1e3,
            ]
        })
        .collect();
    let y_min = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(1.0)
        * 0.8;
    let y_max = values.iter().copied().fold(0.0_f64, f64::max).max(10.0) * 1.25;
    let root = BitMapBackend::new(path, (1100, 650)).into_drawing_area();
    root.fill(&WHITE).context("drawing the background")?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder
            .caption(title, ("sans-serif", 24))
            .x_label_area_size(50)
            .y_label_area_size(70);
    }
    let mut chart = builder
        .build_cartesian_2d(0.0..max_nines, (y_min..y_max).log_scale())
        .context("building the chart")?;
    if text {
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms, log scale)")
            .x_labels(4)
            .x_label_formatter(&nines_label)
            .y_label_formatter(&|y| format!("{y}"))
            .label_style(("sans-serif", 15))
            .draw()
            .context("drawing the axes")?;
    } else {
        chart
            .configure_mesh()
            .disable_x_mesh()
            .draw()
            .context("drawing the grid")?;
    }
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    for (i, s) in series.iter().enumerate() {
        if s.histogram.is_empty() {
            continue;
        }
        let color = palette[i % palette.len()];
        let points: Vec<(f64, f64)> = (0..=300)
            .map(|k| {
                let x = max_nines * f64::from(k) / 300.0;
                let q = 1.0 - 10f64.powf(-x);
                (x, s.histogram.value_at_quantile(q).max(1) as f64 / 1e3)
            })
            .collect();
        let drawn = chart
            .draw_series(LineSeries::new(points, color.stroke_width(3)))
            .context("drawing a series")?;
        if text {
            drawn.label(s.name.clone()).legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3))
            });
        }
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .context("drawing the legend")?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
