//! `mixlab`: mixlab's mixers in Python, for trainers written with PyTorch.
//!
//! One class, `mixlab.Mixer`, wraps any mixer of the built-in registry (`mixlab-mixers`): it is
//! built from the same `[mixer]` table a mixlab run config holds (TOML text or a dict), and it
//! answers and learns exactly as it does inside mixlab's trainer (the package's tests replay
//! committed mixlab runs step by step and compare every weight). The logic stays in the Rust
//! crates; this layer converts types and turns every `MixingError` into `mixlab.MixerError`
//! (a `ValueError`) with the same message, which names the field, domain or step.

use std::sync::{Mutex, MutexGuard};

mod data;

use mixlab_mixing::{DomainSet, Mixer as RustMixer, MixerContext, MixingError, StepFeedback};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

create_exception!(
    mixlab,
    MixerError,
    PyValueError,
    "A mixer refused its config, feedback or state; the message names the field, domain or step."
);

fn mixing_error(error: MixingError) -> PyErr {
    MixerError::new_err(error.to_string())
}

/// A Python value as JSON, through Python's own `json` module (exact for floats: both sides
/// write and read the shortest round-trip form).
fn to_json(py: Python<'_>, value: &Bound<'_, PyAny>, what: &str) -> PyResult<serde_json::Value> {
    let text: String = py
        .import("json")?
        .call_method1("dumps", (value,))?
        .extract()?;
    serde_json::from_str(&text)
        .map_err(|e| MixerError::new_err(format!("{what}: not representable as JSON ({e})")))
}

fn from_json<'py>(py: Python<'py>, value: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?
        .call_method1("loads", (value.to_string(),))
}

/// The `[mixer]` table from TOML text (the table's body, or a whole run config with a
/// `[mixer]` table) or from a dict.
fn mixer_table(py: Python<'_>, config: &Bound<'_, PyAny>) -> PyResult<toml::Table> {
    if config.cast::<PyString>().is_ok() {
        let text: String = config.extract()?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| MixerError::new_err(format!("config: not TOML ({e})")))?;
        return Ok(match table.get("mixer") {
            Some(toml::Value::Table(mixer)) => mixer.clone(),
            _ => table,
        });
    }
    if config.cast::<PyDict>().is_ok() {
        let json = to_json(py, config, "config")?;
        return serde_json::from_value(json)
            .map_err(|e| MixerError::new_err(format!("config: not a TOML table ({e})")));
    }
    Err(MixerError::new_err(
        "config: expected TOML text or a dict (the `[mixer]` table of a run config)",
    ))
}

/// Per-domain values of one argument, checked to have one entry per domain.
fn per_domain<T>(values: Vec<T>, domains: usize, argument: &str) -> PyResult<Vec<T>> {
    if values.len() != domains {
        return Err(MixerError::new_err(format!(
            "{argument}: {} values for {domains} domains",
            values.len()
        )));
    }
    Ok(values)
}

/// Per-domain counts as given (Python ints may be negative), refused naming the field and the
/// domain when one is.
fn counts(values: Vec<i64>, domains: &[String], argument: &str) -> PyResult<Vec<u64>> {
    let values = per_domain(values, domains.len(), argument)?;
    values
        .iter()
        .zip(domains)
        .map(|(&v, domain)| {
            u64::try_from(v).map_err(|_| {
                MixerError::new_err(format!(
                    "{argument}: {v} for `{domain}` is negative (counts are at least 0)"
                ))
            })
        })
        .collect()
}

/// A data mixer: the sampling distribution over the domains, updated from per-domain feedback.
///
/// `config` is the `[mixer]` table of a mixlab run config (TOML text, or a dict; `kind` names
/// the mixer, `mixlab.kinds()` lists them); `domains` the domain names in the order of every
/// weight vector; `token_counts` the tokens per domain (for temperature-scaled weights);
/// `vocab_size` the tokenizer's (DoReMi's initial excess loss ln V).
#[pyclass(name = "Mixer", module = "mixlab")]
struct PyMixer {
    inner: Mutex<Box<dyn RustMixer>>,
}

impl PyMixer {
    fn mixer(&self) -> MutexGuard<'_, Box<dyn RustMixer>> {
        // A panic inside a mixer leaves no half-updated state worth refusing: its methods
        // validate before they change anything.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[pymethods]
impl PyMixer {
    #[new]
    #[pyo3(signature = (config, domains, token_counts=None, vocab_size=None))]
    fn new(
        py: Python<'_>,
        config: &Bound<'_, PyAny>,
        domains: Vec<String>,
        token_counts: Option<Vec<u64>>,
        vocab_size: Option<usize>,
    ) -> PyResult<Self> {
        let table = mixer_table(py, config)?;
        let mut context = MixerContext::new(DomainSet::new(domains).map_err(mixing_error)?);
        if let Some(counts) = token_counts {
            context = context.with_token_counts(counts).map_err(mixing_error)?;
        }
        if let Some(vocab) = vocab_size {
            context = context.with_vocab_size(vocab);
        }
        let mixer = mixlab_mixers::registry()
            .build(&table, &context)
            .map_err(mixing_error)?;
        Ok(Self {
            inner: Mutex::new(mixer),
        })
    }

    /// The mixer's kind (`kind` of its config).
    #[getter]
    fn kind(&self) -> &'static str {
        self.mixer().kind()
    }

    /// The domain names, in weight order.
    #[getter]
    fn domains(&self) -> Vec<String> {
        self.mixer().domains().names().to_vec()
    }

    /// The sampling distribution for the next step (sums to 1).
    fn weights(&self) -> Vec<f64> {
        self.mixer().weights().to_vec()
    }

    /// The distribution the mixer would recommend as its result (Aioli's learned mixture;
    /// `weights()` for the others).
    fn policy(&self) -> Vec<f64> {
        self.mixer().policy().to_vec()
    }

    /// Per-domain loss weights for the next step (DoReMi's proxy), or None.
    fn loss_weights(&self) -> Option<Vec<f64>> {
        self.mixer().loss_weights().map(<[f64]>::to_vec)
    }

    /// Whether the mixer learns from validation losses (Aioli).
    fn needs_validation(&self) -> bool {
        self.mixer().needs_validation()
    }

    /// Whether the mixer wants validation losses after `step` (0: before the first step).
    fn wants_validation(&self, step: u64) -> bool {
        let mixer = self.mixer();
        mixer.needs_validation() && mixer.wants_validation(step)
    }

    /// Whether the mixer needs a reference model's losses (`excess_loss_sum`; DoReMi).
    fn needs_reference_model(&self) -> bool {
        self.mixer().needs_reference_model()
    }

    /// Feeds one optimizer step's per-domain feedback (1-based `step`, increasing), each
    /// argument one value per domain, exactly mixlab's `StepFeedback`:
    ///
    /// - `loss_sum`: the sum of the domain's loss terms, each a mean token cross-entropy (one
    ///   term per micro-batch of the domain with homogeneous micro-batches, the paper's L_i;
    ///   with per-token losses from mixed batches, one term: the domain's mean token loss);
    /// - `loss_count`: the number of those terms (0: the domain was not drawn);
    /// - `sequences`, `tokens`: the domain's sequences and loss-bearing tokens in the step;
    /// - `excess_loss_sum`, `excess_tokens`: DoReMi's clipped excess over a reference model.
    #[pyo3(signature = (step, loss_sum, loss_count, sequences, tokens, excess_loss_sum=None, excess_tokens=None))]
    #[allow(clippy::too_many_arguments)]
    fn observe(
        &self,
        step: u64,
        loss_sum: Vec<f64>,
        loss_count: Vec<i64>,
        sequences: Vec<i64>,
        tokens: Vec<i64>,
        excess_loss_sum: Option<Vec<f64>>,
        excess_tokens: Option<Vec<i64>>,
    ) -> PyResult<()> {
        let mut mixer = self.mixer();
        let names = mixer.domains().names().to_vec();
        let k = names.len();
        let loss_sum = per_domain(loss_sum, k, "loss_sum")?;
        let loss_count = counts(loss_count, &names, "loss_count")?;
        let sequences = counts(sequences, &names, "sequences")?;
        let tokens = counts(tokens, &names, "tokens")?;
        let excess_loss_sum = per_domain(
            excess_loss_sum.unwrap_or_else(|| vec![0.0; k]),
            k,
            "excess_loss_sum",
        )?;
        let excess_tokens = counts(
            excess_tokens.unwrap_or_else(|| vec![0; k]),
            &names,
            "excess_tokens",
        )?;
        let mut feedback = StepFeedback::new(k);
        for (i, d) in feedback.domains_mut().iter_mut().enumerate() {
            d.loss_sum = loss_sum[i];
            d.loss_count = loss_count[i];
            d.sequences = sequences[i];
            d.tokens = tokens[i];
            d.excess_loss_sum = excess_loss_sum[i];
            d.excess_tokens = excess_tokens[i];
        }
        feedback.validate(mixer.domains()).map_err(mixing_error)?;
        mixer.observe(step, &feedback).map_err(mixing_error)
    }

    /// Feeds per-domain mean validation losses after `step` (None for a domain without
    /// validation data), when `wants_validation(step)`.
    fn observe_validation(&self, step: u64, losses: Vec<Option<f64>>) -> PyResult<()> {
        let mut mixer = self.mixer();
        let losses = per_domain(losses, mixer.domains().len(), "losses")?;
        mixer
            .observe_validation(step, &losses)
            .map_err(mixing_error)
    }

    /// The mixer's whole state as a dict: the same envelope mixlab's checkpoints store.
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.mixer().state().map_err(mixing_error)?;
        from_json(py, &state)
    }

    /// Restores a state from `state_dict()` (or from a mixlab checkpoint's `mixer_state`);
    /// a state of another kind, domains or config is refused, naming the difference.
    fn load_state_dict(&self, py: Python<'_>, state: &Bound<'_, PyAny>) -> PyResult<()> {
        let state = to_json(py, state, "state")?;
        self.mixer().restore_state(&state).map_err(mixing_error)
    }

    /// What the mixer logs beside each step (rewards, exploration rate, phases, ...).
    fn internals<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        from_json(py, &serde_json::Value::Object(self.mixer().internals()))
    }

    fn __repr__(&self) -> String {
        let mixer = self.mixer();
        format!(
            "mixlab.Mixer(kind={:?}, domains={})",
            mixer.kind(),
            mixer.domains().len()
        )
    }
}

/// The kinds of mixer this package knows, in registry order.
#[pyfunction]
fn kinds() -> Vec<&'static str> {
    mixlab_mixers::registry().kinds()
}

/// The Rust core of the package (`mixlab._mixlab`; `mixlab` re-exports it).
#[pymodule]
fn _mixlab(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMixer>()?;
    m.add_class::<data::PyDataStream>()?;
    m.add_function(wrap_pyfunction!(kinds, m)?)?;
    m.add("MixerError", m.py().get_type::<MixerError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
