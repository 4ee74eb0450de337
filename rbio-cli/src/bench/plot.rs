//! The plot: bringup time against entry count, one line per engine, log-log, as a small SVG
//! written by hand (a plotting crate would outweigh the rest of the command).

use std::fmt::Write as _;

use super::results::Row;

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 220.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLOURS: [&str; 10] = [
    "#000000", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#17becf",
];

/// The SVG document for `rows` (median bringup seconds against entries).
pub fn svg(rows: &[Row], title: &str) -> String {
    let engines: Vec<&str> = rows.iter().fold(Vec::new(), |mut seen, row| {
        if !seen.contains(&row.engine.as_str()) {
            seen.push(&row.engine);
        }
        seen
    });
    let xs = rows.iter().map(|row| row.entries as f64);
    let ys = rows.iter().map(|row| row.total_secs.median);
    let (x_lo, x_hi) = decades(xs);
    let (y_lo, y_hi) = decades(ys);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x_of = |x: f64| LEFT + (x.log10() - x_lo) / (x_hi - x_lo) * plot_w;
    let y_of = |y: f64| TOP + plot_h - (y.log10() - y_lo) / (y_hi - y_lo) * plot_h;

    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        LEFT + plot_w / 2.0,
        escape(title)
    );
    axes(&mut out, (x_lo, x_hi), (y_lo, y_hi), &x_of, &y_of);
    for (index, engine) in engines.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let dash = if index >= COLOURS.len() {
            " stroke-dasharray=\"6 3\""
        } else {
            ""
        };
        let mut points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|row| row.engine == *engine)
            .map(|row| (x_of(row.entries as f64), y_of(row.total_secs.median)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.8\"{dash} points=\"{}\"/>",
            path.join(" ")
        );
        for (x, y) in &points {
            let _ = writeln!(
                out,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{colour}\"/>"
            );
        }
        let legend_y = TOP + 14.0 + index as f64 * 18.0;
        let legend_x = WIDTH - RIGHT + 20.0;
        let _ = writeln!(
            out,
            "<line x1=\"{legend_x}\" y1=\"{legend_y}\" x2=\"{}\" y2=\"{legend_y}\" stroke=\"{colour}\" \
             stroke-width=\"2\"{dash}/><text x=\"{}\" y=\"{}\">{}</text>",
            legend_x + 24.0,
            legend_x + 30.0,
            legend_y + 4.0,
            escape(engine)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Draws the frame, decade grid lines and labels.
fn axes(
    out: &mut String,
    (x_lo, x_hi): (f64, f64),
    (y_lo, y_hi): (f64, f64),
    x_of: &dyn Fn(f64) -> f64,
    y_of: &dyn Fn(f64) -> f64,
) {
    let (left, right) = (x_of(10f64.powf(x_lo)), x_of(10f64.powf(x_hi)));
    let (top, bottom) = (y_of(10f64.powf(y_hi)), y_of(10f64.powf(y_lo)));
    for decade in (x_lo as i32)..=(x_hi as i32) {
        let x = x_of(10f64.powi(decade));
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            bottom + 18.0,
            number_label(10f64.powi(decade))
        );
    }
    for decade in (y_lo as i32)..=(y_hi as i32) {
        let y = y_of(10f64.powi(decade));
        let _ = writeln!(
            out,
            "<line x1=\"{left:.1}\" y1=\"{y:.1}\" x2=\"{right:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} s</text>",
            left - 6.0,
            y + 4.0,
            number_label(10f64.powi(decade))
        );
    }
    let _ = writeln!(
        out,
        "<rect x=\"{left:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" \
         stroke=\"#444\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">entries \
         (log scale)</text>\n<text transform=\"translate(16,{:.1}) rotate(-90)\" \
         text-anchor=\"middle\">bringup time, median (log scale)</text>",
        right - left,
        bottom - top,
        (left + right) / 2.0,
        bottom + 38.0,
        (top + bottom) / 2.0
    );
}

/// The whole decades (as log10) around `values`, at least one decade wide.
fn decades(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let (lo, hi) = (lo.log10().floor(), hi.log10().ceil());
    (lo, if hi > lo { hi } else { lo + 1.0 })
}

fn number_label(value: f64) -> String {
    match value {
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}k", v / 1e3),
        v => format!("{v}"),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::super::results::Row;
    use super::super::runner::Sample;
    use super::*;

    #[test]
    fn the_plot_has_a_line_per_engine_and_a_point_per_row() {
        let sample = |secs| Sample {
            total_secs: secs,
            ..Sample::default()
        };
        let rows = vec![
            Row::from_samples("serial".into(), 10_000, 1, &[sample(0.5)]),
            Row::from_samples("serial".into(), 100_000, 1, &[sample(5.0)]),
            Row::from_samples("uring q=64".into(), 10_000, 64, &[sample(0.05)]),
            Row::from_samples("uring q=64".into(), 100_000, 64, &[sample(0.5)]),
        ];
        let svg = svg(&rows, "bringup <test>");
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("bringup &lt;test&gt;"));
        assert!(svg.contains(">100k<"));
        assert_eq!(decades([0.05, 5.0].into_iter()), (-2.0, 1.0));
    }
}
