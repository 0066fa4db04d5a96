//! `mixlab-eval`: what the ODM paper measures, per-domain perplexity and 5-shot MMLU.
//!
//! - [`perplexity`]: token-weighted NLL and perplexity per domain over the first N sequences of a
//!   prepared split, the unweighted mean over domains (the paper's headline) and the
//!   token-weighted mean.
//! - Multiple choice, independent of any model: [`dataset`] reads the hendrycks/test CSV layout,
//!   [`prompt`] builds the prompts of the three protocols byte for byte, [`multiple_choice`] crops,
//!   scores through any [`LogLikelihoodScorer`] and reports per subject, per [`categories`]
//!   group and overall.
//! - [`ModelScorer`]: the scorer backed by a mixlab [`mixlab_model::GptNeoX`] and a tokenizer.
//! - [`pyrandom`]: CPython's `random.Random`, so the `paper` protocol draws the same few-shot
//!   examples as lm-evaluation-harness 0.3.0.
//!
//! `harness` and `paper` both exist because the paper's MMLU numbers came from
//! lm-evaluation-harness 0.3.0, whose prompt and scoring differ from today's standard (see
//! `prompt`); `continuation` (the cloze form, no options in the prompt) is how small models are
//! measured, since they answer lettered exam questions at chance long after they know the answers.

pub mod bench;
pub mod categories;
pub mod dataset;
pub mod error;
pub mod model_scorer;
pub mod multiple_choice;
pub mod perplexity;
pub mod prompt;
pub mod pyrandom;
pub mod scorer;

pub use bench::{McBenchReport, bench_multiple_choice};
pub use categories::{Category, MMLU_SUBJECTS, category_of};
pub use dataset::{McDataset, McQuestion, McSplit, SubjectData, read_questions};
pub use error::{EvalError, Result};
pub use model_scorer::{ModelScorer, ScorerStats, load_tokenizer};
pub use multiple_choice::{
    Accuracy, CategoryResult, FewshotSource, McConfig, McReport, PromptDump, SubjectResult,
    evaluate_multiple_choice,
};
pub use perplexity::{
    DomainPerplexity, PAPER_SEQUENCES_PER_DOMAIN, PerplexityConfig, PerplexityReport,
    evaluate_perplexity, sequence_nll_sums,
};
pub use prompt::{Protocol, build_context};
pub use scorer::{LogLikelihood, LogLikelihoodRequest, LogLikelihoodScorer};
