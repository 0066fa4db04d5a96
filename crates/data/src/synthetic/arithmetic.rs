//! Arithmetic question/answer pairs in the spirit of DeepMind Mathematics, at four levels.
//!
//! | level | problems |
//! |---|---|
//! | 1 | one-digit `a + b`, `a - b` |
//! | 2 | two-digit `+`/`-`, one-digit `*` |
//! | 3 | three-digit `+`/`-`, two-digit by one-digit `*`, exact `/` |
//! | 4 | two operations with precedence and parentheses; `a*x + b = c` for `x` |
//!
//! Every result, intermediate value and answer is a non-negative integer, so a problem has one
//! exact answer; the answer is computed from the problem's structure, never parsed from its text.

use std::fmt::Write;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::DocumentSource;

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`, only ever applied where it divides exactly.
    Div,
}

impl Op {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
        }
    }

    fn precedence(self) -> u8 {
        match self {
            Op::Add | Op::Sub => 1,
            Op::Mul | Op::Div => 2,
        }
    }

    /// `a op b`, or `None` when it is not a non-negative integer.
    pub fn apply(self, a: i64, b: i64) -> Option<i64> {
        let v = match self {
            Op::Add => a.checked_add(b)?,
            Op::Sub => a.checked_sub(b)?,
            Op::Mul => a.checked_mul(b)?,
            Op::Div => {
                if b == 0 || a % b != 0 {
                    return None;
                }
                a / b
            }
        };
        (v >= 0).then_some(v)
    }
}

/// An arithmetic expression over non-negative integer literals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expr {
    /// A literal.
    Num(i64),
    /// `left op right`.
    Bin(Box<Expr>, Op, Box<Expr>),
}

impl Expr {
    fn bin(a: Expr, op: Op, b: Expr) -> Expr {
        Expr::Bin(Box::new(a), op, Box::new(b))
    }

    /// The value, or `None` when some step is not a non-negative integer.
    pub fn eval(&self) -> Option<i64> {
        match self {
            Expr::Num(n) => Some(*n),
            Expr::Bin(a, op, b) => op.apply(a.eval()?, b.eval()?),
        }
    }

    fn precedence(&self) -> u8 {
        match self {
            Expr::Num(_) => 3,
            Expr::Bin(_, op, _) => op.precedence(),
        }
    }

    /// The expression with the fewest parentheses that keep its meaning (`(3 + 4) * 2`).
    pub fn render(&self) -> String {
        let mut s = String::new();
        self.render_into(&mut s);
        s
    }

    fn render_into(&self, out: &mut String) {
        match self {
            Expr::Num(n) => {
                let _ = write!(out, "{n}");
            }
            Expr::Bin(a, op, b) => {
                // Left-associative: a left operand of lower precedence and a right operand of
                // lower or equal precedence need parentheses.
                let wrap_a = a.precedence() < op.precedence();
                let wrap_b = b.precedence() <= op.precedence();
                wrap(out, a, wrap_a);
                let _ = write!(out, " {} ", op.symbol());
                wrap(out, b, wrap_b);
            }
        }
    }
}

fn wrap(out: &mut String, e: &Expr, parens: bool) {
    if parens {
        out.push('(');
        e.render_into(out);
        out.push(')');
    } else {
        e.render_into(out);
    }
}

/// One arithmetic problem with its ground truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Problem {
    /// Evaluate an expression.
    Evaluate {
        /// Difficulty level, 1 to 4.
        level: u8,
        /// The expression.
        expr: Expr,
    },
    /// Solve `a*x + b = c` for `x` (level 4).
    Linear {
        /// Coefficient of `x`.
        a: i64,
        /// Constant on the left.
        b: i64,
        /// Right-hand side.
        c: i64,
    },
}

/// Question forms of an [`Problem::Evaluate`]; the first is the one the multiple-choice set uses.
const EVALUATE_FORMS: [&str; 4] = [
    "What is {}?",
    "Calculate {}.",
    "Evaluate {}.",
    "Work out {}.",
];
const LINEAR_FORMS: [&str; 2] = ["Solve {} for x.", "Find x if {}."];

impl Problem {
    /// Difficulty level, 1 to 4.
    pub fn level(&self) -> u8 {
        match self {
            Problem::Evaluate { level, .. } => *level,
            Problem::Linear { .. } => 4,
        }
    }

    /// Level and form: the level with the top-level operator of an evaluation, or `None` for
    /// `a*x + b = c`. Problems of one shape have answers from one distribution.
    pub fn shape(&self) -> (u8, Option<Op>) {
        match self {
            Problem::Evaluate { level, expr } => match expr {
                Expr::Bin(_, op, _) => (*level, Some(*op)),
                Expr::Num(_) => (*level, None),
            },
            Problem::Linear { .. } => (4, None),
        }
    }

    /// The exact answer, from the problem's structure.
    pub fn answer(&self) -> i64 {
        match self {
            Problem::Evaluate { expr, .. } => expr
                .eval()
                .expect("generated expressions evaluate to non-negative integers"),
            Problem::Linear { a, b, c } => (c - b) / a,
        }
    }

    /// The question in form `form` (0 is the canonical form, see [`Problem::canonical_question`]).
    pub fn question(&self, form: usize) -> String {
        let (forms, body): (&[&str], String) = match self {
            Problem::Evaluate { expr, .. } => (&EVALUATE_FORMS, expr.render()),
            Problem::Linear { a, b, c } => (&LINEAR_FORMS, format!("{a}*x + {b} = {c}")),
        };
        forms[form % forms.len()].replacen("{}", &body, 1)
    }

    /// `What is 3 + 4?` / `Solve 3*x + 4 = 19 for x.`: the form the training text uses most.
    pub fn canonical_question(&self) -> String {
        self.question(0)
    }
}

/// A random problem of `level` (1 to 4).
pub(crate) fn problem(rng: &mut ChaCha8Rng, level: u8) -> Problem {
    let num = |rng: &mut ChaCha8Rng, lo: i64, hi: i64| Expr::Num(rng.random_range(lo..=hi));
    loop {
        let p = match level {
            1 => {
                let (a, b) = (rng.random_range(0..=9), rng.random_range(0..=9));
                if rng.random_bool(0.5) {
                    Problem::Evaluate {
                        level,
                        expr: Expr::bin(Expr::Num(a), Op::Add, Expr::Num(b)),
                    }
                } else {
                    let (a, b) = (a.max(b), a.min(b));
                    Problem::Evaluate {
                        level,
                        expr: Expr::bin(Expr::Num(a), Op::Sub, Expr::Num(b)),
                    }
                }
            }
            2 => {
                let expr = match rng.random_range(0..3) {
                    0 => Expr::bin(num(rng, 10, 99), Op::Add, num(rng, 10, 99)),
                    1 => {
                        let (a, b) = (rng.random_range(10..=99), rng.random_range(10..=99));
                        Expr::bin(Expr::Num(a.max(b)), Op::Sub, Expr::Num(a.min(b)))
                    }
                    _ => Expr::bin(num(rng, 2, 9), Op::Mul, num(rng, 2, 9)),
                };
                Problem::Evaluate { level, expr }
            }
            3 => {
                let expr = match rng.random_range(0..4) {
                    0 => Expr::bin(num(rng, 100, 999), Op::Add, num(rng, 100, 999)),
                    1 => {
                        let (a, b) = (rng.random_range(100..=999), rng.random_range(100..=999));
                        Expr::bin(Expr::Num(a.max(b)), Op::Sub, Expr::Num(a.min(b)))
                    }
                    2 => Expr::bin(num(rng, 11, 99), Op::Mul, num(rng, 2, 9)),
                    _ => {
                        let (d, q) = (rng.random_range(2..=9), rng.random_range(2..=99));
                        Expr::bin(Expr::Num(d * q), Op::Div, Expr::Num(d))
                    }
                };
                Problem::Evaluate { level, expr }
            }
            _ => {
                if rng.random_bool(0.3) {
                    let (a, x, b) = (
                        rng.random_range(2..=9),
                        rng.random_range(0..=20),
                        rng.random_range(0..=30),
                    );
                    Problem::Linear { a, b, c: a * x + b }
                } else {
                    let operand = |rng: &mut ChaCha8Rng, op: Op| match op {
                        Op::Mul => num(rng, 2, 12),
                        _ => num(rng, 1, 50),
                    };
                    let ops = [Op::Add, Op::Sub, Op::Mul];
                    let (op1, op2) = (ops[rng.random_range(0..3)], ops[rng.random_range(0..3)]);
                    let expr = if rng.random_bool(0.5) {
                        let inner = Expr::bin(operand(rng, op1), op1, operand(rng, op1));
                        Expr::bin(inner, op2, operand(rng, op2))
                    } else {
                        let inner = Expr::bin(operand(rng, op2), op2, operand(rng, op2));
                        Expr::bin(operand(rng, op1), op1, inner)
                    };
                    Problem::Evaluate { level: 4, expr }
                }
            }
        };
        // Rejection keeps every step a non-negative integer and level-4 results readable.
        let ok = match &p {
            Problem::Evaluate { expr, .. } => expr.eval().is_some_and(|v| v <= 2000),
            Problem::Linear { .. } => true,
        };
        if ok {
            return p;
        }
    }
}

/// Level mix of the domain's documents: easy problems are the most common, as in a curriculum
/// where the basics are seen most.
const LEVEL_WEIGHTS: [(u8, f64); 4] = [(1, 0.30), (2, 0.30), (3, 0.25), (4, 0.15)];

pub(crate) fn random_level(rng: &mut ChaCha8Rng) -> u8 {
    let mut u: f64 = rng.random();
    for (level, w) in LEVEL_WEIGHTS {
        if u < w {
            return level;
        }
        u -= w;
    }
    4
}

/// Documents of 15-40 `Question: ...\nAnswer: ...` pairs of mixed levels.
pub(crate) struct ArithmeticSource {
    pub rng: ChaCha8Rng,
}

impl DocumentSource for ArithmeticSource {
    fn next_document(&mut self, out: &mut String) {
        let n = self.rng.random_range(15..=40);
        for i in 0..n {
            let level = random_level(&mut self.rng);
            let p = problem(&mut self.rng, level);
            // The canonical form about half the time, so the multiple-choice wording is familiar
            // but the domain is not one fixed template.
            let form = if self.rng.random_bool(0.5) {
                0
            } else {
                self.rng.random_range(1..4)
            };
            if i > 0 {
                out.push('\n');
            }
            let _ = write!(
                out,
                "Question: {}\nAnswer: {}\n",
                p.question(form),
                p.answer()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn rendering_keeps_meaning() {
        let e = Expr::bin(
            Expr::bin(Expr::Num(3), Op::Add, Expr::Num(4)),
            Op::Mul,
            Expr::Num(2),
        );
        assert_eq!(e.render(), "(3 + 4) * 2");
        assert_eq!(e.eval(), Some(14));
        let e = Expr::bin(
            Expr::Num(9),
            Op::Sub,
            Expr::bin(Expr::Num(4), Op::Sub, Expr::Num(2)),
        );
        assert_eq!(e.render(), "9 - (4 - 2)");
        assert_eq!(e.eval(), Some(7));
        let e = Expr::bin(
            Expr::Num(9),
            Op::Sub,
            Expr::bin(Expr::Num(4), Op::Mul, Expr::Num(2)),
        );
        assert_eq!(e.render(), "9 - 4 * 2");
        assert_eq!(e.eval(), Some(1));
    }

    #[test]
    fn problems_have_exact_non_negative_answers() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for level in 1..=4 {
            for _ in 0..500 {
                let p = problem(&mut rng, level);
                assert_eq!(p.level(), level);
                let ans = p.answer();
                assert!(ans >= 0);
                if let Problem::Linear { a, b, c } = p {
                    assert_eq!(a * ans + b, c);
                }
            }
        }
        assert_eq!(Op::Div.apply(7, 2), None);
        assert_eq!(Op::Sub.apply(2, 7), None);
    }
}
