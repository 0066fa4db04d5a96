//! Near-duplicate web boilerplate: a few distinct pages, repeated with small edits.
//!
//! A pool of [`POOL_SIZE`] pages (cookie notices, terms of use, ...) is drawn once per seed and
//! shared by all splits. Each document is one of them, verbatim half of the time and otherwise
//! with one to three words replaced. A model memorises the pool quickly: the loss becomes low
//! early and there is little left to learn, the opposite of the random domain. Validation and
//! test documents come from the same pool, as duplicates across splits do in web corpora.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::DocumentSource;
use super::words::{Lexicon, capitalize};

/// Number of distinct pages.
pub(crate) const POOL_SIZE: usize = 16;

const PAGES: [&str; 7] = [
    "Cookie Policy",
    "Terms of Use",
    "Privacy Notice",
    "About Us",
    "Shipping Information",
    "Newsletter",
    "Contact",
];

const SENTENCES: [&str; 12] = [
    "{S} uses cookies to improve your experience on our website.",
    "By continuing to browse {S}, you agree to our use of cookies.",
    "All content on this page is provided for general information only.",
    "For questions about this policy, contact {w}@{s}.com.",
    "This page was last updated in {y}.",
    "Copyright {y} {S}. All rights reserved.",
    "We may share information with {w} partners for {w} purposes.",
    "You can change your {w} preferences at any time.",
    "{S} is not responsible for the content of external {w} sites.",
    "Subscribe to the {S} newsletter to receive {w} updates.",
    "Orders placed before noon are shipped the same day from our {w} warehouse.",
    "Please read these terms carefully before using the {w} service.",
];

/// A page: its title line and its body as words, `\n` marking a paragraph break.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    title: String,
    words: Vec<String>,
}

impl Page {
    fn render(&self, words: &[String], out: &mut String) {
        out.push_str(&self.title);
        out.push_str("\n\n");
        let mut fresh_line = true;
        for w in words {
            if w == "\n" {
                out.push_str("\n\n");
                fresh_line = true;
                continue;
            }
            if !fresh_line {
                out.push(' ');
            }
            out.push_str(w);
            fresh_line = false;
        }
        out.push('\n');
    }
}

/// The shared pool of pages, drawn from `rng`.
pub(crate) fn pool(lexicon: &Lexicon, rng: &mut ChaCha8Rng) -> Vec<Page> {
    let vocab = &lexicon.boilerplate;
    let mut sites: Vec<&String> = Vec::new();
    while sites.len() < POOL_SIZE {
        let s = &vocab[rng.random_range(0..vocab.len())];
        if !sites.contains(&s) {
            sites.push(s);
        }
    }
    sites
        .into_iter()
        .map(|site| {
            let site_cap = capitalize(site);
            let title = format!("{site_cap} | {}", PAGES[rng.random_range(0..PAGES.len())]);
            let mut words = Vec::new();
            let paragraphs = rng.random_range(2..=4);
            for p in 0..paragraphs {
                if p > 0 {
                    words.push("\n".to_string());
                }
                for _ in 0..rng.random_range(3..=5) {
                    let mut s = SENTENCES[rng.random_range(0..SENTENCES.len())]
                        .replace("{S}", &site_cap)
                        .replace("{s}", site)
                        .replace("{y}", &rng.random_range(2005..=2023).to_string());
                    while s.contains("{w}") {
                        s = s.replacen("{w}", &vocab[rng.random_range(0..vocab.len())], 1);
                    }
                    words.extend(s.split(' ').map(str::to_string));
                }
            }
            Page { title, words }
        })
        .collect()
}

/// Pages from the pool, half verbatim, half with 1-3 words replaced.
pub(crate) struct DuplicateSource<'a> {
    pub pool: &'a [Page],
    pub vocab: &'a [String],
    pub rng: ChaCha8Rng,
}

impl DocumentSource for DuplicateSource<'_> {
    fn next_document(&mut self, out: &mut String) {
        let page = &self.pool[self.rng.random_range(0..self.pool.len())];
        if self.rng.random_bool(0.5) {
            page.render(&page.words, out);
            return;
        }
        let mut words = page.words.clone();
        for _ in 0..self.rng.random_range(1..=3) {
            let i = self.rng.random_range(0..words.len());
            if words[i] != "\n" {
                words[i] = self.vocab[self.rng.random_range(0..self.vocab.len())].clone();
            }
        }
        page.render(&words, out);
    }
}
