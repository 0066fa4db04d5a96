//! The run's history that ADO fits its laws to: per step and domain, the sequences drawn and
//! the training loss (the code's `task_cnt_TxK` and `task_loss_TxK`).

use serde::{Deserialize, Serialize};

use mixlab_mixing::exact_float;

/// Rows of per-domain sequence counts and losses, one row per observed step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    domains: usize,
    /// Row-major rows × domains: sequences of each domain in the step.
    sequences: Vec<u64>,
    /// Row-major rows × domains: the domain's mean loss term in the step, or the value carried
    /// over when it was not drawn.
    #[serde(with = "exact_float::vec")]
    losses: Vec<f64>,
}

impl History {
    /// An empty history over `domains` domains.
    pub fn new(domains: usize) -> Self {
        Self {
            domains,
            sequences: Vec::new(),
            losses: Vec::new(),
        }
    }

    /// Number of domains.
    pub fn domains(&self) -> usize {
        self.domains
    }

    /// Number of rows (steps observed).
    pub fn rows(&self) -> usize {
        self.losses.len() / self.domains.max(1)
    }

    /// Appends one step's row.
    pub fn push(&mut self, sequences: &[u64], losses: &[f64]) {
        debug_assert_eq!(sequences.len(), self.domains);
        debug_assert_eq!(losses.len(), self.domains);
        self.sequences.extend_from_slice(sequences);
        self.losses.extend_from_slice(losses);
    }

    /// The last row's losses, if any.
    pub fn last_losses(&self) -> Option<&[f64]> {
        let n = self.losses.len();
        (n >= self.domains && self.domains > 0).then(|| &self.losses[n - self.domains..])
    }

    /// Domain `k`'s losses, one per row.
    pub fn loss_column(&self, k: usize) -> Vec<f64> {
        self.losses
            .iter()
            .skip(k)
            .step_by(self.domains)
            .copied()
            .collect()
    }

    /// Domain `k`'s sequences up to and including each row.
    pub fn cumulative_column(&self, k: usize) -> Vec<u64> {
        self.sequences
            .iter()
            .skip(k)
            .step_by(self.domains)
            .scan(0u64, |sum, &c| {
                *sum += c;
                Some(*sum)
            })
            .collect()
    }

    /// All sequences up to and including each row.
    pub fn cumulative_totals(&self) -> Vec<u64> {
        self.sequences
            .chunks(self.domains)
            .scan(0u64, |sum, row| {
                *sum += row.iter().sum::<u64>();
                Some(*sum)
            })
            .collect()
    }

    /// Sequences of each domain over the whole history.
    pub fn totals_by_domain(&self, out: &mut [u64]) {
        out.fill(0);
        for row in self.sequences.chunks(self.domains) {
            for (o, c) in out.iter_mut().zip(row) {
                *o += c;
            }
        }
    }

    /// Checks a history read from a checkpoint: the shapes agree and every loss is finite and
    /// non-negative.
    pub fn check(&self, domains: usize) -> Result<(), String> {
        if self.domains != domains {
            return Err(format!(
                "history has {} domains, the dataset {domains}",
                self.domains
            ));
        }
        if self.sequences.len() != self.losses.len()
            || !self.losses.len().is_multiple_of(domains.max(1))
        {
            return Err(format!(
                "history has {} counts and {} losses for {domains} domains",
                self.sequences.len(),
                self.losses.len()
            ));
        }
        if let Some(bad) = self.losses.iter().find(|l| !(l.is_finite() && **l >= 0.0)) {
            return Err(format!("history holds the loss {bad}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_and_sums() {
        let mut h = History::new(2);
        assert_eq!(h.rows(), 0);
        assert_eq!(h.last_losses(), None);
        h.push(&[3, 1], &[2.0, 3.0]);
        h.push(&[0, 4], &[2.0, 2.5]);
        assert_eq!(h.rows(), 2);
        assert_eq!(h.loss_column(1), [3.0, 2.5]);
        assert_eq!(h.cumulative_column(0), [3, 3]);
        assert_eq!(h.cumulative_totals(), [4, 8]);
        let mut t = [0; 2];
        h.totals_by_domain(&mut t);
        assert_eq!(t, [3, 5]);
        assert_eq!(h.last_losses(), Some(&[2.0, 2.5][..]));
        h.check(2).expect("consistent");
        assert!(h.check(3).is_err());
    }
}
