//! The model configuration, its presets, and the arithmetic that follows from it (parameter
//! counts, FLOPs) without building any tensor.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// GPT-NeoX pads the embedding and output head so that matrix shapes split evenly across
/// tensor-parallel ranks and tensor cores: 50,277 tokenizer entries become 50,304 rows.
pub const VOCAB_PAD_MULTIPLE: usize = 128;

/// Shape of a GPT-NeoX/Pythia decoder: parallel residual, rotary on part of each head, untied head.
///
/// Everything that is not listed here is fixed by the architecture: LayerNorm before attention and
/// before the MLP, exact GELU, biases on every linear layer except the output head, no dropout,
/// GPT-NeoX `small_init`/`wang_init` initialisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Number of token ids the tokenizer produces; embedding and head get `padded_vocab_size()` rows.
    pub vocab_size: usize,
    /// Number of transformer blocks (HF `num_hidden_layers`).
    pub n_layers: usize,
    /// Width of the residual stream (HF `hidden_size`).
    pub d_model: usize,
    /// Number of attention heads (HF `num_attention_heads`); must divide `d_model`.
    pub n_heads: usize,
    /// Hidden width of the MLP (HF `intermediate_size`); `4 * d_model` in every preset.
    pub d_ff: usize,
    /// Sequence length the model is trained for (HF `max_position_embeddings`).
    pub max_seq_len: usize,
    /// Fraction of each head's dimensions that receive rotary embeddings (GPT-NeoX `rotary_pct`).
    pub rotary_pct: f64,
    /// Base of the rotary frequencies (GPT-NeoX `rotary_emb_base`).
    pub rotary_base: f64,
    /// Epsilon of every LayerNorm (HF `layer_norm_eps`).
    pub layer_norm_eps: f64,
}

/// Names accepted by [`ModelConfig::preset`], smallest first.
pub const PRESET_NAMES: [&str; 5] = ["tiny", "small", "pythia-160m", "pythia-410m", "paper-1b"];

/// Size of the GPT-NeoX-20B tokenizer used by Pythia and the paper (before padding).
const NEOX_TOKENIZER_VOCAB: usize = 50_277;

impl ModelConfig {
    /// A Pythia-shaped config with the GPT-NeoX defaults (rotary 25 %, base 10,000, eps 1e-5, MLP 4d).
    fn pythia_shaped(
        vocab_size: usize,
        n_layers: usize,
        d_model: usize,
        n_heads: usize,
        max_seq_len: usize,
    ) -> Self {
        Self {
            vocab_size,
            n_layers,
            d_model,
            n_heads,
            d_ff: 4 * d_model,
            max_seq_len,
            rotary_pct: 0.25,
            rotary_base: 10_000.0,
            layer_norm_eps: 1e-5,
        }
    }

    /// CPU default of `just reproduce`: 4 layers, d 128, 4 heads, seq 128, vocab 4096 (≈1.3M params).
    pub fn tiny() -> Self {
        Self::pythia_shaped(4096, 4, 128, 4, 128)
    }

    /// CPU benchmark model of the burn notes: 4 layers, d 256, 4 heads, seq 256, vocab 8192 (≈7.4M params).
    pub fn small() -> Self {
        Self::pythia_shaped(8192, 4, 256, 4, 256)
    }

    /// Pythia-160M: 12 layers, d 768, 12 heads, seq 2048, GPT-NeoX-20B vocabulary (162,322,944 params).
    pub fn pythia_160m() -> Self {
        Self::pythia_shaped(NEOX_TOKENIZER_VOCAB, 12, 768, 12, 2048)
    }

    /// Pythia-410M: 24 layers, d 1024, 16 heads, seq 2048, GPT-NeoX-20B vocabulary (405,334,016 params).
    pub fn pythia_410m() -> Self {
        Self::pythia_shaped(NEOX_TOKENIZER_VOCAB, 24, 1024, 16, 2048)
    }

    /// The paper's 1B model: 16 layers, d 2048, 16 heads, seq 1024, vocab 50,304 (1,011,781,632 params).
    pub fn paper_1b() -> Self {
        Self::pythia_shaped(NEOX_TOKENIZER_VOCAB, 16, 2048, 16, 1024)
    }

    /// The preset called `name` (one of [`PRESET_NAMES`]).
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "tiny" => Ok(Self::tiny()),
            "small" => Ok(Self::small()),
            "pythia-160m" => Ok(Self::pythia_160m()),
            "pythia-410m" => Ok(Self::pythia_410m()),
            "paper-1b" => Ok(Self::paper_1b()),
            _ => Err(ModelError::UnknownPreset {
                name: name.to_owned(),
                known: PRESET_NAMES.join(", "),
            }),
        }
    }

    /// The same config with another tokenizer size (the data pipeline trains its own vocabularies).
    pub fn with_vocab_size(mut self, vocab_size: usize) -> Self {
        self.vocab_size = vocab_size;
        self
    }

    /// The same config with another training sequence length.
    pub fn with_max_seq_len(mut self, max_seq_len: usize) -> Self {
        self.max_seq_len = max_seq_len;
        self
    }

    /// Checks every field; the model constructors call this, so a built model is always consistent.
    pub fn validate(&self) -> Result<()> {
        let invalid =
            |field: &'static str, reason: String| Err(ModelError::InvalidConfig { field, reason });
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("n_layers", self.n_layers),
            ("d_model", self.d_model),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("max_seq_len", self.max_seq_len),
        ] {
            if value == 0 {
                return invalid(field, "must be at least 1".into());
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return invalid(
                "n_heads",
                format!("({}) must divide d_model ({})", self.n_heads, self.d_model),
            );
        }
        if !(0.0..=1.0).contains(&self.rotary_pct) {
            return invalid(
                "rotary_pct",
                format!("({}) must lie in [0, 1]", self.rotary_pct),
            );
        }
        if !self.rotary_dims().is_multiple_of(2) {
            return invalid(
                "rotary_pct",
                format!(
                    "gives {} rotary dimensions of a {}-dimensional head; rotate-half needs an even number",
                    self.rotary_dims(),
                    self.head_dim()
                ),
            );
        }
        if !(self.rotary_base.is_finite() && self.rotary_base > 0.0) {
            return invalid(
                "rotary_base",
                format!("({}) must be a positive number", self.rotary_base),
            );
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return invalid(
                "layer_norm_eps",
                format!("({}) must be a positive number", self.layer_norm_eps),
            );
        }
        Ok(())
    }

    /// Rows of the embedding and output head: `vocab_size` rounded up to a multiple of 128.
    pub fn padded_vocab_size(&self) -> usize {
        self.vocab_size.div_ceil(VOCAB_PAD_MULTIPLE) * VOCAB_PAD_MULTIPLE
    }

    /// Dimensions per attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Leading dimensions of each head that are rotated: `floor(head_dim * rotary_pct)`, as in HF.
    pub fn rotary_dims(&self) -> usize {
        (self.head_dim() as f64 * self.rotary_pct) as usize
    }

    /// Whether entry `i` of a layer's fused QKV bias (HF's layout: per head `[q | k | v]`, each
    /// `head_dim` long, rotary dimensions first) is a key bias outside the rotary dimensions.
    /// Such a bias b adds q·b to the score of every key of query q, and the softmax over keys
    /// cancels a constant, so ∂loss/∂b = 0 exactly; only rotary dimensions make it depend on
    /// position. Two implementations (or two summation orders) see different rounding noise
    /// there, which Adam rescales into steps far larger than the noise: such entries drift
    /// differently and are not comparable by value.
    pub fn qkv_bias_entry_has_no_gradient(&self, i: usize) -> bool {
        let head_dim = self.head_dim();
        let within_head = i % (3 * head_dim);
        within_head >= head_dim + self.rotary_dims() && within_head < 2 * head_dim
    }

    /// Standard deviation of GPT-NeoX `small_init`, sqrt(2 / (5 d)) (Nguyen & Salazar 2019).
    pub fn small_init_std(&self) -> f64 {
        (2.0 / (5.0 * self.d_model as f64)).sqrt()
    }

    /// Standard deviation of GPT-NeoX `wang_init` for the two output projections, 2 / (L sqrt(d)).
    pub fn wang_init_std(&self) -> f64 {
        2.0 / (self.n_layers as f64 * (self.d_model as f64).sqrt())
    }

    /// Parameters of one block: two LayerNorms, fused QKV, attention output, MLP (all with biases).
    pub fn params_per_layer(&self) -> usize {
        let (d, f) = (self.d_model, self.d_ff);
        let layer_norms = 2 * 2 * d;
        let qkv = d * 3 * d + 3 * d;
        let attention_out = d * d + d;
        let mlp = (d * f + f) + (f * d + d);
        layer_norms + qkv + attention_out + mlp
    }

    /// Parameters of the input embedding (equal to those of the untied output head).
    pub fn embedding_params(&self) -> usize {
        self.padded_vocab_size() * self.d_model
    }

    /// All parameters, counted from the config alone (nothing is allocated).
    pub fn num_params(&self) -> usize {
        2 * self.embedding_params() + self.n_layers * self.params_per_layer() + 2 * self.d_model
    }

    /// Parameters without the input embedding and the output head (the Pythia paper's convention).
    pub fn num_non_embedding_params(&self) -> usize {
        self.num_params() - 2 * self.embedding_params()
    }

    /// Forward-pass FLOPs per token at `max_seq_len`: 2 per multiply-add of every weight matrix
    /// (blocks and head; the embedding is a lookup) plus 4·L·s·d for QKᵀ and attention·V, counted
    /// without the causal half as in PaLM's model-FLOPs convention. Norms, softmax and biases are
    /// left out; they are under 1 % at these sizes.
    pub fn forward_flops_per_token(&self) -> f64 {
        let (d, f) = (self.d_model as f64, self.d_ff as f64);
        let per_layer_matmul = d * 3.0 * d + d * d + 2.0 * d * f;
        let matmul_params =
            self.n_layers as f64 * per_layer_matmul + d * self.padded_vocab_size() as f64;
        let attention = 4.0 * self.n_layers as f64 * self.max_seq_len as f64 * d;
        2.0 * matmul_params + attention
    }

    /// Training FLOPs per token (forward + backward = 3 × forward).
    pub fn training_flops_per_token(&self) -> f64 {
        3.0 * self.forward_flops_per_token()
    }

    /// A few lines describing the architecture, for logs and `model-info`.
    pub fn describe(&self) -> String {
        format!(
            "GPT-NeoX decoder (parallel residual, pre-LayerNorm eps {eps:e}, exact GELU, untied head, no dropout)\n\
             layers {l}, d_model {d}, heads {h} x {hd}, MLP {d} -> {f} -> {d}\n\
             rotary on {r} of {hd} head dims (pct {pct}, base {base}), sequence length {s}\n\
             vocabulary {v} (padded to {vp})",
            eps = self.layer_norm_eps,
            l = self.n_layers,
            d = self.d_model,
            h = self.n_heads,
            hd = self.head_dim(),
            f = self.d_ff,
            r = self.rotary_dims(),
            pct = self.rotary_pct,
            base = self.rotary_base,
            s = self.max_seq_len,
            v = self.vocab_size,
            vp = self.padded_vocab_size(),
        )
    }
}

impl Default for ModelConfig {
    /// The CPU default, [`ModelConfig::tiny`].
    fn default() -> Self {
        Self::tiny()
    }
}
