//! The mixer registry: a config tag (`kind = "odm"`) → a mixer, with parameter docs.
//!
//! Each mixer crate implements [`MixerConfig`] for its config struct; the binary registers the
//! built-in mixers with one [`MixerEntry::of`] line each, so configs and the CLI can name any of
//! them and `list-mixers` can print their parameters.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{DomainSet, Mixer, MixingError, Result};

/// What a mixer may need to know about the dataset and run when it is built.
#[derive(Debug, Clone, PartialEq)]
pub struct MixerContext {
    /// The dataset's domains, in the order of every weight vector.
    pub domains: DomainSet,
    /// Tokens per domain (domain order), for temperature-scaled weights; `None` if unknown.
    pub token_counts: Option<Vec<u64>>,
    /// The tokenizer's vocabulary size, for DoReMi's initial excess loss ln(V); `None` if unknown.
    pub vocab_size: Option<usize>,
    /// Directory against which relative file paths of the config are resolved (the config
    /// file's directory); `None`: the working directory.
    pub base_dir: Option<PathBuf>,
}

impl MixerContext {
    /// A context that knows only the domains.
    pub fn new(domains: DomainSet) -> Self {
        Self {
            domains,
            token_counts: None,
            vocab_size: None,
            base_dir: None,
        }
    }

    /// Adds per-domain token counts (domain order); their number must match the domains.
    pub fn with_token_counts(mut self, counts: Vec<u64>) -> Result<Self> {
        if counts.len() != self.domains.len() {
            return Err(MixingError::FeedbackShape {
                expected: self.domains.len(),
                got: counts.len(),
            });
        }
        self.token_counts = Some(counts);
        Ok(self)
    }

    /// Adds the vocabulary size.
    pub fn with_vocab_size(mut self, vocab_size: usize) -> Self {
        self.vocab_size = Some(vocab_size);
        self
    }

    /// Sets the directory for relative paths.
    pub fn with_base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// `path` itself if absolute, else joined to the base directory.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        match &self.base_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_owned(),
        }
    }
}

/// One documented parameter of a mixer config, for `list-mixers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ParamDoc {
    /// The TOML key.
    pub name: &'static str,
    /// The value's type as a user writes it (`"float"`, `"paper | reference-code | exp3"`).
    pub type_name: &'static str,
    /// The default, or `"required"`.
    pub default: &'static str,
    /// One sentence on what it does and where its default comes from.
    pub doc: &'static str,
}

/// A mixer's configuration: the TOML table under `kind = KIND`, minus `kind`.
///
/// Implementations use `#[serde(deny_unknown_fields)]` so that a typo is an error.
pub trait MixerConfig: Serialize + DeserializeOwned + Sized {
    /// The tag in `kind = "..."`.
    const KIND: &'static str;
    /// One line on what the mixer does.
    const SUMMARY: &'static str;
    /// Every parameter, in the order `list-mixers` prints them.
    const PARAMS: &'static [ParamDoc];

    /// Validates the config and fills in defaults that depend on other fields, so that the
    /// resolved config saved with a run states every value used.
    fn resolved(self) -> Result<Self> {
        Ok(self)
    }

    /// Builds the mixer for a dataset.
    fn build(&self, ctx: &MixerContext) -> Result<Box<dyn Mixer>>;
}

/// Parses a config table (with or without its `kind` key) into `C`, resolved.
///
/// The table is parsed from its TOML text rather than as a value, so that an error has a
/// position, and the key at that position prefixes the message: serde says "invalid type:
/// integer `3`, expected a boolean" without naming the field.
pub fn parse_config<C: MixerConfig>(table: &toml::Table) -> Result<C> {
    let mut params = table.clone();
    params.remove("kind");
    let text = toml::to_string(&params).map_err(|e| MixingError::config(C::KIND, e.to_string()))?;
    let config: C = toml::from_str(&text).map_err(|e: toml::de::Error| {
        let message = e.message().to_owned();
        let key = e.span().and_then(|span| key_at(&text, span.start));
        MixingError::config(
            C::KIND,
            match key {
                Some(key) if !message.contains(&format!("`{key}`")) => {
                    format!("`{key}`: {message}")
                }
                _ => message,
            },
        )
    })?;
    config.resolved()
}

/// The dotted key of the `key = value` line holding byte `offset` of `text` (a TOML document as
/// `toml::to_string` writes it: `key = value` lines under optional `[table]` headers).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset.min(text.len()))?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    let header = before[..line_start].lines().rev().find_map(|l| {
        l.trim()
            .strip_prefix('[')?
            .strip_suffix(']')
            .map(str::to_owned)
    });
    Some(match header {
        Some(table) => format!("{table}.{key}"),
        None => key.to_owned(),
    })
}

/// A registered mixer: its tag, docs and constructors.
#[derive(Debug, Clone, Copy)]
pub struct MixerEntry {
    /// The tag in `kind = "..."`.
    pub kind: &'static str,
    /// One line on what the mixer does.
    pub summary: &'static str,
    /// Its parameters.
    pub params: &'static [ParamDoc],
    resolve: fn(&toml::Table) -> Result<toml::Table>,
    build: fn(&toml::Table, &MixerContext) -> Result<Box<dyn Mixer>>,
}

impl MixerEntry {
    /// The entry of config type `C`.
    pub fn of<C: MixerConfig>() -> Self {
        Self {
            kind: C::KIND,
            summary: C::SUMMARY,
            params: C::PARAMS,
            resolve: resolve_with::<C>,
            build: build_with::<C>,
        }
    }

    /// The config with every default filled in, `kind` first.
    pub fn resolve(&self, table: &toml::Table) -> Result<toml::Table> {
        (self.resolve)(table)
    }

    /// Builds the mixer from its config table.
    pub fn build(&self, table: &toml::Table, ctx: &MixerContext) -> Result<Box<dyn Mixer>> {
        (self.build)(table, ctx)
    }
}

/// The `[mixer]` table a user would write for `config`: `kind = C::KIND` and the config's
/// fields as it serialises them (fields it skips when unset stay unset, so the mixer's
/// defaults apply as they would to a hand-written table).
pub fn config_table<C: MixerConfig>(config: &C) -> Result<toml::Table> {
    let body =
        toml::Table::try_from(config).map_err(|e| MixingError::config(C::KIND, e.to_string()))?;
    let mut out = toml::Table::new();
    out.insert("kind".into(), toml::Value::String(C::KIND.into()));
    out.extend(body);
    Ok(out)
}

fn resolve_with<C: MixerConfig>(table: &toml::Table) -> Result<toml::Table> {
    config_table(&parse_config::<C>(table)?)
}

fn build_with<C: MixerConfig>(table: &toml::Table, ctx: &MixerContext) -> Result<Box<dyn Mixer>> {
    parse_config::<C>(table)?.build(ctx)
}

/// The set of mixers a program knows, by kind.
#[derive(Debug, Clone, Default)]
pub struct MixerRegistry {
    entries: Vec<MixerEntry>,
}

impl MixerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a mixer; a kind may be registered once.
    pub fn register(&mut self, entry: MixerEntry) -> Result<()> {
        if self.entries.iter().any(|e| e.kind == entry.kind) {
            return Err(MixingError::DuplicateKind {
                kind: entry.kind.to_owned(),
            });
        }
        self.entries.push(entry);
        Ok(())
    }

    /// All entries in registration order.
    pub fn entries(&self) -> &[MixerEntry] {
        &self.entries
    }

    /// The entry of `kind`.
    pub fn get(&self, kind: &str) -> Result<&MixerEntry> {
        self.entries
            .iter()
            .find(|e| e.kind == kind)
            .ok_or_else(|| MixingError::UnknownKind {
                kind: kind.to_owned(),
                known: self.kinds().join(", "),
            })
    }

    /// The registered kinds.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.kind).collect()
    }

    fn entry_for(&self, config: &toml::Table) -> Result<&MixerEntry> {
        match config.get("kind") {
            Some(toml::Value::String(kind)) => self.get(kind),
            Some(other) => Err(MixingError::config(
                "?",
                format!("`kind` must be a string, not {other}"),
            )),
            None => Err(MixingError::config(
                "?",
                format!(
                    "the mixer config has no `kind`; one of: {}",
                    self.kinds().join(", ")
                ),
            )),
        }
    }

    /// Builds the mixer a config table (`kind = "..."` plus parameters) describes.
    pub fn build(&self, config: &toml::Table, ctx: &MixerContext) -> Result<Box<dyn Mixer>> {
        self.entry_for(config)?.build(config, ctx)
    }

    /// The config with every default filled in, for saving beside a run.
    pub fn resolve(&self, config: &toml::Table) -> Result<toml::Table> {
        self.entry_for(config)?.resolve(config)
    }

    /// Reads a mixer config file: either a bare table (`kind = ...` at the top) or an
    /// experiment config with a `[mixer]` table.
    pub fn load_config(path: &Path) -> Result<toml::Table> {
        let text = std::fs::read_to_string(path).map_err(|cause| MixingError::Io {
            path: path.to_owned(),
            cause,
        })?;
        let location = path.display().to_string();
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| MixingError::parse(&location, e.to_string()))?;
        if table.contains_key("kind") {
            return Ok(table);
        }
        match table.get("mixer") {
            Some(toml::Value::Table(inner)) => Ok(inner.clone()),
            _ => Err(MixingError::parse(
                location,
                "no mixer config: expected `kind = \"...\"` at the top or a [mixer] table",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StaticConfig;

    fn registry() -> MixerRegistry {
        let mut r = MixerRegistry::new();
        r.register(MixerEntry::of::<StaticConfig>()).expect("first");
        r
    }

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).expect("valid TOML")
    }

    #[test]
    fn builds_and_resolves_by_kind() {
        let r = registry();
        let ctx = MixerContext::new(DomainSet::new(["a", "b"]).expect("valid"));
        let m = r
            .build(&table("kind = \"static\"\nweights = \"uniform\""), &ctx)
            .expect("builds");
        assert_eq!(m.kind(), "static");
        assert_eq!(m.weights(), &[0.5, 0.5]);
        let resolved = r
            .resolve(&table("kind = \"static\"\nweights = \"tpw\""))
            .expect("resolves");
        assert_eq!(resolved["kind"].as_str(), Some("static"));
        assert_eq!(resolved["renormalize"].as_bool(), Some(false));
    }

    #[test]
    fn a_typed_config_becomes_the_table_a_user_writes() {
        let config = StaticConfig {
            weights: crate::WeightSpec::Temperature(2.0),
            renormalize: true,
        };
        let t = config_table(&config).expect("serialises");
        assert_eq!(
            t,
            table("kind = \"static\"\nweights = { temperature = 2.0 }\nrenormalize = true")
        );
        // And it parses back to the same config.
        assert_eq!(parse_config::<StaticConfig>(&t).expect("parses"), config);
    }

    #[test]
    fn errors_name_the_problem() {
        let r = registry();
        let ctx = MixerContext::new(DomainSet::new(["a", "b"]).expect("valid"));
        let unknown = r
            .build(&table("kind = \"odx\""), &ctx)
            .expect_err("unknown kind");
        assert!(unknown.to_string().contains("static"), "{unknown}");
        let typo = r
            .build(
                &table("kind = \"static\"\nweights = \"uniform\"\nrenormalise = true"),
                &ctx,
            )
            .expect_err("unknown field");
        assert!(typo.to_string().contains("renormalise"), "{typo}");
        let wrong_type = r
            .build(
                &table("kind = \"static\"\nweights = \"uniform\"\nrenormalize = 3"),
                &ctx,
            )
            .expect_err("wrong type");
        // A wrong type names its key (serde's own message does not).
        assert!(
            wrong_type
                .to_string()
                .contains("`renormalize`: invalid type"),
            "{wrong_type}"
        );
        assert!(r.build(&table("weights = \"uniform\""), &ctx).is_err());
        assert!(r.build(&table("kind = 3"), &ctx).is_err());
        let mut twice = registry();
        assert!(twice.register(MixerEntry::of::<StaticConfig>()).is_err());
    }

    #[test]
    fn load_config_accepts_bare_and_nested_tables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = dir.path().join("bare.toml");
        std::fs::write(&bare, "kind = \"static\"\nweights = \"uniform\"\n").expect("write");
        assert_eq!(
            MixerRegistry::load_config(&bare).expect("bare")["kind"].as_str(),
            Some("static")
        );
        let nested = dir.path().join("nested.toml");
        std::fs::write(
            &nested,
            "steps = 10\n[mixer]\nkind = \"static\"\nweights = \"tpw\"\n",
        )
        .expect("write");
        assert_eq!(
            MixerRegistry::load_config(&nested).expect("nested")["weights"].as_str(),
            Some("tpw")
        );
        let none = dir.path().join("none.toml");
        std::fs::write(&none, "steps = 10\n").expect("write");
        assert!(MixerRegistry::load_config(&none).is_err());
    }

    #[test]
    fn context_paths_and_counts() {
        let ctx = MixerContext::new(DomainSet::new(["a"]).expect("valid")).with_base_dir("/cfg");
        assert_eq!(
            ctx.resolve_path(Path::new("w.toml")),
            PathBuf::from("/cfg/w.toml")
        );
        assert_eq!(
            ctx.resolve_path(Path::new("/abs/w.toml")),
            PathBuf::from("/abs/w.toml")
        );
        assert!(ctx.clone().with_token_counts(vec![1, 2]).is_err());
        assert_eq!(ctx.with_vocab_size(7).vocab_size, Some(7));
    }
}
