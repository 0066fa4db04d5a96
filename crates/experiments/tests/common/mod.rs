//! What several integration tests share: a small run on the built-in synthetic corpus.

use std::path::Path;

/// The shape of a small run of the `tiny` model on the synthetic corpus.
pub struct SmokeRun<'a> {
    /// Run name.
    pub name: &'a str,
    /// The `[mixer]` table's body.
    pub mixer: &'a str,
    /// Sequences per step.
    pub batch_size: usize,
    /// Micro-batches per step.
    pub micro_batches: usize,
    /// Steps.
    pub steps: u64,
    /// The run seed.
    pub seed: u64,
}

/// The run's config: the corpus generated and prepared under `data` on first use (kept between
/// test runs), the smoke configuration's schedule, validation off, one checkpoint at the end.
pub fn smoke_config(data: &Path, out: &Path, run: &SmokeRun) -> String {
    format!(
        r#"name = "{name}"
out_dir = "{out}"

[data]
dataset = "{data}/prepared-v4096-s128"

[data.prepare]
corpus = "{data}/corpus"
tokenizer = "train:4096"
seq_len = 128

[data.prepare.synthetic]
seed = 0
scale = 0.25

[model]
preset = "tiny"

[mixer]
{mixer}

[training]
batch_size = {batch_size}
micro_batches = {micro_batches}
steps = {steps}
seed = {seed}

[schedule]
peak_lr = 2e-3
warmup_fraction = 0.05
min_lr_ratio = 0.1

[eval]
interval = 0
max_sequences_per_domain = 16
batch_size = 16

[checkpoint]
interval = 0
keep = 1
"#,
        name = run.name,
        data = data.display(),
        out = out.display(),
        mixer = run.mixer,
        batch_size = run.batch_size,
        micro_batches = run.micro_batches,
        steps = run.steps,
        seed = run.seed,
    )
}
