//! The pieces the report's hand-written SVG charts share: the document
//! head, one row of a horizontal bar chart, and the labels of a log axis.

use std::fmt::Write as _;

/// The opening of a chart `w` x `h` pixels with `title` on top; the caller
/// adds the body and `</svg>`.
pub fn open(w: f64, h: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<text x=\"10\" y=\"20\" font-size=\"14\">{title}</text>\n"
    )
}

/// One row of a horizontal bar chart; x positions in pixels.
pub struct BarRow<'a> {
    /// Top of the row.
    pub y: f64,
    pub label: &'a str,
    pub color: &'a str,
    /// Where bars start.
    pub left: f64,
    /// Where this bar ends.
    pub bar: f64,
    /// A mark across the bar (e.g. the median under a p99 bar).
    pub tick: Option<f64>,
    /// A line from the bar's end to here (e.g. a higher percentile).
    pub whisker: Option<f64>,
    /// Written after the bar or whisker.
    pub value: String,
}

impl BarRow<'_> {
    pub fn write(&self, o: &mut String) {
        let y = self.y;
        let _ = write!(
            o,
            "<text x=\"10\" y=\"{:.0}\">{}</text><rect x=\"{}\" y=\"{y:.0}\" width=\"{:.1}\" height=\"14\" fill=\"{}\"/>",
            y + 11.0,
            self.label,
            self.left,
            self.bar - self.left,
            self.color,
        );
        if let Some(t) = self.tick {
            let _ = write!(
                o,
                "<line x1=\"{t:.1}\" x2=\"{t:.1}\" y1=\"{y:.0}\" y2=\"{:.0}\" stroke=\"#000\" stroke-width=\"2\"/>",
                y + 14.0
            );
        }
        if let Some(wh) = self.whisker {
            let _ = write!(
                o,
                "<line x1=\"{:.1}\" x2=\"{wh:.1}\" y1=\"{:.0}\" y2=\"{:.0}\" stroke=\"#333\"/>",
                self.bar,
                y + 7.0,
                y + 7.0
            );
        }
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{:.0}\">{}</text>",
            self.whisker.unwrap_or(self.bar) + 4.0,
            y + 11.0,
            self.value
        );
    }
}

/// Labels of a log axis at `at` pixels from the top: each value in `ticks`
/// up to 1.5 x `max`, placed by `x`.
pub fn log_axis(o: &mut String, ticks: &[f64], max: f64, x: impl Fn(f64) -> f64, at: f64) {
    for &ms in ticks {
        if ms <= max * 1.5 {
            let _ = writeln!(
                o,
                "<text x=\"{:.1}\" y=\"{at:.0}\" fill=\"#666\">{ms}</text>",
                x(ms)
            );
        }
    }
}
