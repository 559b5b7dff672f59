//! `report.json` (flat metric map) + `report.md` (free-form sections).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;

#[derive(Debug, Default)]
pub struct Report {
    pub title: String,
    pub metrics: BTreeMap<String, f64>,
    pub sections: Vec<String>,
}

impl Report {
    pub fn new(title: &str) -> Self {
        Self { title: title.into(), ..Default::default() }
    }

    pub fn metric(&mut self, name: impl Into<String>, value: f64) {
        if value.is_finite() {
            self.metrics.insert(name.into(), value);
        }
    }

    pub fn section(&mut self, markdown: impl Into<String>) {
        self.sections.push(markdown.into());
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        fs_err::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(&self.metrics)?;
        fs_err::write(dir.join("report.json"), json + "\n").context("writing report.json")?;
        let mut md = format!("# {}\n\n", self.title);
        md.push_str("| metric | value |\n|---|---:|\n");
        for (k, v) in &self.metrics {
            md.push_str(&format!("| `{k}` | {} |\n", fmt_num(*v)));
        }
        for s in &self.sections {
            md.push('\n');
            md.push_str(s);
            md.push('\n');
        }
        fs_err::write(dir.join("report.md"), md).context("writing report.md")?;
        Ok(())
    }
}

pub fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A horizontal bar chart as a standalone SVG (no JS, no CDN).
pub fn bar_chart_svg(title: &str, bars: &[(String, f64)]) -> String {
    let width = 640.0;
    let row = 26.0;
    let left = 260.0;
    let height = 40.0 + row * bars.len() as f64;
    let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max).max(1e-9);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\
<text x=\"8\" y=\"20\" font-weight=\"bold\">{title}</text>"
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = 32.0 + row * i as f64;
        let w = (width - left - 60.0) * v / max;
        svg.push_str(&format!(
            "<text x=\"8\" y=\"{ty}\">{label}</text><rect x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"18\" fill=\"#3b82f6\"/>\
<text x=\"{tx:.1}\" y=\"{ty}\">{val}</text>",
            ty = y + 13.0,
            tx = left + w + 4.0,
            val = fmt_num(*v)
        ));
    }
    svg.push_str("</svg>\n");
    svg
}
