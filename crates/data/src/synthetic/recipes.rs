//! A tiny domain of recipes: few documents, so training runs out of them and repeats.
//!
//! Learnable structure: the method only uses ingredients from the list, steps are numbered, and
//! "Serves N" / quantities are small numbers. The training split holds only a few dozen
//! documents, so a sampler loops over them many times: the training loss falls towards zero
//! while the validation loss (fresh recipes) stops improving and then rises, the over-fitting a
//! mixer should avoid by not over-sampling a small domain.

use std::fmt::Write;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::DocumentSource;
use super::words::capitalize;

const INGREDIENTS: [&str; 20] = [
    "flour",
    "butter",
    "sugar",
    "salt",
    "onions",
    "garlic",
    "rice",
    "lentils",
    "milk",
    "eggs",
    "tomatoes",
    "carrots",
    "honey",
    "yoghurt",
    "spinach",
    "chickpeas",
    "olive oil",
    "cumin",
    "black pepper",
    "lemon juice",
];
const UNITS: [&str; 5] = [
    "cups of",
    "tablespoons of",
    "teaspoons of",
    "grams of",
    "pinches of",
];
const STYLES: [&str; 6] = [
    "Spiced",
    "Baked",
    "Creamy",
    "Grandmother's",
    "Quick",
    "Roasted",
];

/// Recipes of 4-7 ingredients and 4-7 steps.
pub(crate) struct RecipeSource<'a> {
    pub dishes: &'a [String],
    pub rng: ChaCha8Rng,
}

impl DocumentSource for RecipeSource<'_> {
    fn next_document(&mut self, out: &mut String) {
        let rng = &mut self.rng;
        let dish = &self.dishes[rng.random_range(0..self.dishes.len())];
        let style = STYLES[rng.random_range(0..STYLES.len())];
        let _ = write!(
            out,
            "{style} {}\n\nServes {}. Preparation time: {} minutes.\n\nIngredients:\n",
            capitalize(dish),
            rng.random_range(2..=8),
            5 * rng.random_range(3..=18)
        );
        let mut items: Vec<&str> = Vec::new();
        let n = rng.random_range(4..=7);
        while items.len() < n {
            let i = INGREDIENTS[rng.random_range(0..INGREDIENTS.len())];
            if !items.contains(&i) {
                items.push(i);
            }
        }
        for i in &items {
            let _ = writeln!(
                out,
                "- {} {} {i}",
                rng.random_range(1..=6),
                UNITS[rng.random_range(0..UNITS.len())]
            );
        }
        out.push_str("\nMethod:\n");
        let steps = rng.random_range(4..=7);
        for s in 1..=steps {
            let a = items[rng.random_range(0..items.len())];
            let b = items[rng.random_range(0..items.len())];
            let minutes = rng.random_range(2..=40);
            let step = match rng.random_range(0..6) {
                0 => format!("Heat the {a} in a pan over medium heat."),
                1 => format!("Add the {a} and stir for {minutes} minutes."),
                2 => format!("Mix the {a} with the {b} in a large bowl."),
                3 => format!("Bake for {minutes} minutes until golden."),
                4 => format!("Season with the {a} and serve warm."),
                _ => format!("Let the {a} rest for {minutes} minutes."),
            };
            let _ = writeln!(out, "{s}. {step}");
        }
    }
}
