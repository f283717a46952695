//! Per-epoch metrics: `metrics.jsonl` (one JSON object per epoch) and the perplexity plot.

use std::io::Write;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What one epoch produced (one line of `metrics.jsonl`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochMetrics {
    /// Epoch number (1-based).
    pub epoch: usize,
    /// Optimizer steps taken so far (all epochs).
    pub step: u64,
    /// Learning rate used in this epoch.
    pub lr: f64,
    /// Mean training cross-entropy per token (nats), over the epoch's minibatches.
    pub train_loss: f64,
    /// exp(train_loss).
    pub train_ppl: f64,
    /// Mean validation cross-entropy per token, if there is validation data.
    pub val_loss: Option<f64>,
    /// exp(val_loss).
    pub val_ppl: Option<f64>,
    /// Training tokens (predictions) in this epoch.
    pub tokens: usize,
    /// Wall time of the epoch's training steps, seconds (validation excluded).
    pub seconds: f64,
    /// Training tokens per second.
    pub tokens_per_s: f64,
    /// A generated sample, on the epochs that make one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<String>,
}

/// Appends one line to `metrics.jsonl` (lines already there are never rewritten).
pub fn append(path: &Path, m: &EpochMetrics) -> Result<()> {
    let line = serde_json::to_string(m).map_err(|e| Error::Json { path: path.into(), reason: e.to_string() })?;
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io("open", path, e))?;
    writeln!(f, "{line}").map_err(|e| Error::io("write", path, e))?;
    f.sync_data().map_err(|e| Error::io("write", path, e))
}

/// One line of a metrics file as read: its metrics and the byte offset where the line ends
/// (after its newline, when it has one).
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    /// The epoch's metrics.
    pub metrics: EpochMetrics,
    /// Byte offset just past the line.
    pub end: usize,
}

/// A last line that does not parse (a write cut short, for example by a full disk).
#[derive(Clone, Debug, PartialEq)]
pub struct DamagedTail {
    /// 1-based line number.
    pub line: usize,
    /// Byte offset where it starts.
    pub start: usize,
    /// The parser's message.
    pub reason: String,
}

/// A `metrics.jsonl` as read: the lines that parse, in order, and a damaged last line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsLog {
    /// Every line before the damaged one (blank lines skipped).
    pub lines: Vec<LogLine>,
    /// The last line, when it does not parse.
    pub damaged_tail: Option<DamagedTail>,
}

impl MetricsLog {
    /// The metrics of every good line.
    pub fn metrics(&self) -> Vec<EpochMetrics> {
        self.lines.iter().map(|l| l.metrics.clone()).collect()
    }
}

/// Parses the bytes of a metrics file (`path` names it in errors). A damaged last line is
/// returned as [`MetricsLog::damaged_tail`]; a damaged line before others is an
/// [`Error::DamagedMetrics`].
pub fn parse_log(path: &Path, bytes: &[u8]) -> Result<MetricsLog> {
    let mut log = MetricsLog::default();
    let mut start = 0;
    let mut number = 0;
    while start < bytes.len() {
        let end = bytes[start..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| start + i + 1);
        let line = &bytes[start..end];
        number += 1;
        if !line.iter().all(u8::is_ascii_whitespace) {
            match serde_json::from_slice::<EpochMetrics>(line) {
                Ok(metrics) => log.lines.push(LogLine { metrics, end }),
                Err(e) if bytes[end..].iter().all(u8::is_ascii_whitespace) => {
                    log.damaged_tail = Some(DamagedTail { line: number, start, reason: e.to_string() });
                }
                Err(e) => return Err(Error::DamagedMetrics { path: path.into(), line: number, reason: e.to_string() }),
            }
        }
        start = end;
    }
    Ok(log)
}

/// Reads and parses a metrics file (missing file: no lines), see [`parse_log`].
pub fn read_log(path: &Path) -> Result<(Vec<u8>, MetricsLog)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), MetricsLog::default())),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let log = parse_log(path, &bytes)?;
    Ok((bytes, log))
}

/// Reads every line of a `metrics.jsonl` file (missing file: no lines); a damaged line is an
/// error.
pub fn read(path: &Path) -> Result<Vec<EpochMetrics>> {
    let (_, log) = read_log(path)?;
    if let Some(d) = log.damaged_tail {
        return Err(Error::DamagedMetrics { path: path.into(), line: d.line, reason: d.reason });
    }
    Ok(log.metrics())
}

/// Draws train and validation perplexity per epoch (log-scale y axis) as a PNG (900 x 600), with
/// axis labels, a title and a legend. Written to a temporary file, then renamed.
pub fn plot_perplexity(path: &Path, title: &str, metrics: &[EpochMetrics]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::Plot { path: path.into(), reason: e.to_string() };
    if metrics.is_empty() {
        return Err(err(&"no epochs to plot"));
    }
    let train: Vec<(f64, f64)> =
        metrics.iter().filter(|m| m.train_ppl.is_finite()).map(|m| (m.epoch as f64, m.train_ppl)).collect();
    let val: Vec<(f64, f64)> =
        metrics.iter().filter_map(|m| m.val_ppl.filter(|v| v.is_finite()).map(|v| (m.epoch as f64, v))).collect();
    let all = train.iter().chain(&val).map(|p| p.1);
    let (lo, hi) = all.fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return Err(err(&"no finite perplexity to plot"));
    }
    // Log scale drawn as ln(perplexity) on a linear axis, labelled with perplexities: plotters'
    // own log axis puts no label on a range narrower than a power of ten.
    let (y_lo, y_hi) = ((lo * 0.95).max(1e-3).ln(), (hi * 1.05).ln());
    let (y_lo, y_hi) = if y_hi - y_lo < 1e-3 { (y_lo - 0.05, y_hi + 0.05) } else { (y_lo, y_hi) };
    let first = metrics.iter().map(|m| m.epoch).min().unwrap_or(1) as u32;
    let last = metrics.iter().map(|m| m.epoch).max().unwrap_or(1) as u32;
    let x_hi = last.max(first + 1);
    let train: Vec<(u32, f64)> = train.iter().map(|&(e, v)| (e as u32, v.ln())).collect();
    let val: Vec<(u32, f64)> = val.iter().map(|&(e, v)| (e as u32, v.ln())).collect();
    seqmodels_data::plot::register_fonts();
    let tmp = path.with_extension("png.tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (900, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(first..x_hi, y_lo..y_hi)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("perplexity (log scale)")
            .axis_desc_style(("sans-serif", 18))
            .label_style(("sans-serif", 14))
            .x_labels(((x_hi - first + 1) as usize).min(12))
            .y_labels(10)
            .x_label_formatter(&|v| format!("{v}"))
            .y_label_formatter(&|v| {
                let p = v.exp();
                if p >= 100.0 {
                    format!("{p:.0}")
                } else if p >= 10.0 {
                    format!("{p:.1}")
                } else {
                    format!("{p:.2}")
                }
            })
            .draw()
            .map_err(|e| err(&e))?;
        let blue = RGBColor(31, 119, 180);
        let orange = RGBColor(255, 127, 14);
        for (points, color, label) in [(&train, blue, "train"), (&val, orange, "validation")] {
            if points.is_empty() {
                continue;
            }
            let series = chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
                .map_err(|e| err(&e))?;
            series
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            if points.len() == 1 {
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(|e| err(&e))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperMiddle)
            .label_font(("sans-serif", 16))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", &tmp, e))
}
