//! IRC-style support-channel logs with turn structure (in the spirit of the Pile's Ubuntu IRC).
//!
//! Learnable structure: timestamps never decrease; an answer addresses the asker by nickname
//! (`kelro: try ...`) and the thanks address the helper, so a model must copy names from the
//! context; joins and quits name channel members; questions and answers are about the channel's
//! software and its real subcommands and options.

use std::fmt::Write;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::DocumentSource;
use super::words::Lexicon;

const VERBS: [&str; 12] = [
    "install",
    "remove",
    "restart",
    "configure",
    "update",
    "upgrade",
    "compile",
    "mount",
    "enable",
    "disable",
    "downgrade",
    "reset",
];
const THINGS: [&str; 12] = [
    "the driver",
    "the config",
    "the kernel module",
    "the daemon",
    "my keyring",
    "the cache",
    "the plugin",
    "the service",
    "the firewall",
    "the repo list",
    "the locale",
    "the swap file",
];
const ERRORS: [&str; 8] = [
    "permission denied",
    "no such file or directory",
    "segmentation fault",
    "connection refused",
    "command not found",
    "unable to lock the administration directory",
    "dependency problems, leaving unconfigured",
    "device or resource busy",
];
const FLAGS: [&str; 10] = [
    "force",
    "verbose",
    "purge",
    "dry-run",
    "no-cache",
    "recursive",
    "user",
    "global",
    "reinstall",
    "quiet",
];
const SUBCOMMANDS: [&str; 8] = [
    "start", "stop", "status", "sync", "clean", "check", "list", "reload",
];
const CHATTER: [&str; 10] = [
    "morning all",
    "brb",
    "lol",
    "anyone around?",
    "back",
    "that is a known bug i think",
    "same here",
    "thanks everyone",
    "np",
    "ok",
];
const QUIT_REASONS: [&str; 4] = [
    "Ping timeout",
    "Quit: leaving",
    "Remote host closed the connection",
    "Read error",
];

struct Log<'a> {
    rng: &'a mut ChaCha8Rng,
    minutes: u32,
}

impl Log<'_> {
    /// Writes a line stamped with the clock, which moves forward 0-3 minutes each line.
    fn stamp(&mut self, out: &mut String) {
        self.minutes += self.rng.random_range(0..=3);
        let _ = write!(out, "[{:02}:{:02}] ", self.minutes / 60, self.minutes % 60);
    }
}

/// Channel logs of 20-60 lines.
pub(crate) struct ChatSource<'a> {
    pub lexicon: &'a Lexicon,
    pub rng: ChaCha8Rng,
}

impl ChatSource<'_> {
    fn nick(&mut self) -> String {
        let stem = &self.lexicon.nicks[self.rng.random_range(0..self.lexicon.nicks.len())];
        match self.rng.random_range(0..4) {
            0 => format!("{stem}_"),
            1 => format!("{stem}{}", self.rng.random_range(1..100)),
            _ => stem.clone(),
        }
    }
}

impl DocumentSource for ChatSource<'_> {
    fn next_document(&mut self, out: &mut String) {
        let lex = self.lexicon;
        let tool = lex.software[self.rng.random_range(0..lex.software.len())].clone();
        let other_tool = lex.software[self.rng.random_range(0..lex.software.len())].clone();
        let mut members: Vec<String> = Vec::new();
        let n_members = self.rng.random_range(3..=6);
        while members.len() < n_members {
            let n = self.nick();
            if !members.contains(&n) {
                members.push(n);
            }
        }
        let lines = self.rng.random_range(20..=60);
        // At most 60 lines of at most 3 minutes each: a log that starts before 20:00 ends before midnight.
        let start = self.rng.random_range(0..20 * 60);
        let mut log = Log {
            rng: &mut self.rng,
            minutes: start,
        };
        let _ = writeln!(out, "#{tool} log");
        let mut written = 0;
        while written < lines {
            let rng = &mut *log.rng;
            let asker = rng.random_range(0..members.len());
            let mut helper = rng.random_range(0..members.len() - 1);
            if helper >= asker {
                helper += 1;
            }
            let (a, h) = (members[asker].clone(), members[helper].clone());
            match rng.random_range(0..10) {
                0 => {
                    let newcomer = format!(
                        "{}{}",
                        lex.nicks[rng.random_range(0..lex.nicks.len())],
                        rng.random_range(100..1000)
                    );
                    log.stamp(out);
                    let _ = writeln!(out, "* {newcomer} has joined #{tool}");
                    members.push(newcomer);
                    written += 1;
                }
                1 if members.len() > 3 => {
                    let r = QUIT_REASONS[rng.random_range(0..QUIT_REASONS.len())];
                    let gone = members.remove(asker);
                    log.stamp(out);
                    let _ = writeln!(out, "* {gone} has quit ({r})");
                    written += 1;
                }
                2 => {
                    let c = CHATTER[rng.random_range(0..CHATTER.len())];
                    log.stamp(out);
                    let _ = writeln!(out, "<{a}> {c}");
                    written += 1;
                }
                _ => {
                    // A question, an answer addressed to the asker, and the asker's reply.
                    let verb = VERBS[rng.random_range(0..VERBS.len())];
                    let thing = THINGS[rng.random_range(0..THINGS.len())];
                    let err = ERRORS[rng.random_range(0..ERRORS.len())];
                    let flag = FLAGS[rng.random_range(0..FLAGS.len())];
                    let sub = SUBCOMMANDS[rng.random_range(0..SUBCOMMANDS.len())];
                    let version =
                        format!("{}.{}", rng.random_range(1..10), rng.random_range(0..20));
                    let question = match rng.random_range(0..5) {
                        0 => format!("how do i {verb} {tool} without breaking {thing}?"),
                        1 => format!("anyone know why {tool} {sub} says \"{err}\"?"),
                        2 => format!("is there a way to {verb} {thing} for {tool} {version}?"),
                        3 => format!("{tool} keeps failing after i {verb} {thing}, any ideas?"),
                        _ => format!("does {tool} {version} work with {other_tool}?"),
                    };
                    let answer = match rng.random_range(0..5) {
                        0 => format!("{a}: try {tool} {sub} --{flag}"),
                        1 => format!("{a}: you need to {verb} {thing} first"),
                        2 => format!("{a}: check /etc/{tool}/{tool}.conf, the {flag} option"),
                        3 => format!(
                            "{a}: {tool} {version} has a bug there, upgrade and run {tool} {sub}"
                        ),
                        _ => format!("{a}: pastebin the output of {tool} {sub} --verbose"),
                    };
                    let reply = match rng.random_range(0..4) {
                        0 => format!("{h}: that worked, thanks"),
                        1 => format!("{h}: still getting \"{err}\""),
                        2 => format!("{h}: ok, trying that now"),
                        _ => format!("{h}: thanks!"),
                    };
                    for line in [
                        format!("<{a}> {question}"),
                        format!("<{h}> {answer}"),
                        format!("<{a}> {reply}"),
                    ] {
                        log.stamp(out);
                        out.push_str(&line);
                        out.push('\n');
                    }
                    written += 3;
                }
            }
        }
    }
}
