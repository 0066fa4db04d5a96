//! The 57 MMLU subjects and their four categories, as in lm-evaluation-harness
//! (`lm_eval/tasks/mmlu/_generate_configs.py`, `SUBJECTS`).

use serde::{Deserialize, Serialize};

/// One of the four MMLU category groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Science, technology, engineering and mathematics (19 subjects).
    Stem,
    /// Humanities (13 subjects).
    Humanities,
    /// Social sciences (12 subjects).
    SocialSciences,
    /// Everything else: business, health, miscellany (13 subjects).
    Other,
}

impl Category {
    /// All categories in lm-evaluation-harness's reporting order.
    pub const ALL: [Category; 4] = [
        Category::Stem,
        Category::Humanities,
        Category::SocialSciences,
        Category::Other,
    ];

    /// The name lm-evaluation-harness prints (`stem`, `humanities`, `social sciences`, `other`),
    /// with STEM in capitals as in the MMLU paper.
    pub fn label(self) -> &'static str {
        match self {
            Category::Stem => "STEM",
            Category::Humanities => "humanities",
            Category::SocialSciences => "social sciences",
            Category::Other => "other",
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// The 57 MMLU subjects with their categories, in alphabetical order.
pub const MMLU_SUBJECTS: [(&str, Category); 57] = {
    use Category::{Humanities as H, Other as O, SocialSciences as S, Stem as T};
    [
        ("abstract_algebra", T),
        ("anatomy", T),
        ("astronomy", T),
        ("business_ethics", O),
        ("clinical_knowledge", O),
        ("college_biology", T),
        ("college_chemistry", T),
        ("college_computer_science", T),
        ("college_mathematics", T),
        ("college_medicine", O),
        ("college_physics", T),
        ("computer_security", T),
        ("conceptual_physics", T),
        ("econometrics", S),
        ("electrical_engineering", T),
        ("elementary_mathematics", T),
        ("formal_logic", H),
        ("global_facts", O),
        ("high_school_biology", T),
        ("high_school_chemistry", T),
        ("high_school_computer_science", T),
        ("high_school_european_history", H),
        ("high_school_geography", S),
        ("high_school_government_and_politics", S),
        ("high_school_macroeconomics", S),
        ("high_school_mathematics", T),
        ("high_school_microeconomics", S),
        ("high_school_physics", T),
        ("high_school_psychology", S),
        ("high_school_statistics", T),
        ("high_school_us_history", H),
        ("high_school_world_history", H),
        ("human_aging", O),
        ("human_sexuality", S),
        ("international_law", H),
        ("jurisprudence", H),
        ("logical_fallacies", H),
        ("machine_learning", T),
        ("management", O),
        ("marketing", O),
        ("medical_genetics", O),
        ("miscellaneous", O),
        ("moral_disputes", H),
        ("moral_scenarios", H),
        ("nutrition", O),
        ("philosophy", H),
        ("prehistory", H),
        ("professional_accounting", O),
        ("professional_law", H),
        ("professional_medicine", O),
        ("professional_psychology", S),
        ("public_relations", S),
        ("security_studies", S),
        ("sociology", S),
        ("us_foreign_policy", S),
        ("virology", O),
        ("world_religions", H),
    ]
};

/// The category of an MMLU subject, or `None` for a subject outside MMLU's 57.
pub fn category_of(subject: &str) -> Option<Category> {
    MMLU_SUBJECTS
        .binary_search_by(|(name, _)| name.cmp(&subject))
        .ok()
        .map(|index| MMLU_SUBJECTS[index].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_sorted_unique_and_counted_per_category() {
        assert!(MMLU_SUBJECTS.windows(2).all(|pair| pair[0].0 < pair[1].0));
        let count = |category| MMLU_SUBJECTS.iter().filter(|(_, c)| *c == category).count();
        // Counts from the table in odm-facts.md §5.2 (lm-evaluation-harness _generate_configs.py).
        assert_eq!(count(Category::Stem), 19);
        assert_eq!(count(Category::Humanities), 13);
        assert_eq!(count(Category::SocialSciences), 12);
        assert_eq!(count(Category::Other), 13);
        for (subject, category) in MMLU_SUBJECTS {
            assert_eq!(category_of(subject), Some(category));
        }
        assert_eq!(category_of("not_a_subject"), None);
    }
}
