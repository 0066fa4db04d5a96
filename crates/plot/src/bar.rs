//! Grouped bar charts: one group per category (e.g. domain), one bar per series (e.g. method).

use crate::line::min_max;
use crate::scale::{self, Axis};
use crate::style;
use crate::svg::{self, Anchor, PlotArea, Svg, TextStyle};

/// Target number of intervals between y ticks.
const Y_TICKS: usize = 5;
/// Height of one legend row in px.
const LEGEND_ROW: f64 = 18.0;
/// Side of the colour square in front of a legend label.
const LEGEND_SWATCH: f64 = 12.0;
/// Narrowest bar in px; below this the canvas grows.
const MIN_BAR_WIDTH: f64 = 4.0;
/// Font size of group labels.
const GROUP_LABEL_SIZE: f64 = style::LEGEND_SIZE;
/// Fraction of a group's width taken by its bars; the rest separates groups.
const GROUP_FILL: f64 = 0.8;
const SIN_45: f64 = std::f64::consts::FRAC_1_SQRT_2;
const MIN_PLOT_HEIGHT: f64 = 160.0;
/// Space left and right of the canvas content.
const SIDE: f64 = 16.0;

/// One group of bars (e.g. one domain), one value per series (`None` = missing, drawn as nothing).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BarGroup {
    /// Label under the group.
    pub label: String,
    /// Bar heights, by series position; `None` and non-finite values draw no bar.
    pub values: Vec<Option<f64>>,
    /// ± half-width of an error bar, by series position; may be empty or shorter than `values`.
    pub errors: Vec<Option<f64>>,
}

impl BarGroup {
    /// A group without error bars.
    pub fn new(label: impl Into<String>, values: Vec<Option<f64>>) -> Self {
        BarGroup {
            label: label.into(),
            values,
            errors: Vec::new(),
        }
    }

    /// The same group with error bars (± half-widths, by series position).
    pub fn with_errors(mut self, errors: Vec<Option<f64>>) -> Self {
        self.errors = errors;
        self
    }

    /// Drawable value of series `index`.
    fn value(&self, index: usize, log_y: bool) -> Option<f64> {
        self.values
            .get(index)
            .copied()
            .flatten()
            .filter(|v| v.is_finite() && (!log_y || *v > 0.0))
    }

    /// Drawable error half-width of series `index`; a negative one is taken by magnitude.
    fn error(&self, index: usize) -> Option<f64> {
        self.errors
            .get(index)
            .copied()
            .flatten()
            .filter(|e| e.is_finite())
            .map(f64::abs)
    }
}

/// A grouped bar chart with a legend row above the plot; see the crate docs for an example.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupedBarChart {
    /// Title above the chart; empty for none.
    pub title: String,
    /// Label along the y axis; empty for none.
    pub y_label: String,
    /// Legend text of each series, by position.
    pub series_labels: Vec<String>,
    /// The groups, left to right.
    pub groups: Vec<BarGroup>,
    /// Logarithmic y axis (bars then rise from the bottom of the axis); non-positive values are
    /// skipped. A linear axis always includes 0.
    pub log_y: bool,
    /// Requested canvas width in px; grows if bars, labels, legend or title would not fit.
    pub width: u32,
    /// Requested canvas height in px; grows if the rotated group labels need room.
    pub height: u32,
}

impl GroupedBarChart {
    /// An empty 800 × 450 chart with a linear y axis.
    pub fn new(
        title: impl Into<String>,
        y_label: impl Into<String>,
        series_labels: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        GroupedBarChart {
            title: title.into(),
            y_label: y_label.into(),
            series_labels: series_labels.into_iter().map(Into::into).collect(),
            groups: Vec::new(),
            log_y: false,
            width: 800,
            height: 450,
        }
    }

    /// Adds a group (builder style).
    pub fn with_group(mut self, group: BarGroup) -> Self {
        self.groups.push(group);
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

    /// Number of bar slots per group: every labelled series, plus any unlabelled extra values.
    fn series_count(&self) -> usize {
        self.groups
            .iter()
            .map(|g| g.values.len())
            .fold(self.series_labels.len(), usize::max)
    }

    fn y_axis(&self, series_count: usize) -> (Axis, bool) {
        let mut extents = Vec::new();
        for group in &self.groups {
            for index in 0..series_count {
                let Some(v) = group.value(index, self.log_y) else {
                    continue;
                };
                extents.push(v);
                if let Some(e) = group.error(index) {
                    extents.push(v + e);
                    extents.push(v - e);
                }
            }
        }
        let has_data = !extents.is_empty();
        let axis = if self.log_y {
            let range = min_max(extents.into_iter().filter(|v| *v > 0.0));
            // Bars rise from the bottom of the axis; halving the low end keeps the shortest bar
            // visible instead of zero-height.
            let (lo, hi) = range.map_or((1.0, 10.0), |(lo, hi)| (lo / 2.0, hi));
            scale::log_axis(lo, hi, Y_TICKS)
        } else {
            // Bars are compared by length, so the axis must start at zero.
            let (lo, hi) = min_max(extents.into_iter()).unwrap_or((0.0, 1.0));
            let (lo, hi) = (lo.min(0.0), hi.max(0.0));
            let hi = if lo == 0.0 && hi == 0.0 { 1.0 } else { hi };
            scale::linear_axis(lo, hi, Y_TICKS)
        };
        (axis, has_data)
    }

    /// Renders the chart as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let series_count = self.series_count();
        let (y_axis, has_data) = self.y_axis(series_count);
        let layout = Layout::new(self, &y_axis, series_count);
        let area = layout.area;

        let mut svg = Svg::new(layout.width, layout.height, &self.title);
        svg::draw_title(&mut svg, layout.width, &self.title);
        svg::draw_y_axis(&mut svg, &area, &y_axis);
        svg::draw_y_label(&mut svg, &area, &self.y_label);

        // Legend row(s) above the plot.
        svg.open_group("legend");
        for item in &layout.legend {
            svg.rect(
                item.x,
                item.y - 10.0,
                LEGEND_SWATCH,
                LEGEND_SWATCH,
                &style::bar_fill(item.index),
            );
            let style = TextStyle::new(style::LEGEND_SIZE, Anchor::Start);
            svg.text(
                (item.x + LEGEND_SWATCH + 6.0, item.y),
                &self.series_labels[item.index],
                style,
            );
        }
        svg.close_group();

        let group_width = layout.group_width();
        let bar_width = group_width * GROUP_FILL / series_count.max(1) as f64;
        // A 1 px gap separates neighbouring bars once they are wide enough to spare it.
        let drawn_width = if bar_width > 3.0 {
            bar_width - 1.0
        } else {
            bar_width
        };
        let base = if y_axis.log {
            area.bottom()
        } else {
            area.y(&y_axis, 0.0)
        };

        svg.open_group("bars");
        let mut error_bars = Vec::new();
        for (g, group) in self.groups.iter().enumerate() {
            let group_left = area.left + g as f64 * group_width;
            for index in 0..series_count {
                let Some(v) = group.value(index, self.log_y) else {
                    continue;
                };
                let x =
                    group_left + group_width * (1.0 - GROUP_FILL) / 2.0 + index as f64 * bar_width;
                let top = area.y(&y_axis, v);
                let (y, h) = (top.min(base), (top - base).abs());
                svg.rect(x, y, drawn_width, h, &style::bar_fill(index));
                if let Some(e) = group.error(index) {
                    let low = v - e;
                    let low_y = if y_axis.log && low <= 0.0 {
                        area.bottom()
                    } else {
                        area.y(&y_axis, low)
                    };
                    let centre = x + drawn_width / 2.0;
                    error_bars.push((
                        centre,
                        area.y(&y_axis, v + e),
                        low_y,
                        (drawn_width * 0.5).min(8.0),
                    ));
                }
            }
        }
        svg.close_group();

        if !error_bars.is_empty() {
            svg.open_group("error-bars");
            for (x, high, low, cap) in error_bars {
                svg.line((x, high), (x, low), style::TEXT, 1.2, None);
                svg.line(
                    (x - cap / 2.0, high),
                    (x + cap / 2.0, high),
                    style::TEXT,
                    1.2,
                    None,
                );
                svg.line(
                    (x - cap / 2.0, low),
                    (x + cap / 2.0, low),
                    style::TEXT,
                    1.2,
                    None,
                );
            }
            svg.close_group();
        }

        // The x axis line, at zero when the bars go negative.
        svg.line(
            (area.left, base),
            (area.right(), base),
            style::AXIS,
            1.0,
            None,
        );

        svg.open_group("group-labels");
        for (g, group) in self.groups.iter().enumerate() {
            let centre = area.left + (g as f64 + 0.5) * group_width;
            let mut style = TextStyle::new(GROUP_LABEL_SIZE, Anchor::Middle);
            if layout.rotate_labels {
                style.anchor = Anchor::End;
                style.rotate = -45.0;
                svg.text((centre, area.bottom() + 14.0), &group.label, style);
            } else {
                svg.text((centre, area.bottom() + 18.0), &group.label, style);
            }
        }
        svg.close_group();

        if !has_data {
            svg::draw_no_data(&mut svg, &area);
        }
        svg.finish()
    }
}

/// Where one legend entry goes (`y` is the text baseline).
struct LegendItem {
    index: usize,
    x: f64,
    y: f64,
}

/// Canvas size, plot area, label orientation and legend placement.
struct Layout {
    width: f64,
    height: f64,
    area: PlotArea,
    group_count: usize,
    rotate_labels: bool,
    legend: Vec<LegendItem>,
}

impl Layout {
    fn group_width(&self) -> f64 {
        self.area.width / self.group_count.max(1) as f64
    }

    fn new(chart: &GroupedBarChart, y_axis: &Axis, series_count: usize) -> Self {
        let title_height = if chart.title.is_empty() { 16.0 } else { 40.0 };
        let y_label_space = if chart.y_label.is_empty() { 0.0 } else { 22.0 };
        let axis_left = 10.0 + y_label_space + svg::tick_label_width(y_axis) + 10.0;
        let group_count = chart.groups.len().max(1);
        let label_widths: Vec<f64> = chart
            .groups
            .iter()
            .map(|g| style::text_width(&g.label, GROUP_LABEL_SIZE))
            .collect();
        let widest_label = label_widths.iter().copied().fold(0.0, f64::max);
        let legend_widths: Vec<f64> = chart
            .series_labels
            .iter()
            .map(|l| LEGEND_SWATCH + 6.0 + style::text_width(l, style::LEGEND_SIZE) + 18.0)
            .collect();
        let widest_legend = legend_widths.iter().copied().fold(0.0, f64::max);

        let min_group_width = series_count as f64 * MIN_BAR_WIDTH / GROUP_FILL + 2.0;
        let mut width = f64::from(chart.width)
            .max(style::text_width(&chart.title, style::TITLE_SIZE) + 24.0)
            .max(widest_legend + 2.0 * SIDE);
        let mut left = axis_left;
        let mut rotate_labels = false;
        // Each pass can only widen `left` or `width`, so a few passes settle the layout.
        for _ in 0..4 {
            width = width.max(left + SIDE + group_count as f64 * min_group_width);
            let group_width = (width - left - SIDE) / group_count as f64;
            rotate_labels = widest_label > group_width - 6.0;
            if rotate_labels {
                // A rotated label reaches left of its group centre by width·cos 45°.
                let overhang = label_widths
                    .iter()
                    .enumerate()
                    .map(|(i, w)| w * SIN_45 - (i as f64 + 0.5) * group_width + 6.0)
                    .fold(0.0, f64::max);
                left = left.max(overhang);
            }
        }

        // Legend entries flow left to right, wrapping within the canvas.
        let mut legend = Vec::with_capacity(legend_widths.len());
        let (mut x, mut row) = (SIDE, 0usize);
        for (index, w) in legend_widths.iter().enumerate() {
            if x > SIDE && x + w > width - SIDE {
                x = SIDE;
                row += 1;
            }
            let y = title_height + 12.0 + row as f64 * LEGEND_ROW;
            legend.push(LegendItem { index, x, y });
            x += w;
        }
        let legend_height = if legend.is_empty() {
            0.0
        } else {
            (row + 1) as f64 * LEGEND_ROW + 8.0
        };
        let top = title_height + legend_height;
        let bottom = if rotate_labels {
            14.0 + widest_label * SIN_45 + GROUP_LABEL_SIZE + 8.0
        } else {
            34.0
        };
        let height = f64::from(chart.height).max(top + MIN_PLOT_HEIGHT + bottom);
        let area = PlotArea {
            left,
            top,
            width: width - left - SIDE,
            height: height - top - bottom,
        };
        Layout {
            width,
            height,
            area,
            group_count,
            rotate_labels,
            legend,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rects_in(svg: &str, group_id: &str) -> usize {
        let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
        doc.descendants()
            .find(|n| n.attribute("id") == Some(group_id))
            .map_or(0, |g| {
                g.children().filter(|n| n.has_tag_name("rect")).count()
            })
    }

    fn sample() -> GroupedBarChart {
        GroupedBarChart::new("Perplexity", "ppl", ["uniform", "odm"])
            .with_group(BarGroup::new("Pile-CC", vec![Some(12.0), Some(10.5)]))
            .with_group(
                BarGroup::new("ArXiv", vec![Some(8.0), None]).with_errors(vec![Some(0.5), None]),
            )
            .with_group(BarGroup::new("Github", vec![Some(f64::NAN), Some(4.0)]))
    }

    #[test]
    fn draws_one_bar_per_finite_value() {
        let svg = sample().to_svg();
        assert_eq!(rects_in(&svg, "bars"), 4);
        assert_eq!(rects_in(&svg, "legend"), 2);
        assert!(svg.contains("id=\"error-bars\""));
    }

    #[test]
    fn linear_axis_starts_at_zero() {
        let chart = sample();
        let (axis, has_data) = chart.y_axis(2);
        assert!(has_data);
        assert_eq!(axis.min, 0.0);
        assert!(axis.max >= 12.0);
    }

    #[test]
    fn negative_values_extend_axis_below_zero() {
        let chart = GroupedBarChart::new("delta", "Δ loss", ["odm"])
            .with_group(BarGroup::new("a", vec![Some(-0.3)]))
            .with_group(BarGroup::new("b", vec![Some(0.2)]));
        let (axis, _) = chart.y_axis(1);
        assert!(axis.min <= -0.3 && axis.max >= 0.2);
        assert_eq!(rects_in(&chart.to_svg(), "bars"), 2);
    }

    #[test]
    fn long_labels_rotate_and_grow_bottom_margin() {
        let mut chart = GroupedBarChart::new("22 domains", "ppl", ["a", "b", "c"]);
        for i in 0..22 {
            let label = format!("Pile domain with a long name {i}");
            chart
                .groups
                .push(BarGroup::new(label, vec![Some(1.0), Some(2.0), Some(3.0)]));
        }
        let (axis, _) = chart.y_axis(3);
        let layout = Layout::new(&chart, &axis, 3);
        assert!(layout.rotate_labels);
        let label_drop =
            style::text_width("Pile domain with a long name 21", GROUP_LABEL_SIZE) * SIN_45;
        assert!(layout.height - layout.area.bottom() > label_drop);
        // The first label's left end stays on the canvas.
        let first = style::text_width("Pile domain with a long name 0", GROUP_LABEL_SIZE) * SIN_45;
        assert!(layout.area.left + layout.group_width() / 2.0 - first >= 0.0);
        let svg = chart.to_svg();
        assert!(svg.contains("rotate(-45"));
        assert!(svg.contains(">Pile domain with a long name 21</text>"));
    }

    #[test]
    fn short_labels_stay_horizontal() {
        let (axis, _) = sample().y_axis(2);
        let layout = Layout::new(&sample(), &axis, 2);
        assert!(!layout.rotate_labels);
    }

    #[test]
    fn log_scale_bars_rise_from_axis_bottom() {
        let chart = GroupedBarChart::new("ppl", "ppl", ["a"])
            .log_y()
            .with_group(BarGroup::new("x", vec![Some(2.0)]).with_errors(vec![Some(5.0)]))
            .with_group(BarGroup::new("y", vec![Some(900.0)]))
            .with_group(BarGroup::new("z", vec![Some(-1.0)]));
        let (axis, _) = chart.y_axis(1);
        assert!(axis.log);
        // Data [2, 900], low end halved to 1: whole decades 1 ..= 1000.
        assert_eq!(axis.ticks, vec![1.0, 10.0, 100.0, 1000.0]);
        let svg = chart.to_svg();
        assert_eq!(rects_in(&svg, "bars"), 2);
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        let heights: Vec<f64> = doc
            .descendants()
            .find(|n| n.attribute("id") == Some("bars"))
            .map(|g| {
                g.children()
                    .filter_map(|n| n.attribute("height"))
                    .filter_map(|h| h.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        assert!(heights.iter().all(|h| *h > 1.0), "{heights:?}");
    }

    #[test]
    fn legend_wraps_into_rows() {
        let labels: Vec<String> = (0..12).map(|i| format!("mixer number {i}")).collect();
        let chart = GroupedBarChart::new("t", "y", labels)
            .with_group(BarGroup::new("g", vec![Some(1.0)]))
            .size(400, 300);
        let (axis, _) = chart.y_axis(12);
        let layout = Layout::new(&chart, &axis, 12);
        let rows = layout
            .legend
            .iter()
            .map(|i| i.y.to_bits())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert!(rows > 1);
        let last_row_y = layout.legend.iter().map(|i| i.y).fold(0.0, f64::max);
        assert!(last_row_y < layout.area.top);
    }
}
