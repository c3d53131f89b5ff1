//! One row per measure of a scenario, for `tickiti-bench all`'s table and
//! its `--json` file: the value, the baseline it is compared with in the
//! same run (none for absolute targets), their ratio, the target and
//! whether it was met.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

/// One measure of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `api-create`, `webhooks`, `realtime`, ...
    pub scenario: &'static str,
    /// What was measured, with its unit.
    pub measure: String,
    /// The measured value.
    pub value: f64,
    /// The same-run baseline, when the target is a ratio.
    pub baseline: Option<f64>,
    /// `value / baseline`.
    pub ratio: Option<f64>,
    /// The target, for a reader (`≥ 80 % of baseline`, `< 50 ms`); empty
    /// for a figure reported without one.
    pub target: String,
    /// Whether the target was met; `None` without a target.
    pub met: Option<bool>,
}

impl Row {
    /// `value` as a share of `baseline`, which must reach `min_ratio`.
    pub fn share(
        scenario: &'static str,
        measure: &str,
        value: f64,
        baseline: f64,
        min_ratio: f64,
    ) -> Row {
        let target = format!("≥ {:.0} % of baseline", min_ratio * 100.0);
        Row::compared(scenario, measure, value, baseline, target, |r| {
            r >= min_ratio
        })
    }

    /// `value` that may be at most `max_ratio` times `baseline` (a cost that
    /// must not grow with the load).
    pub fn at_most_times(
        scenario: &'static str,
        measure: &str,
        value: f64,
        baseline: f64,
        max_ratio: f64,
    ) -> Row {
        let target = format!("≤ {max_ratio}× baseline");
        Row::compared(scenario, measure, value, baseline, target, |r| {
            r <= max_ratio
        })
    }

    fn compared(
        scenario: &'static str,
        measure: &str,
        value: f64,
        baseline: f64,
        target: String,
        met: impl Fn(f64) -> bool,
    ) -> Row {
        let ratio = (baseline > 0.0).then(|| value / baseline);
        Row {
            scenario,
            measure: measure.to_owned(),
            value,
            baseline: Some(baseline),
            ratio,
            target,
            met: Some(ratio.is_some_and(met)),
        }
    }

    /// `value` (in `unit`) that must stay below `max`.
    pub fn below(scenario: &'static str, measure: &str, value: f64, max: f64, unit: &str) -> Row {
        Row {
            scenario,
            measure: measure.to_owned(),
            value,
            baseline: None,
            ratio: None,
            target: format!("< {max} {unit}").trim_end().to_owned(),
            met: Some(value < max),
        }
    }

    /// A figure reported beside the targets, with no target of its own.
    pub fn figure(scenario: &'static str, measure: &str, value: f64) -> Row {
        Row {
            scenario,
            measure: measure.to_owned(),
            value,
            baseline: None,
            ratio: None,
            target: String::new(),
            met: None,
        }
    }
}

/// Prints the rows as one table on stdout.
pub fn print_table(rows: &[Row]) {
    let measure_width = rows
        .iter()
        .map(|r| r.measure.chars().count())
        .max()
        .unwrap_or(7)
        .max(7);
    println!(
        "{:<11} {:<measure_width$} {:>12} {:>12} {:>8}  {:<22} met",
        "scenario", "measure", "value", "baseline", "ratio", "target"
    );
    let number = |x: f64| {
        if x.is_nan() {
            "-".to_owned()
        } else if x.abs() >= 100.0 || x.fract() == 0.0 {
            format!("{x:.0}")
        } else {
            format!("{x:.2}")
        }
    };
    for row in rows {
        println!(
            "{:<11} {:<measure_width$} {:>12} {:>12} {:>8}  {:<22} {}",
            row.scenario,
            row.measure,
            number(row.value),
            row.baseline.map_or_else(String::new, number),
            row.ratio
                .map_or_else(String::new, |r| format!("{:.1} %", r * 100.0)),
            row.target,
            match row.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            }
        );
    }
}

/// Writes `{"rows": [...]}` to `path`.
pub fn write_json(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(&serde_json::json!({ "rows": rows }))?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}
