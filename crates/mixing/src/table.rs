//! Weight tables (domain name → weight) and the ways a config can name one.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::math::softmax_into;
use crate::{DomainSet, MixerContext, MixingError, NamedTable, Result};

/// A map from domain name (`pile_set_name`) to a non-normalised weight, with its origin for
/// error messages.
///
/// Files hold either a flat map (`"Pile-CC" = 0.1811`, or `{"Pile-CC": 0.1811}` in JSON) or
/// a `weights` table beside free-form metadata, as [`to_toml_string`](Self::to_toml_string) writes.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightTable {
    origin: String,
    entries: Vec<(String, f64)>,
}

impl WeightTable {
    /// A table from `(name, weight)` pairs; a repeated name is an error. Values are checked
    /// only by [`resolve`](Self::resolve), which knows the dataset.
    pub fn new<I, S>(origin: impl Into<String>, entries: I) -> Result<Self>
    where
        I: IntoIterator<Item = (S, f64)>,
        S: Into<String>,
    {
        let origin = origin.into();
        let entries: Vec<(String, f64)> = entries.into_iter().map(|(n, w)| (n.into(), w)).collect();
        let mut seen = HashSet::with_capacity(entries.len());
        for (name, _) in &entries {
            if !seen.insert(name.as_str()) {
                return Err(MixingError::DuplicateDomain {
                    origin,
                    domain: name.clone(),
                });
            }
        }
        Ok(Self { origin, entries })
    }

    /// A table whose names are known to be distinct (the built-in tables).
    pub(crate) fn from_trusted(origin: String, entries: Vec<(String, f64)>) -> Self {
        Self { origin, entries }
    }

    /// A table with one entry per domain of `domains`, in order (e.g. a mixer's output).
    pub fn from_weights(origin: impl Into<String>, domains: &DomainSet, weights: &[f64]) -> Self {
        Self {
            origin: origin.into(),
            entries: domains
                .names()
                .iter()
                .cloned()
                .zip(weights.iter().copied())
                .collect(),
        }
    }

    /// Where the table came from (a file, a table name), as used in error messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The entries in the order they were given.
    pub fn entries(&self) -> &[(String, f64)] {
        &self.entries
    }

    /// The weight of `domain`, if the table has one.
    pub fn get(&self, domain: &str) -> Option<f64> {
        self.entries
            .iter()
            .find(|(n, _)| n == domain)
            .map(|(_, w)| *w)
    }

    /// Reads a table from a `.toml` or `.json` file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|cause| MixingError::Io {
            path: path.to_owned(),
            cause,
        })?;
        let origin = path.display().to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Self::parse_json(&text, &origin),
            Some("toml") => Self::parse_toml(&text, &origin),
            _ => Err(MixingError::parse(
                origin,
                "a weight table file must end in .toml or .json",
            )),
        }
    }

    /// Parses a TOML table file; `origin` names it in errors.
    pub fn parse_toml(text: &str, origin: &str) -> Result<Self> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| MixingError::parse(origin, e.to_string()))?;
        let value =
            serde_json::to_value(table).map_err(|e| MixingError::parse(origin, e.to_string()))?;
        Self::from_json_value(&value, origin)
    }

    /// Parses a JSON table file; `origin` names it in errors.
    pub fn parse_json(text: &str, origin: &str) -> Result<Self> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| MixingError::parse(origin, e.to_string()))?;
        Self::from_json_value(&value, origin)
    }

    fn from_json_value(value: &Value, origin: &str) -> Result<Self> {
        let Value::Object(top) = value else {
            return Err(MixingError::parse(
                origin,
                "a weight table must be a map of domain name to weight",
            ));
        };
        // A `weights` sub-table means the other top-level keys are metadata.
        let map = match top.get("weights") {
            Some(Value::Object(inner)) => inner,
            _ => top,
        };
        let mut entries = Vec::with_capacity(map.len());
        for (name, w) in map {
            let weight = w.as_f64().ok_or_else(|| {
                MixingError::parse(
                    origin,
                    format!("the weight of domain {name:?} is not a number: {w}"),
                )
            })?;
            entries.push((name.clone(), weight));
        }
        Self::new(origin, entries)
    }

    /// The table as a TOML file: `comment` lines (prefixed with `# `), a `source` key naming
    /// the origin, and a `[weights]` table in entry order.
    pub fn to_toml_string(&self, comment: &str) -> String {
        let mut out = String::new();
        for line in comment.lines() {
            let _ = writeln!(out, "# {line}");
        }
        let _ = writeln!(out, "source = {}", toml_string(&self.origin));
        let _ = writeln!(out, "\n[weights]");
        for (name, w) in &self.entries {
            // `{:?}` prints the shortest string that parses back to the same f64.
            let _ = writeln!(out, "{} = {w:?}", toml_string(name));
        }
        out
    }

    /// Writes [`to_toml_string`](Self::to_toml_string) to `path`, whole or not at all.
    pub fn write_toml(&self, path: &Path, comment: &str) -> Result<()> {
        mixlab_atomic::write_file(path, self.to_toml_string(comment)).map_err(|e| MixingError::Io {
            path: e.path,
            cause: e.source,
        })
    }

    /// Aligns the table with `domains` and normalises it into a probability vector.
    ///
    /// Errors, each naming the domain: a weight that is negative, NaN or infinite; a dataset
    /// domain without a weight; a table domain the dataset lacks (unless `renormalize`, which
    /// drops such entries, renormalises over the rest and logs what it dropped); all weights 0.
    pub fn resolve(&self, domains: &DomainSet, renormalize: bool) -> Result<Vec<f64>> {
        let mut weights = vec![f64::NAN; domains.len()];
        let mut dropped: Vec<&str> = Vec::new();
        let mut dropped_mass = 0.0;
        for (name, w) in &self.entries {
            if !w.is_finite() || *w < 0.0 {
                return Err(MixingError::InvalidWeight {
                    origin: self.origin.clone(),
                    domain: name.clone(),
                    value: *w,
                });
            }
            match domains.index_of(name) {
                Some(i) => weights[i] = *w,
                None if renormalize => {
                    dropped.push(name);
                    dropped_mass += w;
                }
                None => {
                    return Err(MixingError::UnknownDomain {
                        origin: self.origin.clone(),
                        domain: name.clone(),
                        known: domains.describe(),
                    });
                }
            }
        }
        if let Some(i) = weights.iter().position(|w| w.is_nan()) {
            return Err(MixingError::MissingDomain {
                origin: self.origin.clone(),
                domain: domains.name(i).unwrap_or("?").to_owned(),
            });
        }
        let sum: f64 = weights.iter().sum();
        if sum <= 0.0 {
            return Err(MixingError::AllZeroWeights {
                origin: self.origin.clone(),
            });
        }
        if !dropped.is_empty() {
            let total = sum + dropped_mass;
            tracing::warn!(
                table = %self.origin,
                dropped = ?dropped,
                dropped_share = dropped_mass / total,
                "renormalising the weight table over the dataset's domains: dropped domains the dataset lacks"
            );
        }
        for w in &mut weights {
            *w /= sum;
        }
        Ok(weights)
    }
}

/// Quotes `s` as a TOML basic string (JSON string escapes are valid TOML escapes).
fn toml_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Where a mixer's weights come from, as written in a config.
///
/// TOML forms: `"uniform"`, a named table (`"tpw"`, `"doremi-256k"`, `"doremi-50k"`,
/// `"doremi-1b"`, `"odm-final"`, `"odm-mean"`, `"doremi-baseline-256k"`),
/// `{ file = "weights.toml" }` (relative to the config file), `{ temperature = 2.0 }`
/// (p_i ∝ n_i^(1/T) over the dataset's token counts n_i), or `{ inline = { "Pile-CC" = 1.0, ... } }`.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightSpec {
    /// 1/K for every domain.
    Uniform,
    /// One of the paper's tables.
    Named(NamedTable),
    /// A TOML or JSON table file.
    File(PathBuf),
    /// Temperature-scaled token counts with temperature T (T = 1: proportional to tokens).
    Temperature(f64),
    /// A table written in the config itself.
    Inline(BTreeMap<String, f64>),
}

impl WeightSpec {
    /// Resolves the spec against the dataset into a probability vector in domain order.
    /// `renormalize` is passed to [`WeightTable::resolve`].
    pub fn resolve(&self, ctx: &MixerContext, renormalize: bool) -> Result<Vec<f64>> {
        let domains = &ctx.domains;
        match self {
            WeightSpec::Uniform => Ok(vec![1.0 / domains.len() as f64; domains.len()]),
            WeightSpec::Named(t) => t.table().resolve(domains, renormalize),
            WeightSpec::File(p) => {
                WeightTable::load(&ctx.resolve_path(p))?.resolve(domains, renormalize)
            }
            WeightSpec::Inline(map) => WeightTable::from_trusted(
                "inline weight table".into(),
                map.clone().into_iter().collect(),
            )
            .resolve(domains, renormalize),
            WeightSpec::Temperature(t) => temperature_weights(ctx, *t),
        }
    }

    fn from_json(value: &Value) -> std::result::Result<Self, String> {
        const FORMS: &str = "expected \"uniform\", a named table, { file = \"...\" }, \
                             { temperature = T } or { inline = { domain = weight, ... } }";
        match value {
            Value::String(s) if s == "uniform" => Ok(WeightSpec::Uniform),
            Value::String(s) => s
                .parse::<NamedTable>()
                .map(WeightSpec::Named)
                .map_err(|e| format!("{e}, or \"uniform\"")),
            Value::Object(map) if map.len() == 1 => {
                let (key, v) = map.iter().next().ok_or_else(|| FORMS.to_owned())?;
                match key.as_str() {
                    "file" => v
                        .as_str()
                        .map(|p| WeightSpec::File(PathBuf::from(p)))
                        .ok_or_else(|| "`file` must be a path string".to_owned()),
                    "temperature" => v
                        .as_f64()
                        .map(WeightSpec::Temperature)
                        .ok_or_else(|| "`temperature` must be a number".to_owned()),
                    "inline" => {
                        let obj = v.as_object().ok_or_else(|| {
                            "`inline` must be a table of domain = weight".to_owned()
                        })?;
                        obj.iter()
                            .map(|(k, w)| {
                                w.as_f64().map(|w| (k.clone(), w)).ok_or_else(|| {
                                    format!("inline weight of {k:?} is not a number")
                                })
                            })
                            .collect::<std::result::Result<_, _>>()
                            .map(WeightSpec::Inline)
                    }
                    other => Err(format!("unknown weight source `{other}`; {FORMS}")),
                }
            }
            _ => Err(FORMS.to_owned()),
        }
    }
}

/// p_i ∝ n_i^(1/T), computed as a softmax of ln(n_i)/T so that large counts or small T cannot
/// overflow; domains without tokens get 0.
fn temperature_weights(ctx: &MixerContext, temperature: f64) -> Result<Vec<f64>> {
    let origin = format!("temperature-scaled token counts (T = {temperature})");
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(MixingError::parse(
            origin,
            "the temperature must be finite and > 0",
        ));
    }
    let counts = ctx.token_counts.as_deref().ok_or_else(|| {
        MixingError::parse(
            &origin,
            "needs the dataset's per-domain token counts, which this context does not provide",
        )
    })?;
    let logits: Vec<f64> = counts
        .iter()
        .map(|&n| {
            if n == 0 {
                f64::NEG_INFINITY
            } else {
                (n as f64).ln()
            }
        })
        .collect();
    let mut weights = vec![0.0; logits.len()];
    if !softmax_into(&logits, 1.0 / temperature, &mut weights) {
        return Err(MixingError::AllZeroWeights { origin });
    }
    Ok(weights)
}

impl Serialize for WeightSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            WeightSpec::Uniform => serializer.serialize_str("uniform"),
            WeightSpec::Named(t) => serializer.serialize_str(t.name()),
            WeightSpec::File(p) => {
                let mut m = serializer.serialize_map(Some(1))?;
                m.serialize_entry("file", p)?;
                m.end()
            }
            WeightSpec::Temperature(t) => {
                let mut m = serializer.serialize_map(Some(1))?;
                m.serialize_entry("temperature", t)?;
                m.end()
            }
            WeightSpec::Inline(map) => {
                let mut m = serializer.serialize_map(Some(1))?;
                m.serialize_entry("inline", map)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for WeightSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        // Going through a generic value gives one clear message per wrong form, which an
        // untagged enum cannot.
        let value = Value::deserialize(deserializer)?;
        WeightSpec::from_json(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abc() -> DomainSet {
        DomainSet::new(["a", "b", "c"]).expect("valid")
    }

    fn table(entries: &[(&str, f64)]) -> WeightTable {
        WeightTable::new("test table", entries.iter().map(|(n, w)| (*n, *w))).expect("distinct")
    }

    #[test]
    fn resolve_normalises_in_domain_order() {
        let w = table(&[("c", 2.0), ("a", 1.0), ("b", 1.0)])
            .resolve(&abc(), false)
            .expect("valid");
        assert_eq!(w, vec![0.25, 0.25, 0.5]);
    }

    #[test]
    fn resolve_errors_name_the_domain() {
        let cases: Vec<(WeightTable, &str)> = vec![
            (table(&[("a", 1.0), ("b", 1.0)]), "\"c\""),
            (
                table(&[("a", 1.0), ("b", 1.0), ("c", 1.0), ("z", 1.0)]),
                "\"z\"",
            ),
            (table(&[("a", 1.0), ("b", -1.0), ("c", 1.0)]), "\"b\""),
            (table(&[("a", f64::NAN), ("b", 1.0), ("c", 1.0)]), "\"a\""),
            (
                table(&[("a", 1.0), ("b", 1.0), ("c", f64::INFINITY)]),
                "\"c\"",
            ),
        ];
        for (t, needle) in cases {
            let msg = t.resolve(&abc(), false).expect_err("invalid").to_string();
            assert!(msg.contains(needle) && msg.contains("test table"), "{msg}");
        }
        let zero = table(&[("a", 0.0), ("b", 0.0), ("c", 0.0)]);
        assert!(matches!(
            zero.resolve(&abc(), false),
            Err(MixingError::AllZeroWeights { .. })
        ));
        assert!(WeightTable::new("dup", [("a", 1.0), ("a", 2.0)]).is_err());
    }

    #[test]
    fn renormalize_drops_unknown_domains_only() {
        let t = table(&[("a", 1.0), ("b", 1.0), ("c", 2.0), ("z", 4.0)]);
        assert_eq!(
            t.resolve(&abc(), true).expect("renormalised"),
            vec![0.25, 0.25, 0.5]
        );
        // A dataset domain missing from the table stays an error: there is no weight to invent.
        assert!(
            table(&[("a", 1.0), ("z", 1.0)])
                .resolve(&abc(), true)
                .is_err()
        );
        // Dropping everything the dataset has weight on leaves nothing to normalise.
        let only_unknown = table(&[("a", 0.0), ("b", 0.0), ("c", 0.0), ("z", 1.0)]);
        assert!(only_unknown.resolve(&abc(), true).is_err());
    }

    #[test]
    fn tpw_on_a_subset_needs_renormalize() {
        let mini = DomainSet::new(["Pile-CC", "ArXiv", "Github"]).expect("valid");
        let tpw = NamedTable::Tpw.table();
        let err = tpw.resolve(&mini, false).expect_err("19 unknown domains");
        assert!(matches!(err, MixingError::UnknownDomain { .. }));
        let w = tpw.resolve(&mini, true).expect("renormalised");
        let total = 0.1811 + 0.0896 + 0.0759;
        assert!((w[0] - 0.1811 / total).abs() < 1e-15);
        assert!((w[2] - 0.0759 / total).abs() < 1e-15);
    }

    #[test]
    fn files_round_trip_in_both_formats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = WeightTable::from_weights("averaged", &DomainSet::pile(), &[1.0 / 22.0; 22]);
        let toml_path = dir.path().join("w.toml");
        t.write_toml(&toml_path, "a comment\nover two lines")
            .expect("write");
        let back = WeightTable::load(&toml_path).expect("load");
        // Values survive the file exactly; only normalisation rounds.
        for (name, w) in t.entries() {
            assert_eq!(back.get(name), Some(*w), "{name}");
        }
        let resolved = back.resolve(&DomainSet::pile(), false).expect("valid");
        assert!(resolved.iter().all(|w| (w - 1.0 / 22.0).abs() < 1e-15));

        let json_path = dir.path().join("w.json");
        std::fs::write(&json_path, r#"{"a": 1, "b": 3.0, "c": 0}"#).expect("write");
        let w = WeightTable::load(&json_path)
            .expect("load")
            .resolve(&abc(), false)
            .expect("valid");
        assert_eq!(w, vec![0.25, 0.75, 0.0]);

        let flat = WeightTable::parse_toml("a = 1.0\nb = 1\nc = 2.0\n", "flat").expect("flat");
        assert_eq!(flat.get("b"), Some(1.0));
        let bad = WeightTable::parse_toml("a = \"x\"", "bad.toml").expect_err("not a number");
        assert!(bad.to_string().contains("bad.toml") && bad.to_string().contains("\"a\""));
        assert!(WeightTable::load(&dir.path().join("w.yaml")).is_err());
        assert!(WeightTable::load(&dir.path().join("missing.toml")).is_err());
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Holder {
        weights: WeightSpec,
    }

    #[test]
    fn spec_forms_parse_and_print_back() {
        let cases = [
            ("weights = \"uniform\"", WeightSpec::Uniform),
            (
                "weights = \"odm-mean\"",
                WeightSpec::Named(NamedTable::OdmMean),
            ),
            (
                "weights = { file = \"w.toml\" }",
                WeightSpec::File("w.toml".into()),
            ),
            (
                "weights = { temperature = 2.0 }",
                WeightSpec::Temperature(2.0),
            ),
            (
                "weights = { inline = { a = 1.0, b = 2.0 } }",
                WeightSpec::Inline([("a".to_owned(), 1.0), ("b".to_owned(), 2.0)].into()),
            ),
        ];
        for (text, expected) in cases {
            let h: Holder = toml::from_str(text).expect(text);
            assert_eq!(h.weights, expected);
            let again: Holder = toml::from_str(&toml::to_string(&h).expect("ser")).expect("de");
            assert_eq!(again, h);
        }
        for bad in [
            "weights = \"tpww\"",
            "weights = { files = \"x\" }",
            "weights = { file = 3 }",
            "weights = 3",
            "weights = { file = \"x\", temperature = 1.0 }",
        ] {
            assert!(toml::from_str::<Holder>(bad).is_err(), "{bad}");
        }
        let msg = toml::from_str::<Holder>("weights = \"tpww\"")
            .expect_err("typo")
            .to_string();
        assert!(msg.contains("tpw"), "{msg}");
    }

    #[test]
    fn temperature_scales_token_counts() {
        let ctx = MixerContext::new(abc())
            .with_token_counts(vec![100, 400, 0])
            .expect("3 counts");
        let t1 = WeightSpec::Temperature(1.0)
            .resolve(&ctx, false)
            .expect("T=1");
        assert!((t1[0] - 0.2).abs() < 1e-15 && (t1[1] - 0.8).abs() < 1e-15 && t1[2] == 0.0);
        // T = 2: p ∝ sqrt(n) = 10, 20, 0.
        let t2 = WeightSpec::Temperature(2.0)
            .resolve(&ctx, false)
            .expect("T=2");
        assert!((t2[0] - 1.0 / 3.0).abs() < 1e-15 && (t2[1] - 2.0 / 3.0).abs() < 1e-15);
        // Huge counts and a tiny temperature stay finite.
        let big = MixerContext::new(abc())
            .with_token_counts(vec![u64::MAX, 1, 2])
            .expect("3");
        let t = WeightSpec::Temperature(0.01)
            .resolve(&big, false)
            .expect("finite");
        assert_eq!(t[0], 1.0);
        assert!(WeightSpec::Temperature(0.0).resolve(&ctx, false).is_err());
        assert!(
            WeightSpec::Temperature(1.0)
                .resolve(&MixerContext::new(abc()), false)
                .is_err()
        );
        let none = MixerContext::new(abc())
            .with_token_counts(vec![0, 0, 0])
            .expect("3");
        assert!(WeightSpec::Temperature(1.0).resolve(&none, false).is_err());
    }
}
