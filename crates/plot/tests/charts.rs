//! End-to-end checks of rendered charts through a real XML parser: well-formedness, SVG
//! essentials, escaping, element counts and determinism.

use mixlab_plot::scale::{linear_axis, log_axis};
use mixlab_plot::{BarGroup, GroupedBarChart, LineChart, Marker, Series, write_svg};

const SVG_NS: &str = "http://www.w3.org/2000/svg";

/// Parses `svg` and checks the root: namespace, size, viewBox and the white background.
fn parse_svg(svg: &str) -> roxmltree::Document<'_> {
    let doc =
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("malformed SVG: {e}\n{svg}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(root.tag_name().namespace(), Some(SVG_NS));
    let width: f64 = root
        .attribute("width")
        .expect("width")
        .parse()
        .expect("numeric width");
    let height: f64 = root
        .attribute("height")
        .expect("height")
        .parse()
        .expect("numeric height");
    assert_eq!(
        root.attribute("viewBox"),
        Some(format!("0 0 {width:.2} {height:.2}").as_str())
    );
    let background = root
        .children()
        .find(|n| n.has_tag_name("rect"))
        .expect("background rect");
    assert_eq!(background.attribute("fill"), Some("#ffffff"));
    assert!(
        doc.descendants()
            .all(|n| !n.has_tag_name("script") && !n.has_tag_name("style"))
    );
    assert!(!svg.contains("href"), "no external resources");
    assert!(!svg.contains("NaN") && !svg.contains("inf\""));
    doc
}

fn count(doc: &roxmltree::Document<'_>, tag: &str) -> usize {
    doc.descendants().filter(|n| n.has_tag_name(tag)).count()
}

fn bars(doc: &roxmltree::Document<'_>) -> usize {
    doc.descendants()
        .find(|n| n.attribute("id") == Some("bars"))
        .map_or(0, |g| {
            g.children().filter(|n| n.has_tag_name("rect")).count()
        })
}

fn texts(doc: &roxmltree::Document<'_>) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(str::to_string))
        .collect()
}

fn loss_chart() -> LineChart {
    LineChart::new("Validation loss", "step", "loss")
        .with_series(Series::new(
            "uniform",
            vec![(0.0, 4.0), (1000.0, 3.0), (2000.0, 2.8)],
        ))
        .with_series(Series::new(
            "odm",
            vec![(0.0, 4.0), (1000.0, 2.9), (2000.0, 2.6)],
        ))
        .with_series(Series::new("doremi", vec![(0.0, 4.0), (2000.0, 2.7)]).dashed())
        .with_marker(Marker::new(1200.0, "odm reaches uniform's final value"))
}

fn bar_chart() -> GroupedBarChart {
    GroupedBarChart::new(
        "Perplexity by domain",
        "perplexity",
        ["uniform", "odm", "doremi"],
    )
    .with_group(BarGroup::new(
        "Pile-CC",
        vec![Some(20.0), Some(18.5), Some(19.0)],
    ))
    .with_group(
        BarGroup::new("ArXiv", vec![Some(9.0), None, Some(8.7)]).with_errors(vec![
            Some(0.4),
            None,
            Some(0.3),
        ]),
    )
    .with_group(BarGroup::new("Github", vec![None, Some(3.2)]))
}

#[test]
fn line_chart_is_well_formed() {
    let svg = loss_chart().to_svg();
    let doc = parse_svg(&svg);
    assert_eq!(count(&doc, "polyline"), 3);
    let texts = texts(&doc);
    for expected in [
        "Validation loss",
        "step",
        "loss",
        "uniform",
        "odm",
        "doremi",
    ] {
        assert!(
            texts.iter().any(|t| t == expected),
            "missing text {expected}"
        );
    }
    assert!(
        texts
            .iter()
            .any(|t| t == "odm reaches uniform's final value")
    );
}

#[test]
fn bar_chart_is_well_formed_and_counts_bars() {
    let chart = bar_chart();
    let svg = chart.to_svg();
    let doc = parse_svg(&svg);
    let some_values: usize = chart
        .groups
        .iter()
        .map(|g| g.values.iter().filter(|v| v.is_some()).count())
        .sum();
    assert_eq!(bars(&doc), some_values);
    assert_eq!(bars(&doc), 6);
}

#[test]
fn log_scale_charts_are_well_formed() {
    let line = LineChart::new("Perplexity", "step", "ppl")
        .log_y()
        .with_series(Series::new(
            "a",
            vec![(0.0, 900.0), (1.0, 40.0), (2.0, 2.0)],
        ))
        .with_series(Series::new("b", vec![(0.0, -1.0), (1.0, 0.0)]));
    let svg = line.to_svg();
    let doc = parse_svg(&svg);
    assert_eq!(count(&doc, "polyline"), 1);
    let texts = texts(&doc);
    for tick in ["1", "10", "100", "1000"] {
        assert!(texts.iter().any(|t| t == tick), "missing log tick {tick}");
    }

    let bars_svg = bar_chart().log_y().to_svg();
    let doc = parse_svg(&bars_svg);
    assert_eq!(bars(&doc), 6);
}

#[test]
fn empty_charts_render_axes_and_a_note() {
    for svg in [
        LineChart::new("", "", "").to_svg(),
        LineChart::new("nothing", "x", "y").log_y().to_svg(),
        GroupedBarChart::new("nothing", "y", Vec::<String>::new()).to_svg(),
        GroupedBarChart::new("nothing", "y", ["a"])
            .with_group(BarGroup::new("g", vec![None]))
            .to_svg(),
    ] {
        let doc = parse_svg(&svg);
        assert_eq!(count(&doc, "polyline"), 0);
        assert_eq!(bars(&doc), 0);
        assert!(texts(&doc).iter().any(|t| t == "no data"));
        assert!(count(&doc, "line") >= 2, "axes are drawn");
    }
}

#[test]
fn non_finite_inputs_are_skipped() {
    let line = LineChart::new("nan", "x", "y")
        .with_series(Series::new(
            "all bad",
            vec![(f64::NAN, 1.0), (1.0, f64::INFINITY)],
        ))
        .with_series(Series::new(
            "some bad",
            vec![
                (0.0, 1.0),
                (f64::NEG_INFINITY, 2.0),
                (2.0, f64::NAN),
                (3.0, 2.0),
            ],
        ))
        .with_marker(Marker::new(f64::NAN, "nowhere"));
    let doc_text = line.to_svg();
    let doc = parse_svg(&doc_text);
    assert_eq!(count(&doc, "polyline"), 1);
    assert!(!texts(&doc).iter().any(|t| t == "nowhere"));

    let bars_chart = GroupedBarChart::new("nan", "y", ["a", "b"])
        .with_group(
            BarGroup::new("g", vec![Some(f64::NAN), Some(1.0)])
                .with_errors(vec![Some(1.0), Some(f64::INFINITY)]),
        )
        .with_group(BarGroup::new(
            "h",
            vec![Some(f64::NEG_INFINITY), Some(f64::MAX)],
        ));
    let doc_text = bars_chart.to_svg();
    let doc = parse_svg(&doc_text);
    assert_eq!(bars(&doc), 2);
}

#[test]
fn constant_series_gets_a_real_axis() {
    let chart = LineChart::new("flat", "x", "y")
        .with_series(Series::new("c", vec![(0.0, 2.0), (1.0, 2.0), (2.0, 2.0)]));
    let doc_text = chart.to_svg();
    let doc = parse_svg(&doc_text);
    let polyline = doc
        .descendants()
        .find(|n| n.has_tag_name("polyline"))
        .expect("polyline");
    let ys: Vec<&str> = polyline
        .attribute("points")
        .expect("points")
        .split(' ')
        .map(|p| p.split(',').nth(1).expect("y"))
        .collect();
    // The line is drawn inside the plot, not collapsed onto an edge.
    assert!(ys.windows(2).all(|w| w[0] == w[1]));
    let labels = texts(&doc);
    assert!(
        labels.iter().any(|t| t == "2.0"),
        "a tick at the constant value: {labels:?}"
    );
}

#[test]
fn labels_are_escaped() {
    let nasty = r#"a<b & "c" 'd'"#;
    let line = LineChart::new(nasty, nasty, nasty)
        .with_series(Series::new(nasty, vec![(0.0, 1.0), (1.0, 2.0)]))
        .with_marker(Marker::new(0.5, nasty));
    let bars = GroupedBarChart::new(nasty, nasty, [nasty])
        .with_group(BarGroup::new(nasty, vec![Some(1.0)]));
    for svg in [line.to_svg(), bars.to_svg()] {
        assert!(svg.contains("a&lt;b &amp; &quot;c&quot; &apos;d&apos;"));
        assert!(!svg.contains("a<b"));
        let doc = parse_svg(&svg);
        assert!(texts(&doc).iter().filter(|t| *t == nasty).count() >= 4);
        let title = doc
            .descendants()
            .find(|n| n.has_tag_name("title"))
            .and_then(|n| n.text());
        assert_eq!(title, Some(nasty));
    }
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(loss_chart().to_svg(), loss_chart().to_svg());
    assert_eq!(bar_chart().to_svg(), bar_chart().to_svg());
    let mut many = LineChart::new("22", "x", "y");
    for i in 0..22 {
        many.series.push(Series::new(
            format!("domain {i}"),
            vec![(0.0, i as f64), (1.0, 0.5)],
        ));
    }
    assert_eq!(many.to_svg(), many.clone().to_svg());
}

#[test]
fn twenty_two_series_have_distinct_styles() {
    let mut chart = LineChart::new("22", "x", "y");
    for i in 0..22 {
        chart.series.push(Series::new(
            format!("domain {i}"),
            vec![(0.0, i as f64), (1.0, 1.0)],
        ));
    }
    let svg = chart.to_svg();
    let doc = parse_svg(&svg);
    let styles: std::collections::BTreeSet<(String, String)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .map(|n| {
            (
                n.attribute("stroke").unwrap_or_default().to_string(),
                n.attribute("stroke-dasharray")
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(styles.len(), 22);
}

#[test]
fn known_tick_sets() {
    // Hand-computed: range/5 = 0.2 is a 1-2-5 step.
    assert_eq!(
        linear_axis(0.0, 1.0, 5).ticks,
        vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    );
    // 44/5 = 8.8 rounds up to 10; the range widens to the enclosing multiples 0 and 50.
    assert_eq!(
        linear_axis(3.0, 47.0, 5).ticks,
        vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    );
    // 900/2 spans more than two decades: powers of ten only.
    assert_eq!(
        log_axis(2.0, 900.0, 5).ticks,
        vec![1.0, 10.0, 100.0, 1000.0]
    );
}

#[test]
fn write_svg_round_trips() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("loss.svg");
    let svg = loss_chart().to_svg();
    write_svg(&path, &svg).expect("write");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), svg);
}
