//! Plots (the `plot` feature): the embedded plot font and the log-log frequency plot of
//! corpus statistics.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::stats::ZipfFit;

/// One line of a frequency plot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreqSeries {
    /// Legend entry.
    pub label: String,
    /// Frequencies by rank, descending.
    pub freqs: Vec<usize>,
}

static FONT: Once = Once::new();

/// Registers the embedded DejaVu Sans as plotters' `sans-serif` family, so that plots render
/// text without fontconfig or system fonts. Idempotent; every plot of the workspace calls it.
pub fn register_fonts() {
    FONT.call_once(|| {
        // The font bytes are a well-formed TrueType file shipped by the `dejavu` crate.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Draws frequency against rank on log-log axes as a PNG (800 x 600), one line per series, with
/// axis labels, a legend and, if given, the Zipf fit as a dashed line.
pub fn plot_frequencies(
    path: impl AsRef<Path>,
    title: &str,
    series: &[FreqSeries],
    fit: Option<&ZipfFit>,
) -> Result<()> {
    let path = path.as_ref();
    let plot_err = |e: &dyn std::fmt::Display| Error::Plot { path: path.to_owned(), message: e.to_string() };
    if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
        return Err(plot_err(&"expected a file name ending in .png"));
    }
    let max_rank = series.iter().map(|s| s.freqs.len()).max().unwrap_or(0);
    let max_freq = series.iter().flat_map(|s| s.freqs.iter().copied()).max().unwrap_or(0);
    if max_rank == 0 || max_freq == 0 {
        return Err(plot_err(&"nothing to plot: every frequency list is empty"));
    }
    register_fonts();
    let root = BitMapBackend::new(path, (800, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(&e))?;
    let x_max = (max_rank as f64 * 1.5).max(10.0);
    let y_max = max_freq as f64 * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..x_max).log_scale(), (0.8f64..y_max).log_scale())
        .map_err(|e| plot_err(&e))?;
    chart
        .configure_mesh()
        .x_desc("rank (log scale)")
        .y_desc("frequency (log scale)")
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 14))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| plot_err(&e))?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points = s.freqs.iter().enumerate().filter(|(_, &f)| f > 0).map(|(r, &f)| ((r + 1) as f64, f as f64));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| plot_err(&e))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    if let Some(fit) = fit {
        let n = series.first().map_or(max_rank, |s| s.freqs.len()).max(2);
        // Dashes: short segments along the fitted line, evenly spaced in log rank.
        let steps = 60;
        let at = |k: usize| ((n as f64).ln() * k as f64 / steps as f64).exp();
        let dashes = (0..steps).step_by(2).map(|k| {
            let (r0, r1) = (at(k), at(k + 1));
            PathElement::new(vec![(r0, fit.predict(r0)), (r1, fit.predict(r1))], BLACK.stroke_width(1))
        });
        chart
            .draw_series(dashes)
            .map_err(|e| plot_err(&e))?
            .label(format!("Zipf fit, alpha = {:.3}", fit.alpha))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 8, y)], BLACK.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_err(&e))?;
    root.present().map_err(|e| plot_err(&e))?;
    Ok(())
}
