//! mixlab-plot: small, deterministic SVG charts for experiment reports.
//!
//! - [`LineChart`] of [`Series`] (e.g. validation loss against step, one line per mixer) with
//!   optional vertical [`Marker`]s and a log-scale y axis.
//! - [`GroupedBarChart`] of [`BarGroup`]s (e.g. per-domain perplexity, one bar per mixer) with
//!   optional error bars.
//! - [`write_svg`] writes a chart atomically next to the report that embeds it.
//!
//! The output is standalone SVG 1.1 that renders the same in a browser and in a GitHub markdown
//! page: white background, dark sans-serif text, presentation attributes only (no CSS, scripts
//! or external resources). Rendering the same chart twice gives byte-identical text, so committed
//! plots only change when the data does. Non-finite values are skipped rather than rejected, so
//! a diverged run still gets a chart. No dependencies beyond `std` and mixlab's atomic file writer.
//!
//! ```
//! use mixlab_plot::{BarGroup, GroupedBarChart, LineChart, Marker, Series};
//!
//! let loss = LineChart::new("Validation loss", "step", "loss")
//!     .with_series(Series::new("uniform", vec![(0.0, 4.2), (500.0, 3.1), (1000.0, 2.9)]))
//!     .with_series(Series::new("odm", vec![(0.0, 4.2), (500.0, 2.9), (1000.0, 2.7)]))
//!     .with_marker(Marker::new(500.0, "odm reaches uniform's final loss"));
//! let svg = loss.to_svg();
//! assert!(svg.starts_with("<?xml"));
//! assert_eq!(svg, loss.to_svg());
//!
//! let ppl = GroupedBarChart::new("Perplexity by domain", "perplexity", ["uniform", "odm"])
//!     .with_group(BarGroup::new("ArXiv", vec![Some(9.1), Some(8.4)]))
//!     .with_group(BarGroup::new("Github", vec![Some(4.0), None]));
//! let dir = std::env::temp_dir();
//! let path = dir.join(format!("mixlab-plot-doctest-{}.svg", std::process::id()));
//! mixlab_plot::write_svg(&path, &ppl.to_svg())?;
//! # std::fs::remove_file(&path)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bar;
mod line;
pub mod scale;
mod style;
mod svg;

use std::path::Path;

pub use bar::{BarGroup, GroupedBarChart};
pub use line::{LineChart, Marker, Series};
pub use style::PALETTE;

/// Writes `svg` to `path` whole or not at all (mixlab-atomic: a synced temporary in the same
/// directory, a rename, and a sync of the directory).
///
/// Readers (a markdown preview, a watching browser) see either the old file or the complete new
/// one, never a prefix; the error names the path and keeps the OS error.
pub fn write_svg(path: &Path, svg: &str) -> Result<(), mixlab_atomic::WriteError> {
    mixlab_atomic::write_file(path, svg)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn write_svg_replaces_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("chart.svg");
        write_svg(&path, "<svg/>").expect("first write");
        write_svg(&path, "<svg>2</svg>").expect("second write");
        assert_eq!(
            fs::read_to_string(&path).expect("read back"),
            "<svg>2</svg>"
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("chart.svg")]);
    }

    #[test]
    fn write_svg_reports_missing_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("missing").join("chart.svg");
        assert!(write_svg(&path, "<svg/>").is_err());
        assert!(write_svg(Path::new("/"), "<svg/>").is_err());
    }
}
