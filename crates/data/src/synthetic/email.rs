//! Corporate e-mail with headers (in the spirit of the Pile's Enron Emails).
//!
//! Learnable structure: the greeting names the `To:` person and the signature the `From:`
//! person; the weekday in `Date:` is the true weekday of the date; a reply swaps `From:` and
//! `To:`, prefixes `Re:` and quotes the original message with its headers, so much of a reply is
//! copied from earlier in the same document.

use std::fmt::Write;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::DocumentSource;
use super::words::{Lexicon, capitalize};

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DOCS: [&str; 8] = [
    "draft contract",
    "term sheet",
    "budget",
    "schedule",
    "invoice",
    "presentation",
    "report",
    "agenda",
];
const CLOSINGS: [&str; 4] = ["Thanks,", "Regards,", "Best,", "Thank you,"];

/// A calendar day between 1999-01-01 and 2002-12-31.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Day {
    year: i32,
    month: usize,
    day: u32,
    weekday: usize,
}

fn days_in_month(year: i32, month: usize) -> u32 {
    match month {
        1 => {
            if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) {
                29
            } else {
                28
            }
        }
        3 | 5 | 8 | 10 => 30,
        _ => 31,
    }
}

/// Day `index` counted from 1999-01-01 (a Friday).
fn day_from_index(index: u32) -> Day {
    let weekday = (4 + index as usize) % 7;
    let (mut year, mut month, mut rest) = (1999, 0, index);
    loop {
        let len = days_in_month(year, month);
        if rest < len {
            return Day {
                year,
                month,
                day: rest + 1,
                weekday,
            };
        }
        rest -= len;
        month += 1;
        if month == 12 {
            month = 0;
            year += 1;
        }
    }
}

/// `Fri, 1 Jan 1999 09:12:00 -0800`
fn date_header(d: Day, minutes: u32) -> String {
    format!(
        "{}, {} {} {} {:02}:{:02}:00 -0800",
        &WEEKDAYS[d.weekday][..3],
        d.day,
        MONTHS[d.month],
        d.year,
        minutes / 60,
        minutes % 60
    )
}

struct Correspondent {
    first: String,
    last: String,
    address: String,
}

struct Message {
    from: usize,
    to: usize,
    subject: String,
    date: String,
    body: String,
}

/// E-mails, a third of them replies quoting the original.
pub(crate) struct EmailSource<'a> {
    pub lexicon: &'a Lexicon,
    pub rng: ChaCha8Rng,
}

impl EmailSource<'_> {
    fn body(
        &mut self,
        people: &[Correspondent],
        from: usize,
        to: usize,
        project: &str,
        company: &str,
    ) -> String {
        let rng = &mut self.rng;
        let mut s = String::new();
        let _ = write!(s, "{},\n\n", people[to].first);
        let n = rng.random_range(2..=6);
        for k in 0..n {
            let doc = DOCS[rng.random_range(0..DOCS.len())];
            let day = WEEKDAYS[rng.random_range(0..5)];
            let hour = rng.random_range(8..=17);
            // Someone other than the sender and the recipient.
            let third = &people[rng.random_range(2..people.len())].first;
            let sentence = match rng.random_range(0..9) {
                0 => format!("Please find attached the {doc} for the {project} project."),
                1 => format!("Can we meet on {day} at {hour}:00 to discuss the {doc}?"),
                2 => format!(
                    "The {project} numbers came in at ${},{:03} for the quarter.",
                    rng.random_range(1..999),
                    rng.random_range(0..1000)
                ),
                3 => format!("I have forwarded the {doc} to {third} for review."),
                4 => "Let me know if you have any questions.".to_string(),
                5 => format!("We need to finalize the {doc} before {day}."),
                6 => format!(
                    "The call with {} is moved to {hour}:30 on {day}.",
                    capitalize(company)
                ),
                7 => format!("I spoke with {third} and the revised {doc} is fine."),
                _ => format!("{project} is on track, but the {doc} is still missing two sections."),
            };
            if k > 0 {
                s.push(' ');
            }
            s.push_str(&sentence);
        }
        let closing = CLOSINGS[rng.random_range(0..CLOSINGS.len())];
        let _ = write!(s, "\n\n{closing}\n{}", people[from].first);
        s
    }
}

fn write_headers(out: &mut String, id: u64, domain: &str, m: &Message, people: &[Correspondent]) {
    let _ = write!(
        out,
        "Message-ID: <{id}.JavaMail.mail@{domain}.com>\nDate: {}\nFrom: {}\nTo: {}\nSubject: {}\n\n",
        m.date, people[m.from].address, people[m.to].address, m.subject
    );
}

impl DocumentSource for EmailSource<'_> {
    fn next_document(&mut self, out: &mut String) {
        let lex = self.lexicon;
        let company = lex.companies[self.rng.random_range(0..lex.companies.len())].clone();
        let project = capitalize(&lex.software[self.rng.random_range(0..lex.software.len())]);
        let mut people = Vec::new();
        while people.len() < 4 {
            let first = lex.mail_first[self.rng.random_range(0..lex.mail_first.len())].clone();
            let last = lex.mail_last[self.rng.random_range(0..lex.mail_last.len())].clone();
            if people.iter().any(|p: &Correspondent| p.first == first) {
                continue;
            }
            let address = format!(
                "{}.{}@{company}.com",
                first.to_lowercase(),
                last.to_lowercase()
            );
            people.push(Correspondent {
                first,
                last,
                address,
            });
        }
        let doc = DOCS[self.rng.random_range(0..DOCS.len())];
        let day_index = self.rng.random_range(0..4 * 365);
        let day = day_from_index(day_index);
        let subject = match self.rng.random_range(0..4) {
            0 => format!(
                "{project} {doc} for {}",
                WEEKDAYS[self.rng.random_range(0..5)]
            ),
            1 => format!("{project} update"),
            2 => format!("Meeting on {}", WEEKDAYS[self.rng.random_range(0..5)]),
            _ => format!("Draft {doc}"),
        };
        let minutes = self.rng.random_range(7 * 60..19 * 60);
        let body = self.body(&people, 0, 1, &project, &company);
        let original = Message {
            from: 0,
            to: 1,
            subject,
            date: date_header(day, minutes),
            body,
        };
        let id = self.rng.random_range(1_000_000..10_000_000u64);
        if self.rng.random_bool(0.35) {
            let later = day_from_index(day_index + self.rng.random_range(0..3));
            let reply = Message {
                from: 1,
                to: 0,
                subject: format!("Re: {}", original.subject),
                date: date_header(later, self.rng.random_range(7 * 60..19 * 60)),
                body: self.body(&people, 1, 0, &project, &company),
            };
            write_headers(out, id + 1, &company, &reply, &people);
            out.push_str(&reply.body);
            let o = &people[original.from];
            let _ = write!(
                out,
                "\n\n -----Original Message-----\nFrom: {} {}\nSent: {}\nTo: {}\nSubject: {}\n\n{}\n",
                o.first,
                o.last,
                original.date,
                people[original.to].address,
                original.subject,
                original.body
            );
        } else {
            write_headers(out, id, &company, &original, &people);
            out.push_str(&original.body);
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_is_right() {
        // 1999-01-01 was a Friday, 2000-02-29 a Tuesday, 2002-12-31 a Tuesday.
        assert_eq!(
            day_from_index(0),
            Day {
                year: 1999,
                month: 0,
                day: 1,
                weekday: 4
            }
        );
        let leap = day_from_index(365 + 31 + 28);
        assert_eq!(
            (leap.year, leap.month, leap.day, WEEKDAYS[leap.weekday]),
            (2000, 1, 29, "Tuesday")
        );
        let last = day_from_index(4 * 365);
        assert_eq!(
            (last.year, last.month, last.day, WEEKDAYS[last.weekday]),
            (2002, 11, 31, "Tuesday")
        );
    }
}
