//! The paper's named weight tables, exactly as odm-facts.md §2.3 prints them.

use std::fmt;
use std::str::FromStr;

use crate::WeightTable;

/// A weight table published with ODM or DoReMi.
///
/// The values are the 4-decimal numbers of odm-facts.md §2.3 (rows in Pile-paper order);
/// printed tables sum to 1.0000–1.0002 because of rounding, and every mixer normalises a table
/// before sampling from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamedTable {
    /// The Pile Weights (TPW): the Pile paper's Table 1 effective mixture, ODM's initial weights
    /// (`alon_configs/train_data_weights/original_pile.yml`).
    Tpw,
    /// DoReMi-256k: DoReMi's published weights from a 280M proxy with a 256k-vocabulary
    /// tokenizer (`doremi_280.yml` = `configs/pile_doremi_280M_256kvocab_paper.json`).
    Doremi256k,
    /// DoReMi-50k: weights from a 120M proxy with the 50k NeoX vocabulary (`doremi_120.yml`;
    /// the identification with the paper's DoReMi-50k is the digest's inference).
    Doremi50k,
    /// `doremi_1B.yml` from the ODM repository (provenance unverified).
    Doremi1b,
    /// ODM's final sampling distribution of the 1B run (`static_1B_final.yml`).
    OdmFinal,
    /// ODM's mean sampling distribution of the 1B run (`static_1B_mean.yml`).
    OdmMean,
    /// DoReMi's token-count baseline with the 256k tokenizer (`configs/pile_baseline_256kvocab.json`),
    /// the mixture of DoReMi's reference model.
    DoremiBaseline256k,
}

/// Rows of odm-facts.md §2.3: `(pile_set_name, [TPW, doremi_280, doremi_120, doremi_1B,
/// ODM final, ODM mean, DoReMi baseline-256k])`, generated from the digest's table.
const ROWS: [(&str, [f64; 7]); 22] = [
    (
        "Pile-CC",
        [0.1811, 0.6057, 0.1379, 0.1199, 0.0894, 0.0816, 0.1121],
    ),
    (
        "PubMed Central",
        [0.1440, 0.0046, 0.0608, 0.0149, 0.0316, 0.0346, 0.1071],
    ),
    (
        "Books3",
        [0.1207, 0.0224, 0.0757, 0.0739, 0.0701, 0.0706, 0.0676],
    ),
    (
        "OpenWebText2",
        [0.1001, 0.1019, 0.1905, 0.3289, 0.0705, 0.0718, 0.1247],
    ),
    (
        "ArXiv",
        [0.0896, 0.0036, 0.0535, 0.0384, 0.0267, 0.0293, 0.1052],
    ),
    (
        "Github",
        [0.0759, 0.0179, 0.0325, 0.0129, 0.0155, 0.0178, 0.0427],
    ),
    (
        "FreeLaw",
        [0.0612, 0.0043, 0.0380, 0.0148, 0.0346, 0.0355, 0.0386],
    ),
    (
        "StackExchange",
        [0.0513, 0.0153, 0.0746, 0.0452, 0.0353, 0.0332, 0.0929],
    ),
    (
        "USPTO Backgrounds",
        [0.0365, 0.0036, 0.0327, 0.0260, 0.0403, 0.0398, 0.0420],
    ),
    (
        "PubMed Abstracts",
        [0.0307, 0.0113, 0.0970, 0.1461, 0.0467, 0.0461, 0.0845],
    ),
    (
        "Gutenberg (PG-19)",
        [0.0217, 0.0072, 0.0292, 0.0250, 0.0669, 0.0664, 0.0199],
    ),
    (
        "OpenSubtitles",
        [0.0155, 0.0047, 0.0032, 0.0017, 0.0553, 0.0507, 0.0124],
    ),
    (
        "Wikipedia (en)",
        [0.0153, 0.0699, 0.1068, 0.0962, 0.0504, 0.0516, 0.0919],
    ),
    (
        "DM Mathematics",
        [0.0124, 0.0018, 0.0019, 0.0004, 0.0168, 0.0157, 0.0198],
    ),
    (
        "Ubuntu IRC",
        [0.0088, 0.0093, 0.0083, 0.0044, 0.0363, 0.0351, 0.0074],
    ),
    (
        "BookCorpus2",
        [0.0075, 0.0061, 0.0037, 0.0029, 0.0700, 0.0632, 0.0044],
    ),
    (
        "EuroParl",
        [0.0073, 0.0062, 0.0120, 0.0078, 0.0315, 0.0323, 0.0043],
    ),
    (
        "HackerNews",
        [0.0062, 0.0134, 0.0084, 0.0058, 0.0604, 0.0607, 0.0075],
    ),
    (
        "YoutubeSubtitles",
        [0.0060, 0.0502, 0.0117, 0.0159, 0.0373, 0.0361, 0.0042],
    ),
    (
        "PhilPapers",
        [0.0038, 0.0274, 0.0093, 0.0063, 0.0451, 0.0549, 0.0027],
    ),
    (
        "NIH ExPorter",
        [0.0030, 0.0063, 0.0084, 0.0094, 0.0466, 0.0471, 0.0052],
    ),
    (
        "Enron Emails",
        [0.0014, 0.0070, 0.0040, 0.0033, 0.0228, 0.0261, 0.0030],
    ),
];

impl NamedTable {
    /// Every named table, in the order of the digest's columns.
    pub const ALL: [NamedTable; 7] = [
        NamedTable::Tpw,
        NamedTable::Doremi256k,
        NamedTable::Doremi50k,
        NamedTable::Doremi1b,
        NamedTable::OdmFinal,
        NamedTable::OdmMean,
        NamedTable::DoremiBaseline256k,
    ];

    /// The name used in configs (`"tpw"`, `"doremi-256k"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            NamedTable::Tpw => "tpw",
            NamedTable::Doremi256k => "doremi-256k",
            NamedTable::Doremi50k => "doremi-50k",
            NamedTable::Doremi1b => "doremi-1b",
            NamedTable::OdmFinal => "odm-final",
            NamedTable::OdmMean => "odm-mean",
            NamedTable::DoremiBaseline256k => "doremi-baseline-256k",
        }
    }

    /// One line on what the table is and where it comes from.
    pub fn description(self) -> &'static str {
        match self {
            NamedTable::Tpw => "The Pile Weights (Pile paper Table 1), ODM's initial weights",
            NamedTable::Doremi256k => {
                "DoReMi-256k: DoReMi's published 280M-proxy weights (256k vocab)"
            }
            NamedTable::Doremi50k => "DoReMi-50k: DoReMi weights from a 120M proxy, 50k NeoX vocab",
            NamedTable::Doremi1b => "doremi_1B.yml of the ODM repository (provenance unverified)",
            NamedTable::OdmFinal => "ODM's final sampling distribution of the paper's 1B run",
            NamedTable::OdmMean => "ODM's mean sampling distribution of the paper's 1B run",
            NamedTable::DoremiBaseline256k => {
                "DoReMi's token-count baseline (256k vocab), its reference mixture"
            }
        }
    }

    fn column(self) -> usize {
        match self {
            NamedTable::Tpw => 0,
            NamedTable::Doremi256k => 1,
            NamedTable::Doremi50k => 2,
            NamedTable::Doremi1b => 3,
            NamedTable::OdmFinal => 4,
            NamedTable::OdmMean => 5,
            NamedTable::DoremiBaseline256k => 6,
        }
    }

    /// The table over the 22 Pile domains, values as printed (not normalised).
    pub fn table(self) -> WeightTable {
        let c = self.column();
        WeightTable::from_trusted(
            format!("named table {:?}", self.name()),
            ROWS.iter().map(|(n, w)| ((*n).to_owned(), w[c])).collect(),
        )
    }
}

impl fmt::Display for NamedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NamedTable {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NamedTable::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = NamedTable::ALL.iter().map(|t| t.name()).collect();
                format!(
                    "unknown weight table {s:?}; named tables: {}",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PILE_DOMAINS;

    #[test]
    fn rows_follow_the_pile_domain_order() {
        for ((name, _), expected) in ROWS.iter().zip(PILE_DOMAINS) {
            assert_eq!(*name, expected);
        }
    }

    /// The digest's "sum" row: 1.0000, 1.0001, 1.0001, 1.0001, 1.0001, 1.0002, 1.0001.
    #[test]
    fn column_sums_match_the_printed_sum_row() {
        let printed = [1.0000, 1.0001, 1.0001, 1.0001, 1.0001, 1.0002, 1.0001];
        for (table, expected) in NamedTable::ALL.into_iter().zip(printed) {
            let sum: f64 = table.table().entries().iter().map(|(_, w)| w).sum();
            assert!(
                (sum - expected).abs() < 1e-9,
                "{table}: {sum} vs {expected}"
            );
        }
    }

    /// Spot checks against values the digest quotes in its text (§2.3, §4).
    #[test]
    fn quoted_values() {
        let get = |t: NamedTable, d: &str| t.table().get(d).expect("Pile domain");
        assert_eq!(get(NamedTable::Tpw, "Pile-CC"), 0.1811);
        assert_eq!(get(NamedTable::Tpw, "Enron Emails"), 0.0014);
        assert_eq!(get(NamedTable::Doremi256k, "Pile-CC"), 0.6057);
        assert_eq!(get(NamedTable::Doremi256k, "OpenWebText2"), 0.1019);
        assert_eq!(get(NamedTable::Doremi256k, "Wikipedia (en)"), 0.0699);
        assert_eq!(get(NamedTable::Doremi256k, "YoutubeSubtitles"), 0.0502);
        assert_eq!(get(NamedTable::Doremi256k, "PhilPapers"), 0.0274);
        assert_eq!(get(NamedTable::Doremi50k, "OpenWebText2"), 0.1905);
        assert_eq!(get(NamedTable::OdmMean, "PhilPapers"), 0.0549);
        assert_eq!(get(NamedTable::OdmMean, "Github"), 0.0178);
        assert_eq!(get(NamedTable::OdmFinal, "BookCorpus2"), 0.0700);
        assert_eq!(get(NamedTable::DoremiBaseline256k, "Pile-CC"), 0.1121);
    }

    #[test]
    fn names_parse_back() {
        for t in NamedTable::ALL {
            assert_eq!(t.name().parse::<NamedTable>(), Ok(t));
        }
        let err = "TPW".parse::<NamedTable>().expect_err("case matters");
        assert!(err.contains("tpw"), "{err}");
    }
}
