//! Line charts drawn on the server as SVG: no script, no external library, readable without
//! JavaScript and by the page's strict content policy (inline in the page's HTML).

use std::fmt::Write as _;

/// One line of a chart.
#[derive(Clone, Debug)]
pub(super) struct Series {
    /// Its name in the legend.
    pub name: &'static str,
    /// Its colour (a CSS colour).
    pub colour: &'static str,
    /// One value per bucket.
    pub values: Vec<u64>,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;

/// An SVG line chart of `series` over buckets labelled `labels` (every few shown).
pub(super) fn line_chart(title: &str, labels: &[String], series: &[Series]) -> String {
    let buckets = labels.len().max(1);
    let peak = series
        .iter()
        .flat_map(|line| line.values.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = nice_ceiling(peak);
    let plot_width = WIDTH - LEFT - 8.0;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let x = |bucket: usize| {
        LEFT + if buckets == 1 {
            plot_width / 2.0
        } else {
            plot_width * bucket as f64 / (buckets - 1) as f64
        }
    };
    let y = |value: u64| TOP + plot_height * (1.0 - value as f64 / scale as f64);

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>"#,
        escape(title)
    );
    let intervals = gridline_intervals(scale);
    for step in 0..=intervals {
        let value = scale * step / intervals;
        let row = y(value);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{row:.1}" y2="{row:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{value}</text>"##,
            WIDTH - 8.0,
            LEFT - 4.0,
            row + 3.0
        );
    }
    let every = buckets.div_ceil(8).max(1);
    for (bucket, label) in labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"#,
            x(bucket),
            HEIGHT - 10.0,
            escape(label)
        );
    }
    for line in series {
        let points: Vec<String> = line
            .values
            .iter()
            .enumerate()
            .map(|(bucket, value)| format!("{:.1},{:.1}", x(bucket), y(*value)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"><title>{}</title></polyline>"#,
            line.colour,
            points.join(" "),
            escape(line.name)
        );
    }
    let mut legend_x = LEFT;
    for line in series {
        let _ = write!(
            svg,
            r#"<rect x="{legend_x:.1}" y="0" width="10" height="10" fill="{}"/><text x="{:.1}" y="9" font-size="10">{}</text>"#,
            line.colour,
            legend_x + 13.0,
            escape(line.name)
        );
        legend_x += 18.0 + 6.5 * line.name.len() as f64;
    }
    svg.push_str("</svg>");
    svg
}

/// The smallest of 1, 2, 5 × 10^n at or above `value`, so the axis reads in round numbers.
fn nice_ceiling(value: u64) -> u64 {
    let mut magnitude = 1u64;
    loop {
        for step in [1, 2, 5] {
            if step * magnitude >= value {
                return step * magnitude;
            }
        }
        magnitude = magnitude.saturating_mul(10);
    }
}

/// How many equal steps the axis up to `scale` is cut into: whole numbers at every line
/// (a peak of 2 messages gets lines at 0, 1 and 2, not 0, 0, 1, 1, 2).
fn gridline_intervals(scale: u64) -> u64 {
    [4, 5, 2]
        .into_iter()
        .find(|&intervals| intervals <= scale && scale.is_multiple_of(intervals))
        .unwrap_or(1)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_rounds_up_to_a_readable_number() {
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(500), 500);
        assert_eq!(nice_ceiling(501), 1000);
    }

    #[test]
    fn every_gridline_of_the_axis_has_its_own_whole_number() {
        for peak in [1, 2, 3, 5, 7, 10, 11, 20, 45, 100, 499, 501, 1_000_000] {
            let scale = nice_ceiling(peak);
            let intervals = gridline_intervals(scale);
            assert!(scale.is_multiple_of(intervals), "peak {peak}");
            let values: Vec<u64> = (0..=intervals).map(|i| scale * i / intervals).collect();
            let mut distinct = values.clone();
            distinct.dedup();
            assert_eq!(distinct, values, "peak {peak}");
            assert!(values.len() >= 2, "peak {peak}");
        }
    }

    #[test]
    fn a_chart_has_one_line_per_series_and_escapes_names() {
        let labels: Vec<String> = (0..24).map(|hour| format!("{hour}h")).collect();
        let svg = line_chart(
            "a <title>",
            &labels,
            &[
                Series {
                    name: "submitted",
                    colour: "#36c",
                    values: (0..24).collect(),
                },
                Series {
                    name: "delivered",
                    colour: "#393",
                    values: vec![0; 24],
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a &lt;title&gt;") && !svg.contains("<title>a <title>"));
        // The highest point of the rising line touches the top of the plot (23 → scale 50).
        assert!(svg.contains(">50</text>"));
    }
}
