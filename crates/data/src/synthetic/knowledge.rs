//! A synthetic knowledge base (people, cities, countries, organisations) and the encyclopedic
//! domain that states its facts in varied templates.
//!
//! # Held-out question forms
//! Half the people are *quizzed*: some of their articles end with `Question: ... / Answer: ...`
//! lines, which teach the question format and that its answers come from the article. The other
//! half are never quizzed in any split: their facts are only stated declaratively. The
//! multiple-choice subject asks about this held-out half only, so answering it needs facts
//! stored from the declarative text and retrieved in a form never seen for that person (the
//! "knowledge extraction" setting). Every training split contains at least one full article on
//! every person (see `EncyclopediaSource::needs_more`).

use std::fmt::Write;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::DocumentSource;
use super::words::Lexicon;

/// A city.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct City {
    /// Its name.
    pub name: String,
    /// Index into [`KnowledgeBase::countries`].
    pub country: usize,
}

/// An organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Its full name (`Velor Observatory`).
    pub name: String,
    /// What it is (`observatory`).
    pub kind: String,
    /// Index into [`KnowledgeBase::cities`] of its seat.
    pub city: usize,
    /// Year of foundation.
    pub founded: i32,
}

/// A person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Full name, unique in the knowledge base.
    pub name: String,
    /// Family name, used alone in some sentences.
    pub surname: String,
    /// Year of birth.
    pub birth_year: i32,
    /// Index into [`KnowledgeBase::cities`].
    pub birth_city: usize,
    /// Occupation (`cartographer`).
    pub occupation: String,
    /// Index into [`KnowledgeBase::organizations`].
    pub employer: usize,
    /// Year they joined the employer.
    pub joined: i32,
    /// Whether question/answer lines about this person appear in the corpus.
    pub quizzed: bool,
}

/// The facts the multiple-choice set asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Attribute {
    /// City of birth.
    BirthCity,
    /// Year of birth.
    BirthYear,
    /// Occupation.
    Occupation,
    /// Employer.
    Employer,
}

impl Attribute {
    /// All attributes.
    pub const ALL: [Attribute; 4] = [
        Attribute::BirthCity,
        Attribute::BirthYear,
        Attribute::Occupation,
        Attribute::Employer,
    ];

    /// The question about `name`'s attribute, as quiz lines and the multiple-choice set word it.
    pub fn question(self, name: &str) -> String {
        match self {
            Attribute::BirthCity => format!("In which city was {name} born?"),
            Attribute::BirthYear => format!("In which year was {name} born?"),
            Attribute::Occupation => format!("What was the occupation of {name}?"),
            Attribute::Employer => format!("For which organization did {name} work?"),
        }
    }
}

/// A question about one attribute of one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FactQuestion {
    /// Index into [`KnowledgeBase::people`].
    pub person: usize,
    /// The attribute asked for.
    pub attribute: Attribute,
}

/// The occupations people can have (also the occupation question's distractor pool).
pub const OCCUPATIONS: [&str; 24] = [
    "painter",
    "chemist",
    "architect",
    "engineer",
    "botanist",
    "composer",
    "surgeon",
    "astronomer",
    "cartographer",
    "economist",
    "historian",
    "linguist",
    "mathematician",
    "novelist",
    "pharmacist",
    "photographer",
    "physicist",
    "poet",
    "sculptor",
    "geologist",
    "teacher",
    "lawyer",
    "banker",
    "librarian",
];

/// (kind, name suffix) of organisations.
const ORGANIZATION_KINDS: [(&str, &str); 10] = [
    ("trading company", "Works"),
    ("holding company", "Holdings"),
    ("university", "University"),
    ("museum", "Museum"),
    ("bank", "Bank"),
    ("hospital", "Hospital"),
    ("observatory", "Observatory"),
    ("theatre", "Theatre"),
    ("shipyard", "Shipyard"),
    ("library", "Library"),
];

/// The synthetic world's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnowledgeBase {
    /// Country names.
    pub countries: Vec<String>,
    /// Cities.
    pub cities: Vec<City>,
    /// Organisations.
    pub organizations: Vec<Organization>,
    /// People; even indices are quizzed, odd ones held out.
    pub people: Vec<Person>,
}

impl KnowledgeBase {
    /// A knowledge base of `n_people` people drawn from `rng` over the lexicon's names.
    pub(crate) fn new(lexicon: &Lexicon, rng: &mut ChaCha8Rng, n_people: usize) -> KnowledgeBase {
        let countries = lexicon.countries.clone();
        let cities: Vec<City> = lexicon
            .cities
            .iter()
            .map(|name| City {
                name: name.clone(),
                country: rng.random_range(0..countries.len()),
            })
            .collect();
        let organizations: Vec<Organization> = lexicon
            .organizations
            .iter()
            .map(|stem| {
                let (kind, suffix) =
                    ORGANIZATION_KINDS[rng.random_range(0..ORGANIZATION_KINDS.len())];
                Organization {
                    name: format!("{stem} {suffix}"),
                    kind: kind.to_string(),
                    city: rng.random_range(0..cities.len()),
                    // Before any person's birth, so no one joins before a foundation.
                    founded: rng.random_range(1500..=1740),
                }
            })
            .collect();
        let mut names = std::collections::HashSet::new();
        let mut people = Vec::with_capacity(n_people);
        while people.len() < n_people {
            let first = &lexicon.first_names[rng.random_range(0..lexicon.first_names.len())];
            let last = &lexicon.last_names[rng.random_range(0..lexicon.last_names.len())];
            let name = format!("{first} {last}");
            if !names.insert(name.clone()) {
                continue;
            }
            let birth_year = rng.random_range(1750..=1990);
            people.push(Person {
                name,
                surname: last.clone(),
                birth_year,
                birth_city: rng.random_range(0..cities.len()),
                occupation: OCCUPATIONS[rng.random_range(0..OCCUPATIONS.len())].to_string(),
                employer: rng.random_range(0..organizations.len()),
                joined: birth_year + rng.random_range(20..=40),
                quizzed: people.len() % 2 == 0,
            });
        }
        KnowledgeBase {
            countries,
            cities,
            organizations,
            people,
        }
    }

    /// The true answer to `attribute` of person `person`, as the corpus writes it.
    pub fn answer(&self, person: usize, attribute: Attribute) -> String {
        let p = &self.people[person];
        match attribute {
            Attribute::BirthCity => self.cities[p.birth_city].name.clone(),
            Attribute::BirthYear => p.birth_year.to_string(),
            Attribute::Occupation => p.occupation.clone(),
            Attribute::Employer => self.organizations[p.employer].name.clone(),
        }
    }

    /// Every value of `attribute`'s type (the pool distractors are drawn from).
    pub(crate) fn candidates(&self, person: usize, attribute: Attribute) -> Vec<String> {
        match attribute {
            Attribute::BirthCity => {
                // Cities of the same country first: knowing only the country is not enough.
                let country = self.cities[self.people[person].birth_city].country;
                let same: Vec<String> = self
                    .cities
                    .iter()
                    .filter(|c| c.country == country)
                    .map(|c| c.name.clone())
                    .collect();
                if same.len() >= 4 {
                    same
                } else {
                    self.cities.iter().map(|c| c.name.clone()).collect()
                }
            }
            Attribute::BirthYear => Vec::new(),
            Attribute::Occupation => OCCUPATIONS.iter().map(|s| s.to_string()).collect(),
            Attribute::Employer => self.organizations.iter().map(|o| o.name.clone()).collect(),
        }
    }

    fn country_of_city(&self, city: usize) -> &str {
        &self.countries[self.cities[city].country]
    }
}

fn a_or_an(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Writes one article about person `i`; `quiz` appends question/answer lines (quizzed people only).
fn person_article(
    kb: &KnowledgeBase,
    i: usize,
    rng: &mut ChaCha8Rng,
    quiz: bool,
    out: &mut String,
) {
    let p = &kb.people[i];
    let city = &kb.cities[p.birth_city].name;
    let country = kb.country_of_city(p.birth_city);
    let org = &kb.organizations[p.employer];
    let occ = &p.occupation;
    let an = a_or_an(occ);
    let (n, s, y) = (&p.name, &p.surname, p.birth_year);
    // Which attributes the opening sentence already stated: [city, year, occupation, employer].
    let mut covered = [false; 4];
    let _ = match rng.random_range(0..5) {
        0 => {
            covered = [true, true, true, false];
            write!(out, "{n} was {an} {occ} born in {y} in {city}, {country}.")
        }
        1 => {
            covered = [true, true, false, false];
            write!(
                out,
                "{n} (born {y} in {city}) is the subject of this article."
            )
        }
        2 => {
            covered = [false, false, true, true];
            write!(out, "{n} was {an} {occ} who worked at the {}.", org.name)
        }
        3 => {
            covered = [true, true, true, false];
            write!(out, "Born in {city} in {y}, {n} became a well-known {occ}.")
        }
        _ => {
            covered[2] = true;
            write!(out, "{n} is remembered as {an} {occ}.")
        }
    };
    let mut sentences: Vec<String> = Vec::with_capacity(5);
    if !covered[0] {
        sentences.push(match rng.random_range(0..3) {
            0 => format!("{s} was born in {city}, a city in {country}."),
            1 => format!("{n} was born in {city}."),
            _ => format!("{city} was the birthplace of {n}."),
        });
    }
    if !covered[1] {
        sentences.push(match rng.random_range(0..3) {
            0 => format!("{n} was born in {y}."),
            1 => format!("The year of {s}'s birth was {y}."),
            _ => format!("{s} was born in the year {y}."),
        });
    }
    if !covered[2] {
        sentences.push(match rng.random_range(0..3) {
            0 => format!("{s} trained as {an} {occ}."),
            1 => format!("By profession, {n} was {an} {occ}."),
            _ => format!("{n} worked as {an} {occ} for most of a long life."),
        });
    }
    if !covered[3] || rng.random_bool(0.3) {
        let org_city = &kb.cities[org.city].name;
        let kind = &org.kind;
        sentences.push(match rng.random_range(0..3) {
            0 => format!(
                "In {}, {s} joined the {}, {} {kind} in {org_city}.",
                p.joined,
                org.name,
                a_or_an(kind)
            ),
            1 => format!("{n} worked for the {} from {} onwards.", org.name, p.joined),
            _ => format!("{s} spent many years at the {}.", org.name),
        });
    }
    if rng.random_bool(0.5) {
        sentences.push(match rng.random_range(0..4) {
            0 => format!("{s} is mentioned in several local histories of {city}."),
            1 => format!("Little is known about the early life of {n}."),
            2 => format!("A portrait of {s} hangs in the {}.", org.name),
            _ => format!("{s} corresponded with many scholars of {country}."),
        });
    }
    // Sentence order varies, so a fact is not tied to a position in the article.
    for k in (1..sentences.len()).rev() {
        sentences.swap(k, rng.random_range(0..=k));
    }
    for sentence in &sentences {
        out.push(' ');
        out.push_str(sentence);
    }
    if quiz {
        let asked = rng.random_range(1..=2);
        for _ in 0..asked {
            let attr = Attribute::ALL[rng.random_range(0..4)];
            let _ = write!(
                out,
                "\n\nQuestion: {}\nAnswer: {}",
                attr.question(n),
                kb.answer(i, attr)
            );
        }
    }
    out.push('\n');
}

fn city_article(kb: &KnowledgeBase, c: usize, rng: &mut ChaCha8Rng, out: &mut String) {
    let city = &kb.cities[c].name;
    let country = kb.country_of_city(c);
    let _ = write!(out, "{city} is a city in {country}.");
    let orgs: Vec<&Organization> = kb.organizations.iter().filter(|o| o.city == c).collect();
    if !orgs.is_empty() {
        let o = orgs[rng.random_range(0..orgs.len())];
        let _ = write!(
            out,
            " It is the seat of the {}, founded in {}.",
            o.name, o.founded
        );
    }
    let natives: Vec<&Person> = kb.people.iter().filter(|p| p.birth_city == c).collect();
    if !natives.is_empty() {
        out.push_str(" People born in ");
        out.push_str(city);
        out.push_str(" include ");
        let k = natives.len().min(3);
        for j in 0..k {
            let p = natives[rng.random_range(0..natives.len())];
            if j > 0 {
                out.push_str(if j + 1 == k { " and " } else { ", " });
            }
            let _ = write!(
                out,
                "{}, {} {}",
                p.name,
                a_or_an(&p.occupation),
                p.occupation
            );
        }
        out.push('.');
    }
    out.push('\n');
}

fn organization_article(kb: &KnowledgeBase, o: usize, rng: &mut ChaCha8Rng, out: &mut String) {
    let org = &kb.organizations[o];
    let city = &kb.cities[org.city].name;
    let _ = write!(
        out,
        "The {} is {} {} in {city}, {}. It was founded in {}.",
        org.name,
        a_or_an(&org.kind),
        org.kind,
        kb.country_of_city(org.city),
        org.founded
    );
    let staff: Vec<&Person> = kb.people.iter().filter(|p| p.employer == o).collect();
    if !staff.is_empty() {
        out.push_str(" Its staff have included ");
        let k = staff.len().min(3);
        for j in 0..k {
            let p = staff[rng.random_range(0..staff.len())];
            if j > 0 {
                out.push_str(if j + 1 == k { " and " } else { ", " });
            }
            let _ = write!(out, "{} ({})", p.name, p.occupation);
        }
        out.push('.');
    }
    out.push('\n');
}

/// Articles about the knowledge base: mostly people, some cities and organisations.
pub(crate) struct EncyclopediaSource<'a> {
    pub kb: &'a KnowledgeBase,
    pub rng: ChaCha8Rng,
    /// People left in the current pass, in random order (training split only).
    pub pending: Vec<usize>,
    /// Whether this source must cover every person before it may stop.
    pub cover_all: bool,
    /// Completed passes over all people.
    pub passes: usize,
}

impl<'a> EncyclopediaSource<'a> {
    pub fn new(kb: &'a KnowledgeBase, rng: ChaCha8Rng, cover_all: bool) -> Self {
        EncyclopediaSource {
            kb,
            rng,
            pending: Vec::new(),
            cover_all,
            passes: 0,
        }
    }

    fn next_person(&mut self) -> usize {
        if !self.cover_all {
            return self.rng.random_range(0..self.kb.people.len());
        }
        if self.pending.is_empty() {
            self.pending = (0..self.kb.people.len()).collect();
            for k in (1..self.pending.len()).rev() {
                let j = self.rng.random_range(0..=k);
                self.pending.swap(k, j);
            }
        }
        let p = self.pending.pop().expect("refilled above");
        if self.pending.is_empty() {
            self.passes += 1;
        }
        p
    }
}

impl DocumentSource for EncyclopediaSource<'_> {
    fn next_document(&mut self, out: &mut String) {
        match self.rng.random_range(0..10) {
            0 => {
                let c = self.rng.random_range(0..self.kb.cities.len());
                city_article(self.kb, c, &mut self.rng, out);
            }
            1 => {
                let o = self.rng.random_range(0..self.kb.organizations.len());
                organization_article(self.kb, o, &mut self.rng, out);
            }
            _ => {
                let i = self.next_person();
                let quiz = self.kb.people[i].quizzed && self.rng.random_bool(0.5);
                person_article(self.kb, i, &mut self.rng, quiz, out);
            }
        }
    }

    /// The training split goes on until every person has had an article, so every fact the
    /// multiple-choice set asks about is stated in training text.
    fn needs_more(&self) -> bool {
        self.cover_all && self.passes == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn articles_state_every_attribute_and_quiz_only_quizzed_people() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let lex = Lexicon::new(&mut rng);
        let kb = KnowledgeBase::new(&lex, &mut rng, 40);
        for i in 0..kb.people.len() {
            for _ in 0..20 {
                let mut s = String::new();
                person_article(&kb, i, &mut rng, kb.people[i].quizzed, &mut s);
                for attr in Attribute::ALL {
                    assert!(s.contains(&kb.answer(i, attr)), "{attr:?} missing in {s}");
                }
                assert_eq!(
                    s.contains("Question:"),
                    kb.people[i].quizzed && s.contains("Answer:")
                );
            }
        }
        assert!(kb.people.iter().filter(|p| p.quizzed).count() == 20);
    }

    #[test]
    fn training_source_covers_everyone_before_stopping() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let lex = Lexicon::new(&mut rng);
        let kb = KnowledgeBase::new(&lex, &mut rng, 30);
        let mut src = EncyclopediaSource::new(&kb, ChaCha8Rng::seed_from_u64(1), true);
        let mut text = String::new();
        while src.needs_more() {
            src.next_document(&mut text);
        }
        for p in &kb.people {
            assert!(text.contains(&p.name));
        }
    }
}
