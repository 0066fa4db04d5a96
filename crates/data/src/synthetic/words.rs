//! The synthetic world's vocabulary: pseudo-words drawn from the seed.
//!
//! Every proper name and every content word of the Markov, random and duplicate domains is a
//! pseudo-word built from syllables, so no third-party text is shipped and the domains'
//! vocabularies can be kept disjoint: a token then tells which domain it came from, and one
//! domain's statistics cannot leak into another's through shared content words.

use std::collections::HashSet;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

const ONSETS: &[&str] = &[
    "", "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr",
    "gr", "kr", "pl", "st", "tr", "sh", "ch",
];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ei", "ou"];
const CODAS: &[&str] = &["", "", "", "n", "r", "s", "l", "m", "k", "th"];

/// The world's word lists; disjoint from each other.
#[derive(Debug, Clone)]
pub(crate) struct Lexicon {
    /// Capitalised given names of the knowledge base's people.
    pub first_names: Vec<String>,
    /// Capitalised family names of the knowledge base's people.
    pub last_names: Vec<String>,
    /// Capitalised city names.
    pub cities: Vec<String>,
    /// Capitalised country names.
    pub countries: Vec<String>,
    /// Capitalised stems of organisation names.
    pub organizations: Vec<String>,
    /// Capitalised given names of e-mail correspondents (not shared with the knowledge base).
    pub mail_first: Vec<String>,
    /// Capitalised family names of e-mail correspondents.
    pub mail_last: Vec<String>,
    /// Lower-case company names of e-mail domains and contract parties.
    pub companies: Vec<String>,
    /// Lower-case IRC nicknames' stems.
    pub nicks: Vec<String>,
    /// Lower-case software names (chat logs) and project code names (e-mail).
    pub software: Vec<String>,
    /// Vocabulary of the easy Markov chain.
    pub markov_easy: Vec<String>,
    /// Vocabulary of the hard Markov chain.
    pub markov_hard: Vec<String>,
    /// Vocabulary of the random-token domain.
    pub random: Vec<String>,
    /// Vocabulary of the near-duplicate domain's pages and of its mutations.
    pub boilerplate: Vec<String>,
    /// Names of the tiny domain's dishes.
    pub dishes: Vec<String>,
}

/// Sizes of the lists; the Markov and random vocabularies define those domains' entropy.
pub(crate) const MARKOV_EASY_VOCAB: usize = 120;
pub(crate) const MARKOV_HARD_VOCAB: usize = 4000;
/// Vocabulary of the random-token domain: 2^10 words, so 10 bits per word exactly.
pub(crate) const RANDOM_VOCAB: usize = 1024;

impl Lexicon {
    /// Draws all lists from `rng`; the same stream gives the same lists.
    pub fn new(rng: &mut ChaCha8Rng) -> Lexicon {
        let mut used = HashSet::new();
        let mut draw = |n: usize, min_syl: u32, max_syl: u32, capital: bool| -> Vec<String> {
            let mut out = Vec::with_capacity(n);
            while out.len() < n {
                let syllables = rng.random_range(min_syl..=max_syl);
                let w = pseudo_word(rng, syllables);
                // Short words are too likely to be English ("a", "he", "so") or to clash.
                if w.len() < 3 || !used.insert(w.clone()) {
                    continue;
                }
                out.push(if capital { capitalize(&w) } else { w });
            }
            out
        };
        Lexicon {
            first_names: draw(300, 2, 3, true),
            last_names: draw(500, 2, 3, true),
            cities: draw(150, 2, 3, true),
            countries: draw(30, 2, 3, true),
            organizations: draw(120, 2, 3, true),
            mail_first: draw(120, 2, 2, true),
            mail_last: draw(160, 2, 3, true),
            companies: draw(60, 2, 2, false),
            nicks: draw(200, 1, 2, false),
            software: draw(150, 1, 2, false),
            markov_easy: draw(MARKOV_EASY_VOCAB, 1, 2, false),
            markov_hard: draw(MARKOV_HARD_VOCAB, 1, 3, false),
            random: draw(RANDOM_VOCAB, 1, 3, false),
            boilerplate: draw(200, 2, 3, false),
            dishes: draw(60, 2, 3, false),
        }
    }
}

fn pseudo_word(rng: &mut ChaCha8Rng, syllables: u32) -> String {
    let mut w = String::with_capacity(8);
    for _ in 0..syllables {
        w.push_str(ONSETS[rng.random_range(0..ONSETS.len())]);
        w.push_str(VOWELS[rng.random_range(0..VOWELS.len())]);
        w.push_str(CODAS[rng.random_range(0..CODAS.len())]);
    }
    w
}

/// `kelro` → `Kelro`.
pub(crate) fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn lists_are_disjoint_and_sized() {
        let lex = Lexicon::new(&mut ChaCha8Rng::seed_from_u64(7));
        let lists = [
            &lex.first_names,
            &lex.last_names,
            &lex.cities,
            &lex.countries,
            &lex.organizations,
            &lex.mail_first,
            &lex.mail_last,
            &lex.companies,
            &lex.nicks,
            &lex.software,
            &lex.markov_easy,
            &lex.markov_hard,
            &lex.random,
            &lex.boilerplate,
            &lex.dishes,
        ];
        let mut all = HashSet::new();
        let mut total = 0;
        for list in lists {
            total += list.len();
            for w in list {
                all.insert(w.to_lowercase());
            }
        }
        assert_eq!(all.len(), total, "word lists overlap");
        assert_eq!(lex.random.len(), RANDOM_VOCAB);
        assert_eq!(lex.markov_hard.len(), MARKOV_HARD_VOCAB);
        assert!(
            lex.cities
                .iter()
                .all(|c| c.chars().next().unwrap().is_uppercase())
        );
    }
}
