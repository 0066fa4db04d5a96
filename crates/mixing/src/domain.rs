//! Domains: the ordered set of named data sources a mixer distributes probability over.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{MixingError, Result};

/// The 22 `pile_set_name` values of The Pile, in the Pile paper's (and ODM config's) order.
///
/// Source: odm-facts.md §2.3 and §6 (the names used by `sangmichaelxie/doremi/configs/*.json`).
pub const PILE_DOMAINS: [&str; 22] = [
    "Pile-CC",
    "PubMed Central",
    "Books3",
    "OpenWebText2",
    "ArXiv",
    "Github",
    "FreeLaw",
    "StackExchange",
    "USPTO Backgrounds",
    "PubMed Abstracts",
    "Gutenberg (PG-19)",
    "OpenSubtitles",
    "Wikipedia (en)",
    "DM Mathematics",
    "Ubuntu IRC",
    "BookCorpus2",
    "EuroParl",
    "HackerNews",
    "YoutubeSubtitles",
    "PhilPapers",
    "NIH ExPorter",
    "Enron Emails",
];

/// An ordered, non-empty set of distinct domain names.
///
/// The order fixes the index of each domain in weight vectors and feedback; everything that
/// crosses a file boundary (weight tables, feedback lines, checkpoints) uses names instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSet {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl DomainSet {
    /// Builds a set from names in order; rejects an empty list, empty names and duplicates.
    pub fn new<I, S>(names: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        if names.is_empty() {
            return Err(MixingError::EmptyDomainSet);
        }
        let mut index = HashMap::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(MixingError::EmptyDomainName { index: i });
            }
            if index.insert(name.clone(), i).is_some() {
                return Err(MixingError::DuplicateDomain {
                    origin: "domain set".into(),
                    domain: name.clone(),
                });
            }
        }
        Ok(Self { names, index })
    }

    /// The 22 domains of The Pile ([`PILE_DOMAINS`]).
    pub fn pile() -> Self {
        let names: Vec<String> = PILE_DOMAINS.iter().map(|s| (*s).to_owned()).collect();
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Self { names, index }
    }

    /// Number of domains (K in the papers); never 0.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always false: a domain set is never empty. Present for the `len`/`is_empty` convention.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The names in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The name of domain `index`, if it exists.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str)
    }

    /// The index of the domain called `name`, if it exists.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The index of `name`, or an [`MixingError::UnknownDomain`] that says where the name came from.
    pub fn require(&self, name: &str, origin: &str) -> Result<usize> {
        self.index_of(name)
            .ok_or_else(|| MixingError::UnknownDomain {
                origin: origin.to_owned(),
                domain: name.to_owned(),
                known: self.describe(),
            })
    }

    /// Iterates over `(index, name)` in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (usize, &str)> {
        self.names.iter().enumerate().map(|(i, n)| (i, n.as_str()))
    }

    /// The names, quoted and comma-separated, for error messages.
    pub fn describe(&self) -> String {
        self.names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Serialize for DomainSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.names.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DomainSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(deserializer)?;
        DomainSet::new(names).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_follow_the_given_order() {
        let set = DomainSet::new(["b", "a", "c"]).expect("valid set");
        assert_eq!(set.len(), 3);
        assert_eq!(set.index_of("a"), Some(1));
        assert_eq!(set.name(2), Some("c"));
        assert_eq!(set.index_of("z"), None);
        let err = set.require("z", "table x").expect_err("unknown");
        assert!(err.to_string().contains("\"z\""), "{err}");
        assert!(err.to_string().contains("table x"), "{err}");
    }

    #[test]
    fn rejects_empty_duplicate_and_blank_names() {
        assert!(matches!(
            DomainSet::new(Vec::<String>::new()),
            Err(MixingError::EmptyDomainSet)
        ));
        assert!(matches!(
            DomainSet::new(["a", "a"]),
            Err(MixingError::DuplicateDomain { domain, .. }) if domain == "a"
        ));
        assert!(matches!(
            DomainSet::new(["a", ""]),
            Err(MixingError::EmptyDomainName { index: 1 })
        ));
    }

    #[test]
    fn pile_has_22_distinct_domains() {
        let pile = DomainSet::pile();
        assert_eq!(pile.len(), 22);
        assert_eq!(DomainSet::new(PILE_DOMAINS).expect("distinct"), pile);
        assert_eq!(pile.index_of("Enron Emails"), Some(21));
    }

    #[test]
    fn serde_round_trip_validates() {
        let set = DomainSet::new(["x", "y"]).expect("valid");
        let json = serde_json::to_string(&set).expect("serialise");
        assert_eq!(json, r#"["x","y"]"#);
        let back: DomainSet = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, set);
        assert!(serde_json::from_str::<DomainSet>(r#"["x","x"]"#).is_err());
    }
}
