//! Colours, dash patterns and text metrics shared by the charts.

/// Tableau 10: ten hues chosen to stay apart for common forms of colour blindness and on white.
pub const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// Dash pattern used when a solid series is forced to be dashed, and for the second colour cycle.
const LONG_DASH: &str = "8 4";
/// Dash pattern for the third colour cycle.
const DOTS: &str = "2 3";

/// Colour of series `index`; repeats every [`PALETTE`] length, where the dash pattern changes.
pub fn series_colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

/// Which pass through the palette `index` is in (0, 1 or 2, then repeating).
fn cycle(index: usize) -> usize {
    (index / PALETTE.len()) % 3
}

/// Line dash pattern of series `index` (`None` = solid).
///
/// Series `i`, `i + 10` and `i + 20` share a colour, so they are solid, long-dashed and dotted.
/// `forced` makes an otherwise solid series long-dashed.
pub fn line_dash(index: usize, forced: bool) -> Option<&'static str> {
    match cycle(index) {
        0 if forced => Some(LONG_DASH),
        0 => None,
        1 => Some(LONG_DASH),
        _ => Some(DOTS),
    }
}

/// Presentation attributes for a bar of series `index`: solid, translucent with an outline, or
/// outlined only, one per pass through the palette, so bars `i` and `i + 10` differ.
pub fn bar_fill(index: usize) -> String {
    let colour = series_colour(index);
    match cycle(index) {
        0 => format!(r#"fill="{colour}""#),
        1 => format!(r#"fill="{colour}" fill-opacity="0.4" stroke="{colour}" stroke-width="1.5""#),
        _ => format!(
            r##"fill="#ffffff" stroke="{colour}" stroke-width="1.5" stroke-dasharray="3 2""##
        ),
    }
}

/// Text colour: near-black reads well on the white background GitHub shows in both themes.
pub const TEXT: &str = "#222222";
/// Secondary text (notes, marker labels).
pub const TEXT_MUTED: &str = "#555555";
/// Axis lines and tick marks.
pub const AXIS: &str = "#444444";
/// Grid lines: light enough not to compete with the data.
pub const GRID: &str = "#e3e3e3";

/// Font sizes in px.
pub const TITLE_SIZE: f64 = 16.0;
/// Axis label font size.
pub const LABEL_SIZE: f64 = 13.0;
/// Tick label font size.
pub const TICK_SIZE: f64 = 11.0;
/// Legend and group label font size.
pub const LEGEND_SIZE: f64 = 12.0;

/// Estimated rendered width of `text` at `size` px.
///
/// There are no font metrics without a renderer; 0.6 em per character is a slight overestimate
/// for typical sans-serif fonts, which errs towards extra margin instead of overlap.
pub fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * 0.6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_ten_apart_differ_in_dash_or_colour() {
        for i in 0..22 {
            for j in (i + 1)..22 {
                let same = series_colour(i) == series_colour(j)
                    && line_dash(i, false) == line_dash(j, false);
                assert!(!same, "series {i} and {j} look the same");
                assert!(bar_fill(i) != bar_fill(j), "bars {i} and {j} look the same");
            }
        }
    }

    #[test]
    fn forced_dash_applies_to_solid_series_only() {
        assert_eq!(line_dash(3, true), Some(LONG_DASH));
        assert_eq!(line_dash(3, false), None);
        assert_eq!(line_dash(23, true), Some(DOTS));
    }
}
