//! A minimal SVG text builder: escaping, fixed-precision numbers and the few elements the charts
//! use. Everything is written with presentation attributes, because GitHub strips `<style>`.

use std::fmt::{self, Write as _};

use crate::scale::Axis;
use crate::style;

/// Escapes `text` for use in XML character data and in double- or single-quoted attributes.
///
/// Characters that XML 1.0 forbids outright (most C0 controls) become U+FFFD, so that any label
/// still yields a well-formed document.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Formats a coordinate with two decimals: fixed, so output is byte-identical across runs and
/// platforms, and fine enough for any screen. Non-finite values become 0 as a last line of
/// defence for valid output; callers filter them earlier.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "0.00".to_string();
    }
    let s = format!("{v:.2}");
    if s == "-0.00" { "0.00".to_string() } else { s }
}

/// Horizontal text alignment, as SVG's `text-anchor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Text starts at the point.
    Start,
    /// Text is centred on the point.
    Middle,
    /// Text ends at the point.
    End,
}

impl Anchor {
    fn as_str(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

/// How a piece of text is drawn.
#[derive(Debug, Clone, Copy)]
pub struct TextStyle {
    /// Font size in px.
    pub size: f64,
    /// Horizontal alignment.
    pub anchor: Anchor,
    /// Rotation in degrees around the anchor point (negative = counter-clockwise).
    pub rotate: f64,
    /// Fill colour.
    pub colour: &'static str,
    /// Bold weight.
    pub bold: bool,
    /// Italic style.
    pub italic: bool,
    /// A white outline behind the glyphs, so text stays legible where it crosses data lines.
    pub halo: bool,
}

impl TextStyle {
    /// Dark, upright, unrotated text of `size` px.
    pub fn new(size: f64, anchor: Anchor) -> Self {
        TextStyle {
            size,
            anchor,
            rotate: 0.0,
            colour: style::TEXT,
            bold: false,
            italic: false,
            halo: false,
        }
    }
}

/// Accumulates one SVG document.
pub struct Svg {
    buf: String,
}

impl Svg {
    /// Starts a document of `width` × `height` px with a white background and `title` as its
    /// accessible name.
    pub fn new(width: f64, height: f64, title: &str) -> Self {
        let mut svg = Svg {
            buf: String::with_capacity(16 * 1024),
        };
        let (w, h) = (num(width), num(height));
        svg.push(format_args!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" \
             width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
             font-family=\"sans-serif\">\n"
        ));
        if !title.is_empty() {
            svg.push(format_args!("<title>{}</title>\n", escape(title)));
        }
        svg.push(format_args!(
            "<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n"
        ));
        svg
    }

    /// Appends formatted text; writing into a `String` cannot fail, so the result is dropped.
    pub fn push(&mut self, args: fmt::Arguments<'_>) {
        let _ = self.buf.write_fmt(args);
    }

    /// Opens a group with an `id`, so tests and readers can find the parts of a chart.
    pub fn open_group(&mut self, id: &str) {
        self.push(format_args!("<g id=\"{}\">\n", escape(id)));
    }

    /// Closes the innermost open group.
    pub fn close_group(&mut self) {
        self.buf.push_str("</g>\n");
    }

    /// A straight line; `dash` is an SVG `stroke-dasharray` value.
    pub fn line(
        &mut self,
        from: (f64, f64),
        to: (f64, f64),
        stroke: &str,
        width: f64,
        dash: Option<&str>,
    ) {
        self.push(format_args!(
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"{}\"{}/>\n",
            num(from.0),
            num(from.1),
            num(to.0),
            num(to.1),
            stroke,
            num(width),
            dash_attr(dash)
        ));
    }

    /// A rectangle with extra presentation attributes (`fill=…` etc.) written verbatim.
    pub fn rect(&mut self, x: f64, y: f64, width: f64, height: f64, attrs: &str) {
        self.push(format_args!(
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" {attrs}/>\n",
            num(x),
            num(y),
            num(width.max(0.0)),
            num(height.max(0.0)),
        ));
    }

    /// An open polyline through `points` (one element per series, never split).
    pub fn polyline(&mut self, points: &[(f64, f64)], stroke: &str, dash: Option<&str>) {
        let mut coords = String::with_capacity(points.len() * 16);
        for (i, (x, y)) in points.iter().enumerate() {
            if i > 0 {
                coords.push(' ');
            }
            let _ = write!(coords, "{},{}", num(*x), num(*y));
        }
        self.push(format_args!(
            "<polyline points=\"{coords}\" fill=\"none\" stroke=\"{stroke}\" stroke-width=\"2\" \
             stroke-linejoin=\"round\" stroke-linecap=\"round\"{}/>\n",
            dash_attr(dash)
        ));
    }

    /// A filled dot, so a one-point series is visible.
    pub fn dot(&mut self, at: (f64, f64), fill: &str) {
        self.push(format_args!(
            "<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{fill}\"/>\n",
            num(at.0),
            num(at.1)
        ));
    }

    /// Text at `at` (baseline position), escaped.
    pub fn text(&mut self, at: (f64, f64), content: &str, style: TextStyle) {
        let (x, y) = (num(at.0), num(at.1));
        let mut attrs = format!(
            "x=\"{x}\" y=\"{y}\" font-size=\"{}\" text-anchor=\"{}\"",
            num(style.size),
            style.anchor.as_str()
        );
        if style.bold {
            attrs.push_str(" font-weight=\"bold\"");
        }
        if style.italic {
            attrs.push_str(" font-style=\"italic\"");
        }
        if style.rotate != 0.0 {
            let _ = write!(
                attrs,
                " transform=\"rotate({} {x} {y})\"",
                num(style.rotate)
            );
        }
        let content = escape(content);
        if style.halo {
            // A separate white-stroked copy underneath, rather than SVG 2's paint-order, so the
            // halo can never cover the glyphs in a renderer that ignores paint-order.
            self.push(format_args!(
                "<text {attrs} fill=\"#ffffff\" stroke=\"#ffffff\" stroke-width=\"3\" \
                 stroke-linejoin=\"round\">{content}</text>\n"
            ));
        }
        self.push(format_args!(
            "<text {attrs} fill=\"{}\">{content}</text>\n",
            style.colour
        ));
    }

    /// Closes the document and returns it.
    pub fn finish(mut self) -> String {
        self.buf.push_str("</svg>\n");
        self.buf
    }
}

fn dash_attr(dash: Option<&str>) -> String {
    dash.map(|d| format!(" stroke-dasharray=\"{d}\""))
        .unwrap_or_default()
}

/// The rectangle data is drawn in, in px.
#[derive(Debug, Clone, Copy)]
pub struct PlotArea {
    /// Left edge.
    pub left: f64,
    /// Top edge.
    pub top: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

impl PlotArea {
    /// Right edge.
    pub fn right(&self) -> f64 {
        self.left + self.width
    }

    /// Bottom edge.
    pub fn bottom(&self) -> f64 {
        self.top + self.height
    }

    /// Pixel x of data value `v` on `axis`.
    pub fn x(&self, axis: &Axis, v: f64) -> f64 {
        self.left + axis.fraction(v) * self.width
    }

    /// Pixel y of data value `v` on `axis` (SVG y grows downwards).
    pub fn y(&self, axis: &Axis, v: f64) -> f64 {
        self.bottom() - axis.fraction(v) * self.height
    }
}

/// Width of the widest tick label on `axis` in px.
pub fn tick_label_width(axis: &Axis) -> f64 {
    axis.labels
        .iter()
        .map(|l| style::text_width(l, style::TICK_SIZE))
        .fold(0.0, f64::max)
}

/// Draws horizontal grid lines, tick marks and tick labels of the y axis, plus the axis line.
pub fn draw_y_axis(svg: &mut Svg, area: &PlotArea, axis: &Axis) {
    svg.open_group("y-axis");
    for (tick, label) in axis.ticks.iter().zip(&axis.labels) {
        let y = area.y(axis, *tick);
        svg.line((area.left, y), (area.right(), y), style::GRID, 1.0, None);
        svg.line((area.left - 5.0, y), (area.left, y), style::AXIS, 1.0, None);
        let style = TextStyle::new(style::TICK_SIZE, Anchor::End);
        // +4 centres 11 px digits vertically on the tick.
        svg.text((area.left - 8.0, y + 4.0), label, style);
    }
    svg.line(
        (area.left, area.top),
        (area.left, area.bottom()),
        style::AXIS,
        1.0,
        None,
    );
    svg.close_group();
}

/// Draws vertical grid lines, tick marks and tick labels of the x axis, plus the axis line.
pub fn draw_x_axis(svg: &mut Svg, area: &PlotArea, axis: &Axis) {
    svg.open_group("x-axis");
    for (tick, label) in axis.ticks.iter().zip(&axis.labels) {
        let x = area.x(axis, *tick);
        svg.line((x, area.top), (x, area.bottom()), style::GRID, 1.0, None);
        svg.line(
            (x, area.bottom()),
            (x, area.bottom() + 5.0),
            style::AXIS,
            1.0,
            None,
        );
        let style = TextStyle::new(style::TICK_SIZE, Anchor::Middle);
        svg.text((x, area.bottom() + 18.0), label, style);
    }
    svg.line(
        (area.left, area.bottom()),
        (area.right(), area.bottom()),
        style::AXIS,
        1.0,
        None,
    );
    svg.close_group();
}

/// Draws the chart title centred over the canvas.
pub fn draw_title(svg: &mut Svg, canvas_width: f64, title: &str) {
    if title.is_empty() {
        return;
    }
    let mut style = TextStyle::new(style::TITLE_SIZE, Anchor::Middle);
    style.bold = true;
    svg.text((canvas_width / 2.0, 24.0), title, style);
}

/// Draws the y-axis label rotated along the left edge, centred on the plot area.
pub fn draw_y_label(svg: &mut Svg, area: &PlotArea, label: &str) {
    if label.is_empty() {
        return;
    }
    let mut style = TextStyle::new(style::LABEL_SIZE, Anchor::Middle);
    style.rotate = -90.0;
    svg.text((16.0, area.top + area.height / 2.0), label, style);
}

/// Writes a muted "no data" note in the middle of the plot area.
pub fn draw_no_data(svg: &mut Svg, area: &PlotArea) {
    let mut style = TextStyle::new(style::LABEL_SIZE, Anchor::Middle);
    style.colour = style::TEXT_MUTED;
    style.italic = true;
    svg.text(
        (area.left + area.width / 2.0, area.top + area.height / 2.0),
        "no data",
        style,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_all_markup_characters() {
        assert_eq!(
            escape(r#"a<b & "c" 'd'>"#),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;"
        );
        assert_eq!(escape("ok\u{1}"), "ok\u{FFFD}");
    }

    #[test]
    fn numbers_are_fixed_precision() {
        assert_eq!(num(1.0), "1.00");
        assert_eq!(num(-0.001), "0.00");
        assert_eq!(num(2.0 / 3.0), "0.67");
        assert_eq!(num(f64::NAN), "0.00");
    }
}
