//! Contracts of long, repetitive clauses (in the spirit of the Pile's FreeLaw and contracts).
//!
//! Learnable structure: a fixed section order with increasing numbers (`3.1`, `3.2`, ...), two
//! party roles defined in the preamble and used consistently throughout, and boilerplate phrases
//! that recur in almost every clause. Long documents with low entropy per token: the loss drops
//! early and then mostly measures the few slots (days, amounts, names).

use std::fmt::Write;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::DocumentSource;
use super::words::{Lexicon, capitalize};

/// (agreement title, first role, second role)
const AGREEMENTS: [(&str, &str, &str); 6] = [
    ("MASTER SERVICES AGREEMENT", "Provider", "Client"),
    ("SOFTWARE LICENSE AGREEMENT", "Licensor", "Licensee"),
    ("LOAN AGREEMENT", "Lender", "Borrower"),
    ("LEASE AGREEMENT", "Landlord", "Tenant"),
    ("SUPPLY AGREEMENT", "Supplier", "Purchaser"),
    ("CONSULTING AGREEMENT", "Consultant", "Company"),
];

/// Clause templates per section; `{A}`/`{B}` are the roles, `{N}` a number of days, `{P}` a
/// percentage, `{L}` the governing law's country, `{M}` an amount.
const SECTIONS: [(&str, &[&str]); 9] = [
    (
        "DEFINITIONS",
        &[
            "\"Confidential Information\" means any and all information disclosed by either party to the other party, whether orally or in writing, that is designated as confidential or that reasonably should be understood to be confidential given the nature of the information and the circumstances of disclosure.",
            "\"Effective Date\" means the date first written above, and \"Term\" means the period set forth in Section 4 of this Agreement, including any renewal thereof.",
            "\"Affiliate\" means any entity that directly or indirectly controls, is controlled by, or is under common control with a party, where \"control\" means ownership of more than fifty percent of the voting interests of such entity.",
            "\"Business Day\" means any day other than a Saturday, a Sunday or a day on which banks in {L} are authorized or required by law to close.",
        ],
    ),
    (
        "OBLIGATIONS",
        &[
            "{A} shall perform its obligations under this Agreement in a diligent and workmanlike manner, in accordance with generally accepted industry standards and all applicable laws and regulations.",
            "{B} shall provide {A} with such information, access and cooperation as {A} may reasonably request in order to perform its obligations under this Agreement.",
            "{A} shall not, without the prior written consent of {B}, assign, delegate or subcontract any of its obligations under this Agreement, and any purported assignment in violation of this Section shall be null and void.",
            "Each party shall comply with all applicable laws, rules and regulations in connection with the performance of its obligations under this Agreement.",
        ],
    ),
    (
        "PAYMENT",
        &[
            "{B} shall pay {A} the sum of {M} within {N} days after receipt of a correct and undisputed invoice.",
            "Any amount not paid when due shall bear interest at the rate of {P} percent per month, or the maximum rate permitted by applicable law, whichever is less.",
            "All amounts payable under this Agreement are exclusive of taxes, and {B} shall be responsible for all sales, use and excise taxes arising from this Agreement, other than taxes based on the net income of {A}.",
            "{B} may dispute any invoice in good faith by written notice to {A} within {N} days after receipt of such invoice, and the parties shall cooperate in good faith to resolve such dispute.",
        ],
    ),
    (
        "TERM AND TERMINATION",
        &[
            "This Agreement shall commence on the Effective Date and shall continue for a period of {N} months, unless terminated earlier in accordance with this Section.",
            "Either party may terminate this Agreement upon {N} days prior written notice if the other party materially breaches this Agreement and fails to cure such breach within such notice period.",
            "Upon termination of this Agreement for any reason, {B} shall pay {A} all amounts accrued and unpaid as of the date of termination.",
            "The provisions of this Agreement which by their nature are intended to survive termination shall survive any termination or expiration of this Agreement.",
        ],
    ),
    (
        "CONFIDENTIALITY",
        &[
            "Each party shall hold the Confidential Information of the other party in strict confidence and shall not disclose such Confidential Information to any third party without the prior written consent of the other party.",
            "The obligations of this Section shall not apply to information that is or becomes generally available to the public other than as a result of a disclosure by the receiving party in breach of this Agreement.",
            "Upon the written request of the disclosing party, the receiving party shall promptly return or destroy all Confidential Information of the disclosing party in its possession or control.",
        ],
    ),
    (
        "INDEMNIFICATION",
        &[
            "{A} shall indemnify, defend and hold harmless {B} and its Affiliates from and against any and all claims, losses, damages, liabilities, costs and expenses, including reasonable attorneys' fees, arising out of or relating to any breach of this Agreement by {A}.",
            "{B} shall indemnify, defend and hold harmless {A} and its Affiliates from and against any and all claims, losses, damages, liabilities, costs and expenses, including reasonable attorneys' fees, arising out of or relating to any breach of this Agreement by {B}.",
            "The indemnified party shall give the indemnifying party prompt written notice of any claim for which indemnification is sought, provided that failure to give such notice shall not relieve the indemnifying party of its obligations except to the extent it is materially prejudiced thereby.",
        ],
    ),
    (
        "LIMITATION OF LIABILITY",
        &[
            "In no event shall either party be liable to the other party for any indirect, incidental, special, consequential or punitive damages, including but not limited to loss of profits, arising out of or relating to this Agreement.",
            "The total liability of {A} under this Agreement shall not exceed the amounts paid by {B} to {A} during the {N} months preceding the event giving rise to the claim.",
        ],
    ),
    (
        "GOVERNING LAW",
        &[
            "This Agreement shall be governed by and construed in accordance with the laws of {L}, without regard to its conflict of laws principles.",
            "Any dispute arising out of or relating to this Agreement shall be submitted to the exclusive jurisdiction of the courts of {L}, and each party hereby consents to the personal jurisdiction of such courts.",
        ],
    ),
    (
        "MISCELLANEOUS",
        &[
            "This Agreement constitutes the entire agreement between the parties with respect to its subject matter and supersedes all prior and contemporaneous agreements, proposals and representations, whether written or oral.",
            "No amendment or waiver of any provision of this Agreement shall be effective unless in writing and signed by both parties.",
            "If any provision of this Agreement is held to be invalid or unenforceable, the remaining provisions shall continue in full force and effect.",
            "All notices under this Agreement shall be in writing and shall be deemed given when delivered personally, or {N} days after being sent by registered mail to the address of the receiving party set forth above.",
            "Notwithstanding anything to the contrary herein, neither party shall be liable for any failure or delay in performance caused by events beyond its reasonable control.",
        ],
    ),
];

/// `SUPPLY AGREEMENT` → `Supply Agreement`.
fn title_case(upper: &str) -> String {
    upper
        .split(' ')
        .map(|w| capitalize(&w.to_lowercase()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Contracts of 3-8 KB.
pub(crate) struct LegalSource<'a> {
    pub lexicon: &'a Lexicon,
    pub rng: ChaCha8Rng,
}

impl DocumentSource for LegalSource<'_> {
    fn next_document(&mut self, out: &mut String) {
        let lex = self.lexicon;
        let rng = &mut self.rng;
        let (title, role_a, role_b) = AGREEMENTS[rng.random_range(0..AGREEMENTS.len())];
        let party = |rng: &mut ChaCha8Rng| {
            capitalize(&lex.companies[rng.random_range(0..lex.companies.len())])
        };
        let (party_a, mut party_b) = (party(rng), party(rng));
        while party_b == party_a {
            party_b = party(rng);
        }
        let law = lex.countries[rng.random_range(0..lex.countries.len())].clone();
        let year = rng.random_range(1985..=2015);
        let _ = write!(
            out,
            "{title}\n\nThis {} (the \"Agreement\") is entered into as of {} {}, {year} (the \"Effective Date\") by and between {party_a} Inc., a corporation organized under the laws of {law} (\"{role_a}\"), and {party_b} Ltd. (\"{role_b}\"). {role_a} and {role_b} are each referred to herein as a \"party\" and together as the \"parties\".\n\nNOW, THEREFORE, in consideration of the mutual covenants contained herein, the parties agree as follows:\n",
            title_case(title),
            ["January", "March", "May", "July", "September", "November"][rng.random_range(0..6)],
            rng.random_range(1..=28),
        );
        let mut number = 0;
        for (heading, clauses) in SECTIONS {
            // Definitions, obligations and the law are in every contract; the rest vary.
            if !matches!(heading, "DEFINITIONS" | "OBLIGATIONS" | "GOVERNING LAW")
                && rng.random_bool(0.25)
            {
                continue;
            }
            number += 1;
            let _ = write!(out, "\n{number}. {heading}\n");
            let k = rng.random_range(2..=clauses.len().max(2));
            let mut chosen: Vec<usize> = (0..clauses.len()).collect();
            for i in (1..chosen.len()).rev() {
                chosen.swap(i, rng.random_range(0..=i));
            }
            chosen.truncate(k);
            chosen.sort_unstable();
            for (sub, &c) in chosen.iter().enumerate() {
                let days = [10, 15, 30, 45, 60, 90][rng.random_range(0..6)];
                let amount = format!(
                    "${},{:03}.00",
                    rng.random_range(1..500),
                    rng.random_range(0..1000)
                );
                let percent = ["one", "one and one half", "two"][rng.random_range(0..3)];
                let clause = clauses[c]
                    .replace("{A}", role_a)
                    .replace("{B}", role_b)
                    .replace("{N}", &days.to_string())
                    .replace("{P}", percent)
                    .replace("{L}", &law)
                    .replace("{M}", &amount);
                let _ = writeln!(out, "{number}.{} {clause}", sub + 1);
            }
        }
        let _ = write!(
            out,
            "\nIN WITNESS WHEREOF, the parties hereto have executed this Agreement as of the Effective Date.\n\n{party_a} Inc.\nBy: ____________________\nTitle: President\n\n{party_b} Ltd.\nBy: ____________________\nTitle: Director\n"
        );
    }
}
