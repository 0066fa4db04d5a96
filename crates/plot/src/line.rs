//! Line charts: several series against a shared x axis, with vertical markers.

use crate::scale::{self, Axis};
use crate::style;
use crate::svg::{self, Anchor, PlotArea, Svg, TextStyle};

/// Target number of intervals between x ticks.
const X_TICKS: usize = 6;
/// Target number of intervals between y ticks.
const Y_TICKS: usize = 5;
/// Height of one legend row in px.
const LEGEND_ROW: f64 = 18.0;
/// Length of the line sample in front of a legend label.
const LEGEND_SWATCH: f64 = 24.0;
/// The plot area never gets narrower or shorter than this; the canvas grows instead.
const MIN_PLOT_WIDTH: f64 = 200.0;
const MIN_PLOT_HEIGHT: f64 = 160.0;

/// One line of a line chart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// `(x, y)` points, drawn in the given order; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
    /// Forces a dash pattern (e.g. to set baselines apart from the method being studied).
    pub dashed: bool,
}

impl Series {
    /// A solid series.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            label: label.into(),
            points,
            dashed: false,
        }
    }

    /// The same series, drawn dashed.
    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }
}

/// A vertical marker line with a label (e.g. "ODM reaches TPW's final value").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Marker {
    /// Position on the x axis; a non-finite marker is skipped.
    pub x: f64,
    /// Text written along the line.
    pub label: String,
}

impl Marker {
    /// A marker at `x`.
    pub fn new(x: f64, label: impl Into<String>) -> Self {
        Marker {
            x,
            label: label.into(),
        }
    }
}

/// A line chart with a legend on the right; see the crate docs for an example.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Title above the chart; empty for none.
    pub title: String,
    /// Label under the x axis; empty for none.
    pub x_label: String,
    /// Label along the y axis; empty for none.
    pub y_label: String,
    /// The lines, styled by position (see [`crate::PALETTE`]).
    pub series: Vec<Series>,
    /// Vertical markers; their positions are included in the x range.
    pub markers: Vec<Marker>,
    /// Logarithmic y axis; non-positive y values are then skipped.
    pub log_y: bool,
    /// Requested canvas width in px; grows if the legend or title would not fit.
    pub width: u32,
    /// Requested canvas height in px; grows if the legend would not fit.
    pub height: u32,
}

impl LineChart {
    /// An empty 800 × 450 chart with linear axes.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        LineChart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            markers: Vec::new(),
            log_y: false,
            width: 800,
            height: 450,
        }
    }

    /// Adds a series (builder style).
    pub fn with_series(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    /// Adds a marker (builder style).
    pub fn with_marker(mut self, marker: Marker) -> Self {
        self.markers.push(marker);
        self
    }

    /// Switches the y axis to log scale (builder style).
    pub fn log_y(mut self) -> Self {
        self.log_y = true;
        self
    }

    /// Sets the requested canvas size in px (builder style).
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    /// The points of each series that can be drawn, in order.
    fn drawable_points(&self) -> Vec<Vec<(f64, f64)>> {
        self.series
            .iter()
            .map(|s| {
                s.points
                    .iter()
                    .copied()
                    .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.log_y || *y > 0.0))
                    .collect()
            })
            .collect()
    }

    /// Renders the chart as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let points = self.drawable_points();
        let markers: Vec<&Marker> = self.markers.iter().filter(|m| m.x.is_finite()).collect();
        let has_data = points.iter().any(|p| !p.is_empty());

        let x_range = min_max(
            points
                .iter()
                .flatten()
                .map(|p| p.0)
                .chain(markers.iter().map(|m| m.x)),
        );
        let x_axis = match x_range {
            Some((lo, hi)) => scale::linear_axis(lo, hi, X_TICKS),
            None => scale::linear_axis(0.0, 1.0, X_TICKS),
        };
        let y_range = min_max(points.iter().flatten().map(|p| p.1));
        let y_axis = match (y_range, self.log_y) {
            (Some((lo, hi)), true) => scale::log_axis(lo, hi, Y_TICKS),
            (Some((lo, hi)), false) => scale::linear_axis(lo, hi, Y_TICKS),
            (None, true) => scale::log_axis(1.0, 10.0, Y_TICKS),
            (None, false) => scale::linear_axis(0.0, 1.0, Y_TICKS),
        };

        let layout = Layout::new(self, &x_axis, &y_axis);
        let area = layout.area;
        let mut svg = Svg::new(layout.width, layout.height, &self.title);
        svg::draw_title(&mut svg, layout.width, &self.title);
        svg::draw_y_axis(&mut svg, &area, &y_axis);
        svg::draw_x_axis(&mut svg, &area, &x_axis);
        svg::draw_y_label(&mut svg, &area, &self.y_label);
        if !self.x_label.is_empty() {
            let style = TextStyle::new(style::LABEL_SIZE, Anchor::Middle);
            let at = (area.left + area.width / 2.0, area.bottom() + 40.0);
            svg.text(at, &self.x_label, style);
        }

        if !markers.is_empty() {
            svg.open_group("markers");
            for marker in &markers {
                let x = area.x(&x_axis, marker.x);
                let (top, bottom) = ((x, area.top), (x, area.bottom()));
                svg.line(top, bottom, style::TEXT_MUTED, 1.0, Some("4 3"));
                let mut style = TextStyle::new(style::TICK_SIZE, Anchor::End);
                style.rotate = -90.0;
                style.colour = style::TEXT_MUTED;
                style.halo = true;
                // Rotated text sits on the left of its anchor; 4 px keeps it off the line.
                svg.text((x - 4.0, area.top + 4.0), &marker.label, style);
            }
            svg.close_group();
        }

        svg.open_group("series");
        for (index, (series, pts)) in self.series.iter().zip(&points).enumerate() {
            if pts.is_empty() {
                continue;
            }
            let colour = style::series_colour(index);
            let pixels: Vec<(f64, f64)> = pts
                .iter()
                .map(|&(x, y)| (area.x(&x_axis, x), area.y(&y_axis, y)))
                .collect();
            svg.polyline(&pixels, colour, style::line_dash(index, series.dashed));
            if let [only] = pixels.as_slice() {
                // A one-point polyline has no length and would be invisible.
                svg.dot(*only, colour);
            }
        }
        svg.close_group();

        if !self.series.is_empty() {
            svg.open_group("legend");
            let x = layout.legend_left;
            for (index, series) in self.series.iter().enumerate() {
                let y = area.top + 12.0 + index as f64 * LEGEND_ROW;
                let dash = style::line_dash(index, series.dashed);
                let colour = style::series_colour(index);
                svg.line(
                    (x, y - 4.0),
                    (x + LEGEND_SWATCH, y - 4.0),
                    colour,
                    2.5,
                    dash,
                );
                let style = TextStyle::new(style::LEGEND_SIZE, Anchor::Start);
                svg.text((x + LEGEND_SWATCH + 6.0, y), &series.label, style);
            }
            svg.close_group();
        }

        if !has_data {
            svg::draw_no_data(&mut svg, &area);
        }
        svg.finish()
    }
}

/// Canvas size and where the plot area and legend go.
struct Layout {
    width: f64,
    height: f64,
    area: PlotArea,
    legend_left: f64,
}

impl Layout {
    fn new(chart: &LineChart, x_axis: &Axis, y_axis: &Axis) -> Self {
        let top = if chart.title.is_empty() { 16.0 } else { 40.0 };
        let y_label_space = if chart.y_label.is_empty() { 0.0 } else { 22.0 };
        let left = 10.0 + y_label_space + svg::tick_label_width(y_axis) + 10.0;
        let x_label_space = if chart.x_label.is_empty() { 0.0 } else { 22.0 };
        let bottom = 28.0 + x_label_space + 8.0;

        // The last x tick label is centred on the plot's right edge and must not reach the legend.
        let last_x_label = x_axis.labels.last().map_or("", String::as_str);
        let gap = (style::text_width(last_x_label, style::TICK_SIZE) / 2.0 + 12.0).max(20.0);
        let legend_width = if chart.series.is_empty() {
            0.0
        } else {
            let widest = chart
                .series
                .iter()
                .map(|s| style::text_width(&s.label, style::LEGEND_SIZE))
                .fold(0.0, f64::max);
            LEGEND_SWATCH + 6.0 + widest + 12.0
        };
        let right = gap + legend_width;

        let requested_width = f64::from(chart.width);
        let min_plot_width = (requested_width * 0.6).max(MIN_PLOT_WIDTH);
        let title_width = style::text_width(&chart.title, style::TITLE_SIZE) + 24.0;
        let width = requested_width
            .max(left + min_plot_width + right)
            .max(title_width);

        let legend_height = chart.series.len() as f64 * LEGEND_ROW + 12.0;
        let height = f64::from(chart.height)
            .max(top + MIN_PLOT_HEIGHT + bottom)
            .max(top + legend_height + bottom);

        let area = PlotArea {
            left,
            top,
            width: width - left - right,
            height: height - top - bottom,
        };
        Layout {
            width,
            height,
            area,
            legend_left: area.right() + gap,
        }
    }
}

/// Smallest and largest of `values`, or `None` when there are none.
pub(crate) fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).expect("well-formed SVG")
    }

    fn count(doc: &roxmltree::Document<'_>, tag: &str) -> usize {
        doc.descendants().filter(|n| n.has_tag_name(tag)).count()
    }

    fn sample() -> LineChart {
        LineChart::new("Loss", "step", "loss")
            .with_series(Series::new(
                "uniform",
                vec![(0.0, 4.0), (100.0, 3.0), (200.0, 2.5)],
            ))
            .with_series(Series::new("odm", vec![(0.0, 4.1), (100.0, 2.8)]).dashed())
            .with_marker(Marker::new(150.0, "odm reaches uniform"))
    }

    #[test]
    fn renders_one_polyline_per_non_empty_series() {
        let chart = sample().with_series(Series::new("empty", vec![(f64::NAN, 1.0)]));
        let svg = chart.to_svg();
        let doc = parse(&svg);
        assert_eq!(count(&doc, "polyline"), 2);
        assert!(svg.contains("stroke-dasharray=\"8 4\""));
        assert!(!svg.contains("no data"));
        // Legend lists every series, including the one with nothing to draw.
        assert!(svg.contains(">empty</text>"));
    }

    #[test]
    fn single_point_gets_a_dot_and_finite_axes() {
        let chart = LineChart::new("one", "x", "y").with_series(Series::new("p", vec![(3.0, 3.0)]));
        let svg = chart.to_svg();
        let doc = parse(&svg);
        assert_eq!(count(&doc, "polyline"), 1);
        assert_eq!(count(&doc, "circle"), 1);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn log_scale_skips_non_positive_values() {
        let chart = LineChart::new("ppl", "step", "perplexity")
            .log_y()
            .with_series(Series::new("a", vec![(0.0, 0.0), (1.0, -2.0)]))
            .with_series(Series::new("b", vec![(0.0, 900.0), (1.0, 2.0)]));
        let doc_text = chart.to_svg();
        let doc = parse(&doc_text);
        assert_eq!(count(&doc, "polyline"), 1);
        for label in ["1", "10", "100", "1000"] {
            assert!(
                doc_text.contains(&format!(">{label}</text>")),
                "missing tick {label}"
            );
        }
    }

    #[test]
    fn many_series_grow_the_canvas_instead_of_overlapping() {
        let mut chart = LineChart::new("22 domains", "step", "loss").size(400, 200);
        for i in 0..22 {
            let label = format!("a rather long Pile domain name number {i}");
            chart
                .series
                .push(Series::new(label, vec![(0.0, i as f64), (1.0, 1.0)]));
        }
        let x_axis = scale::linear_axis(0.0, 1.0, X_TICKS);
        let y_axis = scale::linear_axis(0.0, 21.0, Y_TICKS);
        let layout = Layout::new(&chart, &x_axis, &y_axis);
        assert!(layout.width > 400.0 && layout.height > 200.0);
        assert!(layout.area.width >= MIN_PLOT_WIDTH);
        // Legend rows all fit below the top of the plot area and above the canvas bottom.
        assert!(layout.area.top + 12.0 + 21.0 * LEGEND_ROW < layout.height);
        assert!(layout.legend_left > layout.area.right());
        let legend_right = layout.legend_left
            + LEGEND_SWATCH
            + 6.0
            + style::text_width(
                "a rather long Pile domain name number 21",
                style::LEGEND_SIZE,
            );
        assert!(legend_right <= layout.width);
    }

    #[test]
    fn min_max_handles_empty() {
        assert_eq!(min_max(std::iter::empty()), None);
        assert_eq!(min_max([3.0, -1.0, 2.0].into_iter()), Some((-1.0, 3.0)));
    }
}
