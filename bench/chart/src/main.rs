//! Draws the throughput-ratio chart of `cargo xtask bench` (bench/ratios.png).
//!
//! Usage: interceptor-bench-chart INPUT.json OUTPUT.png
//!
//! INPUT (written by xtask/src/compare.rs):
//! `{"title": "...", "panels": [{"title": "...", "groups": ["exec-static", ...],
//!   "series": [{"name": "agent-fast", "values": [..], "low": [..], "high": [..]}]}]}`;
//! one panel per place, one bar group per workload, one bar per configuration (its median
//! ratio), a whisker from the lowest to the highest round, and a line at 1.0 (no cost).

use anyhow::{Context, Result, bail};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use serde_json::Value;

/// fonts-dejavu-core, installed by `cargo xtask setup`.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(214, 39, 40),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];

struct Series {
    name: String,
    values: Vec<f64>,
    low: Vec<f64>,
    high: Vec<f64>,
}

struct Panel {
    title: String,
    groups: Vec<String>,
    series: Vec<Series>,
}

fn numbers(v: &Value, key: &str, len: usize) -> Result<Vec<f64>> {
    let a = v[key]
        .as_array()
        .with_context(|| format!("series without {key:?}"))?;
    let out: Vec<f64> = a.iter().filter_map(Value::as_f64).collect();
    if out.len() != len {
        bail!("series {key:?} has {} numbers for {len} groups", out.len());
    }
    Ok(out)
}

fn parse(doc: &Value) -> Result<(String, Vec<Panel>)> {
    let title = doc["title"].as_str().unwrap_or("").to_string();
    let mut panels = Vec::new();
    for p in doc["panels"].as_array().context("no panels")? {
        let groups: Vec<String> = p["groups"]
            .as_array()
            .context("panel without groups")?
            .iter()
            .filter_map(|g| g.as_str().map(String::from))
            .collect();
        let mut series = Vec::new();
        for s in p["series"].as_array().context("panel without series")? {
            series.push(Series {
                name: s["name"]
                    .as_str()
                    .context("series without name")?
                    .to_string(),
                values: numbers(s, "values", groups.len())?,
                low: numbers(s, "low", groups.len())?,
                high: numbers(s, "high", groups.len())?,
            });
        }
        panels.push(Panel {
            title: p["title"].as_str().unwrap_or("").to_string(),
            groups,
            series,
        });
    }
    if panels.is_empty() {
        bail!("no panels to draw");
    }
    Ok((title, panels))
}

fn draw(title: &str, panels: &[Panel], out: &str) -> Result<()> {
    let height = 60 + 480 * panels.len() as u32;
    let root = BitMapBackend::new(out, (1400, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (head, body) = root.split_vertically(60);
    head.draw(&Text::new(
        title.to_string(),
        (20, 20),
        ("sans-serif", 22).into_font(),
    ))?;
    for (area, panel) in body.split_evenly((panels.len(), 1)).iter().zip(panels) {
        let n = panel.groups.len();
        let top = panel
            .series
            .iter()
            .flat_map(|s| s.high.iter().copied())
            .fold(1.1_f64, f64::max)
            // Headroom for the legend above the tallest whisker.
            * 1.3;
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5_f64..n as f64 - 0.5, 0.0_f64..top)?;
        let groups = panel.groups.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n + 1)
            .x_label_formatter(&move |x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < groups.len() {
                    groups[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .y_desc("throughput / no monitor")
            .label_style(("sans-serif", 15))
            .draw()?;
        let k = panel.series.len().max(1) as f64;
        let width = 0.84 / k;
        for (si, s) in panel.series.iter().enumerate() {
            let color = COLORS[si % COLORS.len()];
            let x0 = |g: usize| g as f64 - 0.42 + si as f64 * width;
            chart
                .draw_series((0..n).map(|g| {
                    Rectangle::new(
                        [(x0(g), 0.0), (x0(g) + width * 0.9, s.values[g])],
                        color.filled(),
                    )
                }))?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
                });
            chart.draw_series((0..n).map(|g| {
                let mid = x0(g) + width * 0.45;
                PathElement::new([(mid, s.low[g]), (mid, s.high[g])], BLACK.stroke_width(1))
            }))?;
        }
        chart.draw_series(std::iter::once(PathElement::new(
            [(-0.5, 1.0), (n as f64 - 0.5, 1.0)],
            BLACK.stroke_width(1),
        )))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        bail!("usage: interceptor-bench-chart INPUT.json OUTPUT.png");
    };
    let font = std::fs::read(FONT).with_context(|| {
        format!("reading the chart font {FONT} (apt package fonts-dejavu-core)")
    })?;
    register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("{FONT} is not a usable TrueType font"))?;
    let text = std::fs::read_to_string(input).with_context(|| format!("reading {input}"))?;
    let doc: Value = serde_json::from_str(&text).with_context(|| format!("parsing {input}"))?;
    let (title, panels) =
        parse(&doc).with_context(|| format!("{input}: not a chart description"))?;
    draw(&title, &panels, output).with_context(|| format!("drawing {output}"))?;
    Ok(())
}
