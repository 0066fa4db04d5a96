//! A small imperative language, generated from a grammar with consistent variable use.
//!
//! ```text
//! program := stmt* print
//! stmt    := "let" NAME "=" expr ";"            (NAME not yet declared)
//!          | NAME "=" expr ";"                  (NAME declared)
//!          | "if" expr CMP expr "{" assign+ "}" ["else" "{" assign+ "}"]
//!          | "repeat" INT "{" assign+ "}"
//!          | "print(" expr ");"
//! expr    := atom | atom OP atom | ...           (OP: + - *, usual precedence)
//! atom    := NAME | INT | "(" expr ")"
//! ```
//! Variables are declared only at the top level and only used after their declaration, so every
//! program runs. Each program in a document is followed by `// output: ...`, the values it
//! prints: predicting that line means executing the program. Generated programs keep every value
//! within ±999 (rejection sampling), so outputs are short numbers.

use std::collections::BTreeMap;
use std::fmt::Write;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::DocumentSource;

/// An arithmetic operator of the language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
        }
    }
    fn precedence(self) -> u8 {
        match self {
            BinOp::Add | BinOp::Sub => 1,
            BinOp::Mul => 2,
        }
    }
}

/// A comparison of an `if`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    /// `<`
    Lt,
    /// `>`
    Gt,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Gt => ">",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }
    fn holds(self, a: i64, b: i64) -> bool {
        match self {
            CmpOp::Lt => a < b,
            CmpOp::Gt => a > b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }
}

/// An expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expr {
    /// A non-negative integer literal.
    Num(i64),
    /// A variable.
    Var(String),
    /// `left op right`.
    Bin(Box<Expr>, BinOp, Box<Expr>),
}

/// A statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stmt {
    /// `let name = expr;`
    Let(String, Expr),
    /// `name = expr;`
    Assign(String, Expr),
    /// `if left cmp right { then } else { otherwise }` (`otherwise` may be empty).
    If {
        /// Left side of the comparison.
        left: Expr,
        /// The comparison.
        cmp: CmpOp,
        /// Right side of the comparison.
        right: Expr,
        /// Statements run when the comparison holds.
        then: Vec<Stmt>,
        /// Statements run otherwise; no `else` block when empty.
        otherwise: Vec<Stmt>,
    },
    /// `repeat n { body }`
    Repeat(u32, Vec<Stmt>),
    /// `print(expr);`
    Print(Expr),
}

/// A whole program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// The top-level statements.
    pub body: Vec<Stmt>,
}

/// What running a program produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// The printed values, in order.
    pub output: Vec<i64>,
    /// Every value any variable took, in order (plausible wrong answers).
    pub values: Vec<i64>,
}

impl Program {
    /// Runs the program; an error names an undeclared or redeclared variable or an overflow.
    pub fn run(&self) -> Result<Execution, String> {
        let mut env = BTreeMap::new();
        let mut exec = Execution {
            output: Vec::new(),
            values: Vec::new(),
        };
        run_block(&self.body, &mut env, &mut exec)?;
        Ok(exec)
    }

    /// The program's source text, one statement per line, blocks indented by four spaces.
    pub fn render(&self) -> String {
        let mut s = String::new();
        render_block(&self.body, 0, &mut s);
        s
    }
}

fn eval(e: &Expr, env: &BTreeMap<String, i64>) -> Result<i64, String> {
    match e {
        Expr::Num(n) => Ok(*n),
        Expr::Var(v) => env
            .get(v)
            .copied()
            .ok_or_else(|| format!("undeclared variable `{v}`")),
        Expr::Bin(a, op, b) => {
            let (a, b) = (eval(a, env)?, eval(b, env)?);
            match op {
                BinOp::Add => a.checked_add(b),
                BinOp::Sub => a.checked_sub(b),
                BinOp::Mul => a.checked_mul(b),
            }
            .ok_or_else(|| "integer overflow".to_string())
        }
    }
}

fn run_block(
    stmts: &[Stmt],
    env: &mut BTreeMap<String, i64>,
    exec: &mut Execution,
) -> Result<(), String> {
    for s in stmts {
        match s {
            Stmt::Let(name, e) => {
                if env.contains_key(name) {
                    return Err(format!("`{name}` declared twice"));
                }
                let v = eval(e, env)?;
                env.insert(name.clone(), v);
                exec.values.push(v);
            }
            Stmt::Assign(name, e) => {
                let v = eval(e, env)?;
                let slot = env
                    .get_mut(name)
                    .ok_or_else(|| format!("assignment to undeclared `{name}`"))?;
                *slot = v;
                exec.values.push(v);
            }
            Stmt::If {
                left,
                cmp,
                right,
                then,
                otherwise,
            } => {
                let block = if cmp.holds(eval(left, env)?, eval(right, env)?) {
                    then
                } else {
                    otherwise
                };
                run_block(block, env, exec)?;
            }
            Stmt::Repeat(n, body) => {
                for _ in 0..*n {
                    run_block(body, env, exec)?;
                }
            }
            Stmt::Print(e) => exec.output.push(eval(e, env)?),
        }
    }
    Ok(())
}

fn expr_precedence(e: &Expr) -> u8 {
    match e {
        Expr::Bin(_, op, _) => op.precedence(),
        _ => 3,
    }
}

fn render_expr(e: &Expr, out: &mut String) {
    match e {
        Expr::Num(n) => {
            let _ = write!(out, "{n}");
        }
        Expr::Var(v) => out.push_str(v),
        Expr::Bin(a, op, b) => {
            // Left-associative operators: parentheses exactly where the parser needs them.
            let (wrap_a, wrap_b) = (
                expr_precedence(a) < op.precedence(),
                expr_precedence(b) <= op.precedence(),
            );
            render_wrapped(a, wrap_a, out);
            let _ = write!(out, " {} ", op.symbol());
            render_wrapped(b, wrap_b, out);
        }
    }
}

fn render_wrapped(e: &Expr, parens: bool, out: &mut String) {
    if parens {
        out.push('(');
    }
    render_expr(e, out);
    if parens {
        out.push(')');
    }
}

fn render_block(stmts: &[Stmt], depth: usize, out: &mut String) {
    for s in stmts {
        for _ in 0..depth {
            out.push_str("    ");
        }
        match s {
            Stmt::Let(name, e) => {
                let _ = write!(out, "let {name} = ");
                render_expr(e, out);
                out.push_str(";\n");
            }
            Stmt::Assign(name, e) => {
                let _ = write!(out, "{name} = ");
                render_expr(e, out);
                out.push_str(";\n");
            }
            Stmt::If {
                left,
                cmp,
                right,
                then,
                otherwise,
            } => {
                out.push_str("if ");
                render_expr(left, out);
                let _ = write!(out, " {} ", cmp.symbol());
                render_expr(right, out);
                out.push_str(" {\n");
                render_block(then, depth + 1, out);
                indent(depth, out);
                if otherwise.is_empty() {
                    out.push_str("}\n");
                } else {
                    out.push_str("} else {\n");
                    render_block(otherwise, depth + 1, out);
                    indent(depth, out);
                    out.push_str("}\n");
                }
            }
            Stmt::Repeat(n, body) => {
                let _ = writeln!(out, "repeat {n} {{");
                render_block(body, depth + 1, out);
                indent(depth, out);
                out.push_str("}\n");
            }
            Stmt::Print(e) => {
                out.push_str("print(");
                render_expr(e, out);
                out.push_str(");\n");
            }
        }
    }
}

fn indent(depth: usize, out: &mut String) {
    for _ in 0..depth {
        out.push_str("    ");
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Int(i64),
    Sym(&'static str),
}

fn lex(src: &str) -> Result<Vec<Token>, String> {
    // Two-character symbols first, so `==` is not read as `=` `=`.
    const SYMBOLS: [&str; 13] = [
        "==", "!=", "=", ";", "{", "}", "(", ")", "+", "-", "*", "<", ">",
    ];
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    'outer: while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let n = src[start..i]
                .parse()
                .map_err(|_| format!("bad integer `{}`", &src[start..i]))?;
            tokens.push(Token::Int(n));
        } else if c.is_ascii_lowercase() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            tokens.push(Token::Ident(src[start..i].to_string()));
        } else {
            for sym in SYMBOLS {
                if src[i..].starts_with(sym) {
                    tokens.push(Token::Sym(sym));
                    i += sym.len();
                    continue 'outer;
                }
            }
            return Err(format!("unexpected character `{}` at byte {i}", c as char));
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }
    fn next(&mut self) -> Result<Token, String> {
        let t = self
            .tokens
            .get(self.pos)
            .cloned()
            .ok_or("unexpected end of program")?;
        self.pos += 1;
        Ok(t)
    }
    fn expect(&mut self, sym: &'static str) -> Result<(), String> {
        match self.next()? {
            Token::Sym(s) if s == sym => Ok(()),
            other => Err(format!("expected `{sym}`, found {other:?}")),
        }
    }
    fn is_sym(&self, sym: &str) -> bool {
        matches!(self.peek(), Some(Token::Sym(s)) if *s == sym)
    }
    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(s)) if s == kw)
    }
    fn name(&mut self) -> Result<String, String> {
        match self.next()? {
            Token::Ident(s) => Ok(s),
            other => Err(format!("expected a name, found {other:?}")),
        }
    }

    fn block(&mut self) -> Result<Vec<Stmt>, String> {
        self.expect("{")?;
        let mut out = Vec::new();
        while !self.is_sym("}") {
            out.push(self.statement()?);
        }
        self.expect("}")?;
        Ok(out)
    }

    fn statement(&mut self) -> Result<Stmt, String> {
        let word = self.name()?;
        match word.as_str() {
            "let" => {
                let name = self.name()?;
                self.expect("=")?;
                let e = self.expr(0)?;
                self.expect(";")?;
                Ok(Stmt::Let(name, e))
            }
            "if" => {
                let left = self.expr(0)?;
                let cmp = match self.next()? {
                    Token::Sym("<") => CmpOp::Lt,
                    Token::Sym(">") => CmpOp::Gt,
                    Token::Sym("==") => CmpOp::Eq,
                    Token::Sym("!=") => CmpOp::Ne,
                    other => return Err(format!("expected a comparison, found {other:?}")),
                };
                let right = self.expr(0)?;
                let then = self.block()?;
                let otherwise = if self.is_keyword("else") {
                    self.pos += 1;
                    self.block()?
                } else {
                    Vec::new()
                };
                Ok(Stmt::If {
                    left,
                    cmp,
                    right,
                    then,
                    otherwise,
                })
            }
            "repeat" => {
                let n = match self.next()? {
                    Token::Int(n) => {
                        u32::try_from(n).map_err(|_| format!("repeat count {n} too large"))?
                    }
                    other => return Err(format!("expected a repeat count, found {other:?}")),
                };
                Ok(Stmt::Repeat(n, self.block()?))
            }
            "print" => {
                self.expect("(")?;
                let e = self.expr(0)?;
                self.expect(")")?;
                self.expect(";")?;
                Ok(Stmt::Print(e))
            }
            _ => {
                self.expect("=")?;
                let e = self.expr(0)?;
                self.expect(";")?;
                Ok(Stmt::Assign(word, e))
            }
        }
    }

    /// Precedence climbing for left-associative `+ - *`.
    fn expr(&mut self, min_prec: u8) -> Result<Expr, String> {
        let mut left = self.atom()?;
        loop {
            let op = match self.peek() {
                Some(Token::Sym("+")) => BinOp::Add,
                Some(Token::Sym("-")) => BinOp::Sub,
                Some(Token::Sym("*")) => BinOp::Mul,
                _ => break,
            };
            if op.precedence() < min_prec {
                break;
            }
            self.pos += 1;
            let right = self.expr(op.precedence() + 1)?;
            left = Expr::Bin(Box::new(left), op, Box::new(right));
        }
        Ok(left)
    }

    fn atom(&mut self) -> Result<Expr, String> {
        match self.next()? {
            Token::Int(n) => Ok(Expr::Num(n)),
            Token::Ident(v) => Ok(Expr::Var(v)),
            Token::Sym("(") => {
                let e = self.expr(0)?;
                self.expect(")")?;
                Ok(e)
            }
            other => Err(format!("expected a value, found {other:?}")),
        }
    }
}

/// Parses a program's source text (the inverse of [`Program::render`]).
pub fn parse_program(src: &str) -> Result<Program, String> {
    let mut p = Parser {
        tokens: lex(src)?,
        pos: 0,
    };
    let mut body = Vec::new();
    while p.peek().is_some() {
        body.push(p.statement()?);
    }
    Ok(Program { body })
}

const VARIABLE_NAMES: [&str; 18] = [
    "a", "b", "c", "n", "x", "y", "z", "i", "k", "total", "count", "sum", "acc", "step", "val",
    "tmp", "res", "size",
];

/// Values stay within ±999 so that outputs are short and a small model can track them.
const VALUE_BOUND: i64 = 999;

struct ProgramBuilder<'a> {
    rng: &'a mut ChaCha8Rng,
    names: Vec<&'static str>,
    declared: Vec<String>,
    /// Whether statements are being built for a `repeat` body.
    in_loop: bool,
}

impl ProgramBuilder<'_> {
    fn atom(&mut self) -> Expr {
        if !self.declared.is_empty() && self.rng.random_bool(0.6) {
            Expr::Var(self.declared[self.rng.random_range(0..self.declared.len())].clone())
        } else {
            Expr::Num(self.rng.random_range(1..=9))
        }
    }

    fn op(&mut self) -> BinOp {
        // Products inside loops grow geometrically and would mostly be rejected by the bound.
        if self.in_loop {
            return if self.rng.random_bool(0.6) {
                BinOp::Add
            } else {
                BinOp::Sub
            };
        }
        match self.rng.random_range(0..10) {
            0..=3 => BinOp::Add,
            4..=6 => BinOp::Sub,
            _ => BinOp::Mul,
        }
    }

    fn expr(&mut self) -> Expr {
        match self.rng.random_range(0..10) {
            0..=3 => self.atom(),
            4..=8 => {
                let (a, op, b) = (self.atom(), self.op(), self.atom());
                Expr::Bin(Box::new(a), op, Box::new(b))
            }
            _ => {
                let (a, op1, b, op2, c) =
                    (self.atom(), self.op(), self.atom(), self.op(), self.atom());
                let inner = Expr::Bin(Box::new(a), op1, Box::new(b));
                Expr::Bin(Box::new(inner), op2, Box::new(c))
            }
        }
    }

    /// `v = v op atom` most of the time: updates that depend on the old value, as in real loops.
    fn update(&mut self) -> Stmt {
        let target = self.declared[self.rng.random_range(0..self.declared.len())].clone();
        let e = if self.rng.random_bool(0.7) {
            let (op, b) = (self.op(), self.atom());
            Expr::Bin(Box::new(Expr::Var(target.clone())), op, Box::new(b))
        } else {
            self.expr()
        };
        Stmt::Assign(target, e)
    }

    fn updates(&mut self) -> Vec<Stmt> {
        let n = self.rng.random_range(1..=2);
        (0..n).map(|_| self.update()).collect()
    }

    fn statement(&mut self) -> Stmt {
        let undeclared: Vec<&str> = self
            .names
            .iter()
            .copied()
            .filter(|n| !self.declared.iter().any(|d| d == n))
            .collect();
        let roll = self.rng.random_range(0..10);
        if (roll < 4 || self.declared.is_empty()) && !undeclared.is_empty() {
            let name = undeclared[self.rng.random_range(0..undeclared.len())].to_string();
            let e = if self.declared.is_empty() {
                Expr::Num(self.rng.random_range(0..=9))
            } else {
                self.expr()
            };
            self.declared.push(name.clone());
            return Stmt::Let(name, e);
        }
        match roll {
            0..=5 => self.update(),
            6 | 7 => {
                let left =
                    Expr::Var(self.declared[self.rng.random_range(0..self.declared.len())].clone());
                let cmp = [CmpOp::Lt, CmpOp::Gt, CmpOp::Eq, CmpOp::Ne][self.rng.random_range(0..4)];
                let right = Expr::Num(self.rng.random_range(0..=20));
                let then = self.updates();
                let otherwise = if self.rng.random_bool(0.5) {
                    self.updates()
                } else {
                    Vec::new()
                };
                Stmt::If {
                    left,
                    cmp,
                    right,
                    then,
                    otherwise,
                }
            }
            _ => {
                let n = self.rng.random_range(2..=4);
                self.in_loop = true;
                let body = self.updates();
                self.in_loop = false;
                Stmt::Repeat(n, body)
            }
        }
    }
}

/// A random program of `statements` statements before its final `print`, with `extra_prints`
/// more prints among them; every value stays within ±999.
pub(crate) fn program(rng: &mut ChaCha8Rng, statements: usize, extra_prints: usize) -> Program {
    loop {
        let mut names: Vec<&'static str> = VARIABLE_NAMES.to_vec();
        let n_vars = rng.random_range(2..=4);
        for i in 0..n_vars {
            let j = rng.random_range(i..names.len());
            names.swap(i, j);
        }
        names.truncate(n_vars);
        let mut b = ProgramBuilder {
            rng,
            names,
            declared: Vec::new(),
            in_loop: false,
        };
        let statements = statements.max(1);
        // Extra prints come after a random statement and only see variables declared by then.
        let print_after: Vec<usize> = (0..extra_prints)
            .map(|_| b.rng.random_range(0..statements))
            .collect();
        let mut body = Vec::with_capacity(statements + extra_prints + 1);
        for i in 0..statements {
            body.push(b.statement());
            for _ in print_after.iter().filter(|&&at| at == i) {
                let e = b.atom();
                body.push(Stmt::Print(e));
            }
        }
        let last = if b.rng.random_bool(0.8) {
            Expr::Var(b.declared[b.rng.random_range(0..b.declared.len())].clone())
        } else {
            b.expr()
        };
        body.push(Stmt::Print(last));
        let p = Program { body };
        if let Ok(exec) = p.run()
            && exec
                .values
                .iter()
                .chain(&exec.output)
                .all(|v| v.abs() <= VALUE_BOUND)
        {
            return p;
        }
    }
}

/// Documents of 3-7 programs, each followed by `// output: ...`.
pub(crate) struct CodeSource {
    pub rng: ChaCha8Rng,
}

impl DocumentSource for CodeSource {
    fn next_document(&mut self, out: &mut String) {
        let n = self.rng.random_range(3..=7);
        for i in 0..n {
            let statements = self.rng.random_range(2..=8);
            let extra = usize::from(self.rng.random_bool(0.3));
            let p = program(&mut self.rng, statements, extra);
            let exec = p.run().expect("generated programs run");
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&p.render());
            out.push_str("// output:");
            for v in exec.output {
                let _ = write!(out, " {v}");
            }
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn render_parse_round_trip_and_bounded_values() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..300 {
            let p = program(&mut rng, 6, 1);
            let src = p.render();
            assert_eq!(parse_program(&src).unwrap(), p, "{src}");
            let exec = p.run().unwrap();
            assert_eq!(exec.output.len(), 2);
            assert!(exec.values.iter().all(|v| v.abs() <= VALUE_BOUND));
        }
    }

    #[test]
    fn interpreter_follows_precedence_loops_and_branches() {
        let src = "let x = 2;\nlet y = x + 3 * 4;\nrepeat 3 {\n    x = x * 2;\n}\nif y > 10 {\n    y = y - (x - 1);\n} else {\n    y = 0;\n}\nprint(y);\n";
        let p = parse_program(src).unwrap();
        assert_eq!(p.render(), src);
        // y = 2 + 12 = 14; x = 16; y = 14 - 15 = -1.
        assert_eq!(p.run().unwrap().output, vec![-1]);
        assert!(parse_program("let x = ;").is_err());
        assert!(parse_program("print(q);").unwrap().run().is_err());
    }
}
