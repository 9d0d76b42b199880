//! What a run prints and writes: the event-log hash, the summary table and
//! a picture of decisions per operator over simulated time with the fault
//! windows marked.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use xxhash_rust::xxh3::Xxh3;

use crate::checker::Answer;
use crate::faults::Fault;
use crate::world::Output;

/// A hash of the whole event log: equal logs, equal hashes.
pub fn hash(events: &[String]) -> u64 {
    let mut hasher = Xxh3::new();
    for line in events {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    hasher.digest()
}

/// The summary table of one run.
pub fn summary(out: &Output, simulated_s: f64, wall_s: f64) -> String {
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut operators: BTreeMap<String, u64> = BTreeMap::new();
    for rec in &out.checker.records {
        let outcome = match &rec.answer {
            Answer::Routed(d) => {
                *operators.entry(d.operator.clone()).or_default() += 1;
                "routed".to_string()
            }
            Answer::Refused { reason, .. } => reason.clone(),
            Answer::Unanswered(_) => "unanswered".to_string(),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    for w in &out.truth.windows {
        *faults.entry(w.fault.name()).or_default() += 1;
    }

    let mut text = String::new();
    let mut line = |k: &str, v: String| text.push_str(&format!("  {k:<32} {v:>12}\n"));
    line("requests", out.checker.records.len().to_string());
    for (k, v) in &outcomes {
        line(&format!("outcome {k}"), v.to_string());
    }
    for (k, v) in &operators {
        line(&format!("chosen {k}"), v.to_string());
    }
    for (k, v) in &faults {
        line(&format!("fault {k}"), format!("{v} time(s)"));
    }
    line("table versions", out.truth.tables.len().to_string());
    line("violations", out.checker.violations.len().to_string());
    line("simulated seconds", format!("{simulated_s:.0}"));
    line("wall seconds", format!("{wall_s:.2}"));
    line(
        "simulated s per wall s",
        format!("{:.0}", simulated_s / wall_s.max(1e-9)),
    );
    text
}

/// Draws decisions per operator per simulated second, fault windows shaded.
pub fn picture(path: &Path, out: &Output, duration_s: f64) -> Result<(), String> {
    let mut series: BTreeMap<String, BTreeMap<i64, u32>> = BTreeMap::new();
    for rec in &out.checker.records {
        if let Answer::Routed(d) = &rec.answer {
            let per = series.entry(d.operator.clone()).or_default();
            *per.entry(rec.t_recv / 1_000).or_default() += 1;
        }
    }
    let top = series
        .values()
        .flat_map(|s| s.values())
        .copied()
        .max()
        .unwrap_or(1) as f64
        * 1.1;

    let root = SVGBackend::new(path, (1400, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "decisions per operator per simulated second",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..duration_s, 0f64..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("simulated seconds")
        .y_desc("decisions")
        .draw()
        .map_err(|e| e.to_string())?;

    for (i, w) in out.truth.windows.iter().enumerate() {
        let kind = Fault::ALL.iter().position(|f| *f == w.fault).unwrap_or(0);
        let (from, to) = (
            w.start_ms as f64 / 1e3,
            (w.end_ms.max(w.start_ms + 150)) as f64 / 1e3,
        );
        let shade = Palette99::pick(kind).mix(0.18).filled();
        let band = Rectangle::new([(from, 0.0), (to, top)], shade);
        chart
            .draw_series(std::iter::once(band))
            .map_err(|e| e.to_string())?;
        let y = top * (0.97 - 0.035 * (i % 12) as f64);
        let label = Text::new(w.fault.name().to_string(), (from, y), ("sans-serif", 11));
        chart
            .draw_series(std::iter::once(label))
            .map_err(|e| e.to_string())?;
    }
    for (k, (op, per)) in series.iter().enumerate() {
        let points: Vec<(f64, f64)> = (0..duration_s as i64)
            .map(|s| (s as f64 + 0.5, f64::from(per.get(&s).copied().unwrap_or(0))))
            .collect();
        let style = Palette99::pick(k).stroke_width(2);
        chart
            .draw_series(LineSeries::new(points, style))
            .map_err(|e| e.to_string())?
            .label(op.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], Palette99::pick(k)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
