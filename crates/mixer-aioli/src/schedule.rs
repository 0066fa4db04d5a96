//! Where a step falls in Aioli's rounds, in mixlab's step numbers (step t is the t-th
//! optimizer step; the model "after step 0" is the untrained one).
//!
//! The reference's loop (`AioliTrainer.train`) with its `counter` of steps done: the prior's
//! `prior_steps` steps; then per round, a validation at `counter` (ℓ⁰), the probes (each
//! `lp_steps` steps, then a validation), and the learned mixture until `counter` is the next
//! multiple of `update_steps`. Each probe and exploit step is a real step of the run.

/// The part of the run a training step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the first round: the prior.
    Prior,
    /// Probe `probe` (0-based, in the round's order) of round `round`.
    Probe {
        /// The round (0-based).
        round: u64,
        /// The probe's position in the round.
        probe: u64,
    },
    /// The learned mixture of round `round`.
    Exploit {
        /// The round (0-based).
        round: u64,
    },
}

/// A validation Aioli asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// Round `round` starts: ℓ⁰.
    RoundStart {
        /// The round (0-based).
        round: u64,
    },
    /// Probe `probe` of round `round` has trained its steps.
    AfterProbe {
        /// The round (0-based).
        round: u64,
        /// The probe's position in the round.
        probe: u64,
    },
}

/// The round structure: lengths in steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Steps on the prior before round 0.
    pub prior_steps: u64,
    /// Steps per round.
    pub update_steps: u64,
    /// Steps per probe.
    pub lp_steps: u64,
    /// Probes per round (lp_rounds · K).
    pub probes: u64,
}

impl Schedule {
    /// Probe steps per round.
    pub fn probe_steps(&self) -> u64 {
        self.probes * self.lp_steps
    }

    /// The phase of training step `step` (1-based).
    pub fn phase(&self, step: u64) -> Phase {
        let done = step.saturating_sub(1);
        if done < self.prior_steps {
            return Phase::Prior;
        }
        let e = done - self.prior_steps;
        let (round, offset) = (e / self.update_steps, e % self.update_steps);
        if offset < self.probe_steps() {
            Phase::Probe {
                round,
                probe: offset / self.lp_steps,
            }
        } else {
            Phase::Exploit { round }
        }
    }

    /// The validation Aioli asks for after step `step` (0: before the first), if any.
    pub fn checkpoint_after(&self, step: u64) -> Option<Checkpoint> {
        let e = step.checked_sub(self.prior_steps)?;
        let (round, offset) = (e / self.update_steps, e % self.update_steps);
        if offset == 0 {
            Some(Checkpoint::RoundStart { round })
        } else if offset <= self.probe_steps() && offset.is_multiple_of(self.lp_steps) {
            Some(Checkpoint::AfterProbe {
                round,
                probe: offset / self.lp_steps - 1,
            })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_follow_the_reference_loop() {
        // 3 prior steps; rounds of 10 steps: 2 probes of 3 steps, then 4 exploit steps.
        let s = Schedule {
            prior_steps: 3,
            update_steps: 10,
            lp_steps: 3,
            probes: 2,
        };
        let phases: Vec<Phase> = (1..=14).map(|t| s.phase(t)).collect();
        let probe = |probe| Phase::Probe { round: 0, probe };
        assert_eq!(
            phases,
            [
                Phase::Prior,
                Phase::Prior,
                Phase::Prior,
                probe(0),
                probe(0),
                probe(0),
                probe(1),
                probe(1),
                probe(1),
                Phase::Exploit { round: 0 },
                Phase::Exploit { round: 0 },
                Phase::Exploit { round: 0 },
                Phase::Exploit { round: 0 },
                Phase::Probe { round: 1, probe: 0 },
            ]
        );
        let asked: Vec<(u64, Checkpoint)> = (0..=16)
            .filter_map(|t| s.checkpoint_after(t).map(|c| (t, c)))
            .collect();
        assert_eq!(
            asked,
            [
                (3, Checkpoint::RoundStart { round: 0 }),
                (6, Checkpoint::AfterProbe { round: 0, probe: 0 }),
                (9, Checkpoint::AfterProbe { round: 0, probe: 1 }),
                (13, Checkpoint::RoundStart { round: 1 }),
                (16, Checkpoint::AfterProbe { round: 1, probe: 0 }),
            ]
        );
        let no_prior = Schedule {
            prior_steps: 0,
            ..s
        };
        assert_eq!(
            no_prior.checkpoint_after(0),
            Some(Checkpoint::RoundStart { round: 0 })
        );
        assert_eq!(no_prior.phase(1), Phase::Probe { round: 0, probe: 0 });
    }
}
