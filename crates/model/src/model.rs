//! The GPT-NeoX/Pythia decoder: embedding, parallel-residual blocks, final LayerNorm, untied head.
//!
//! The layout follows HF `GPTNeoXForCausalLM` tensor for tensor (see [`crate::checkpoint`]), so a
//! checkpoint moves between mixlab and HF transformers by renaming and transposing only.

use burn::module::{Initializer, Module, ModuleVisitor, Param};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, DType, Int, Tensor};

use crate::attention::{AttentionShape, AttentionTables, causal_attention};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::fused::{ModelBackend, gelu, layer_norm, matmul, split_heads, token_nll};

/// The decoder. Build it with [`ModelConfig::init`]; load one with [`GptNeoX::load_pretrained`].
#[derive(Module, Debug)]
pub struct GptNeoX<B: Backend> {
    /// `gpt_neox.embed_in`: [padded_vocab, d_model].
    pub(crate) embed_in: Embedding<B>,
    /// `gpt_neox.layers.N`.
    pub(crate) layers: Vec<Block<B>>,
    /// `gpt_neox.final_layer_norm`.
    pub(crate) final_layer_norm: LayerNorm<B>,
    /// `embed_out`: [d_model, padded_vocab] (burn layout), no bias.
    pub(crate) embed_out: Linear<B>,
    #[module(skip)]
    pub(crate) config: ModelConfig,
}

/// One GPT-NeoX block: `x + attention(LN1(x)) + mlp(LN2(x))` (parallel residual).
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub(crate) input_layernorm: LayerNorm<B>,
    pub(crate) post_attention_layernorm: LayerNorm<B>,
    pub(crate) attention: Attention<B>,
    pub(crate) mlp: Mlp<B>,
}

/// Causal multi-head self-attention with a fused QKV projection and partial rotary embeddings.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// [d_model, 3 d_model]; output features in HF's per-head interleaved order
    /// (head 0: q, k, v; head 1: q, k, v; ...), so checkpoints need no permutation.
    pub(crate) query_key_value: Linear<B>,
    /// [d_model, d_model].
    pub(crate) dense: Linear<B>,
    #[module(skip)]
    pub(crate) n_heads: usize,
    #[module(skip)]
    pub(crate) head_dim: usize,
}

/// The MLP: d → d_ff → d with exact (erf) GELU, as HF's `hidden_act: "gelu"`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub(crate) dense_h_to_4h: Linear<B>,
    pub(crate) dense_4h_to_h: Linear<B>,
}

/// `layer` applied to every position, as one matrix product over `[batch · seq, d_input]` rows
/// ([`matmul`]) plus the bias.
///
/// burn's linear keeps the batch dimension: its weight gradient is then one product per sequence
/// (an inner dimension of `seq` instead of `batch · seq`) summed afterwards through a
/// `[batch, d_input, d_output]` temporary, and its input gradient copies the transposed weight
/// first (a reshape of a transposed view). On two-dimensional rows the weight gradient is one
/// product and the transposed weight is read in place; on the CPU the products' outputs skip
/// burn's fill-and-copy of new buffers. Same values up to float summation order.
///
/// # Shapes
/// - x: `[batch, seq, d_input]` → `[batch, seq, d_output]`
fn linear_rows<B: ModelBackend>(layer: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [batch, seq, d_input] = x.dims();
    let rows = matmul(x.reshape([batch * seq, d_input]), layer.weight.val());
    let rows = match &layer.bias {
        Some(bias) => rows + bias.val().unsqueeze_dim(0),
        None => rows,
    };
    let d_output = rows.dims()[1];
    rows.reshape([batch, seq, d_output])
}

/// A `Linear` whose weight is drawn from N(0, std²) and whose bias (if any) starts at zero.
fn normal_linear<B: Backend>(
    d_input: usize,
    d_output: usize,
    std: f64,
    bias: bool,
    device: &B::Device,
) -> Linear<B> {
    Linear {
        weight: Initializer::Normal { mean: 0.0, std }.init_with(
            [d_input, d_output],
            Some(d_input),
            Some(d_output),
            device,
        ),
        bias: bias.then(|| Initializer::Zeros.init([d_output], device)),
    }
}

/// Touches every parameter so that lazily initialised tensors are drawn now, in module order.
struct Materialize;

impl<B: Backend> ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

/// Burn backends keep one random generator per process, and `Backend::seed` replaces it: two
/// models initialised at once in one process (a test binary's tests, in-process runs) would
/// draw from each other's stream. [`ModelConfig::init_seeded`] holds this lock from seeding to
/// the last initial weight.
static BACKEND_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl ModelConfig {
    /// Builds the model with GPT-NeoX initialisation and draws every weight now, in a fixed order,
    /// from the backend's RNG as it stands. For weights that are a function of a seed, use
    /// [`Self::init_seeded`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<GptNeoX<B>> {
        let model = self.init_lazy(device)?;
        model.visit(&mut Materialize);
        Ok(model)
    }

    /// [`Self::init`] from the backend's generator seeded with `seed`, under a process-wide lock
    /// held from seeding to the last weight, so that the weights depend on `seed` alone even
    /// while other threads of the process initialise models this way.
    pub fn init_seeded<B: Backend>(&self, device: &B::Device, seed: u64) -> Result<GptNeoX<B>> {
        let _rng = BACKEND_RNG
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        B::seed(device, seed);
        self.init(device)
    }

    /// Builds the model without allocating any weight: each parameter is drawn on first use.
    ///
    /// This is how `paper-1b` is checked on a CPU (shapes only), and how loading avoids drawing
    /// weights that the checkpoint overwrites anyway.
    pub fn init_lazy<B: Backend>(&self, device: &B::Device) -> Result<GptNeoX<B>> {
        self.validate()?;
        let (d, f, vocab) = (self.d_model, self.d_ff, self.padded_vocab_size());
        let small = self.small_init_std();
        let wang = self.wang_init_std();
        let layer_norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        let layers = (0..self.n_layers)
            .map(|_| Block {
                input_layernorm: layer_norm(),
                post_attention_layernorm: layer_norm(),
                attention: Attention {
                    query_key_value: normal_linear(d, 3 * d, small, true, device),
                    dense: normal_linear(d, d, wang, true, device),
                    n_heads: self.n_heads,
                    head_dim: self.head_dim(),
                },
                mlp: Mlp {
                    dense_h_to_4h: normal_linear(d, f, small, true, device),
                    dense_4h_to_h: normal_linear(f, d, wang, true, device),
                },
            })
            .collect();
        Ok(GptNeoX {
            embed_in: Embedding {
                weight: Initializer::Normal {
                    mean: 0.0,
                    std: small,
                }
                .init([vocab, d], device),
            },
            layers,
            final_layer_norm: layer_norm(),
            embed_out: normal_linear(d, vocab, small, false, device),
            config: self.clone(),
        })
    }
}

impl<B: Backend> GptNeoX<B> {
    /// The config this model was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The blocks, first to last.
    pub fn layers(&self) -> &[Block<B>] {
        &self.layers
    }
}

impl<B: ModelBackend> GptNeoX<B> {
    /// Next-token logits over the padded vocabulary.
    ///
    /// Padding rows (ids ≥ `vocab_size`) are not masked, as in GPT-NeoX: no target ever hits them,
    /// so training drives them down.
    ///
    /// # Shapes
    /// - tokens: `[batch, seq]`
    /// - output: `[batch, seq, padded_vocab]`
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let hidden = self.blocks(tokens);
        let hidden = layer_norm(&self.final_layer_norm, hidden, self.config.layer_norm_eps);
        linear_rows(&self.embed_out, hidden)
    }

    /// Next-token logits at some positions only: row `i` is `forward(tokens)` at flat position
    /// `positions[i]` (`sequence · seq + position`), the same values.
    ///
    /// Scoring a continuation reads a few positions of each input, while the vocabulary head is
    /// the largest product of a forward pass (`d_model × padded_vocab` per position: 36% of the
    /// `tiny` model's forward products, and at `paper-1b` a `[batch · seq, 50k]` logits tensor).
    /// The blocks still run over every position (later positions attend to earlier ones); the
    /// final LayerNorm and the head run on the picked rows. Each row's LayerNorm and head product
    /// depend on that row alone, so on burn's CPU backend the values are the same bits as
    /// `forward`'s (tested in `tests/model.rs`); an accelerator's product may pick another
    /// algorithm for the smaller shape and round differently.
    ///
    /// # Shapes
    /// - tokens: `[batch, seq]`
    /// - positions: `[count]`, each below `batch · seq`
    /// - output: `[count, padded_vocab]`
    pub fn forward_at(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 1, Int>,
    ) -> Tensor<B, 2> {
        let [count] = positions.dims();
        let hidden = self.blocks(tokens);
        let [batch, seq, d_model] = hidden.dims();
        let picked = hidden
            .reshape([batch * seq, d_model])
            .select(0, positions)
            .reshape([1, count, d_model]);
        let picked = layer_norm(&self.final_layer_norm, picked, self.config.layer_norm_eps);
        let vocab = self.embed_out.weight.dims()[1];
        linear_rows(&self.embed_out, picked).reshape([count, vocab])
    }

    /// The embedding and every block: the hidden state before the final LayerNorm.
    ///
    /// # Shapes
    /// - tokens: `[batch, seq]`
    /// - output: `[batch, seq, d_model]`
    fn blocks(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [_, seq] = tokens.dims();
        let device = tokens.device();
        let hidden = self.embed_in.forward(tokens); // [batch, seq, d_model]
        let tables = AttentionTables::new(&self.config, seq, &device, hidden.dtype());
        let epsilon = self.config.layer_norm_eps;
        self.layers.iter().fold(hidden, |hidden, layer| {
            layer.forward(hidden, &tables, epsilon)
        })
    }

    /// Negative log-likelihood of each target token, from one forward pass.
    ///
    /// Positions where `mask` is `false` get a loss of exactly 0 and no gradient. The mean
    /// training loss, per-sequence and per-domain losses all follow from this tensor.
    ///
    /// # Shapes
    /// - inputs, targets, mask: `[batch, seq]`
    /// - output: `[batch, seq]`
    pub fn per_token_nll(
        &self,
        inputs: Tensor<B, 2, Int>,
        targets: Tensor<B, 2, Int>,
        mask: Option<Tensor<B, 2, Bool>>,
    ) -> Tensor<B, 2> {
        per_token_nll_from_logits(self.forward(inputs), targets, mask)
    }
}

/// Per-token negative log-likelihood: log-softmax over the vocabulary, gather the targets, negate
/// (one operation with a closed-form gradient, [`crate::fused::token_nll`]).
///
/// burn's cross-entropy returns only the mean; mixing needs the per-token values. Half-precision
/// logits are promoted to f32 first, because a bf16 log-sum-exp over 50k entries loses ~2 digits.
///
/// # Shapes
/// - logits: `[batch, seq, vocab]`
/// - targets, mask: `[batch, seq]`
/// - output: `[batch, seq]`
pub fn per_token_nll_from_logits<B: ModelBackend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    mask: Option<Tensor<B, 2, Bool>>,
) -> Tensor<B, 2> {
    let [batch, seq, vocab] = logits.dims();
    let logits = match logits.dtype() {
        DType::F16 | DType::BF16 => logits.cast(DType::F32),
        _ => logits,
    };
    let nll = token_nll(
        logits.reshape([batch * seq, vocab]),
        targets.reshape([batch * seq]),
    )
    .reshape([batch, seq]);
    match mask {
        Some(mask) => nll.mask_fill(mask.bool_not(), 0.0),
        None => nll,
    }
}

impl<B: ModelBackend> Block<B> {
    /// The attention sub-layer of this block.
    pub fn attention(&self) -> &Attention<B> {
        &self.attention
    }

    /// # Shapes
    /// - hidden: `[batch, seq, d_model]` → same
    /// - `epsilon`: the LayerNorms' ε (the model config's).
    fn forward(
        &self,
        hidden: Tensor<B, 3>,
        tables: &AttentionTables<B>,
        epsilon: f64,
    ) -> Tensor<B, 3> {
        let attention = self.attention.forward(
            layer_norm(&self.input_layernorm, hidden.clone(), epsilon),
            tables,
        );
        let mlp = self.mlp.forward(layer_norm(
            &self.post_attention_layernorm,
            hidden.clone(),
            epsilon,
        ));
        hidden + attention + mlp
    }
}

impl<B: ModelBackend> Attention<B> {
    /// Projects `hidden` with the fused QKV layer and splits the result per head, reading the
    /// output features in HF's order: feature `h * 3 * head_dim + j` is q of head h,
    /// `+ head_dim` is k, `+ 2 * head_dim` is v.
    ///
    /// # Shapes
    /// - hidden: `[batch, seq, d_model]`
    /// - output: q, k, v, each `[batch, heads, seq, head_dim]`
    pub fn qkv_heads(&self, hidden: Tensor<B, 3>) -> [Tensor<B, 4>; 3] {
        let [batch, seq, _] = hidden.dims();
        self.qkv_rows(hidden)
            .map(|part| self.heads_view(part, batch, seq))
    }

    /// The QKV projection as one row per (batch, position, head), split into q, k and v views.
    ///
    /// # Shapes
    /// - hidden: `[batch, seq, d_model]`
    /// - output: q, k, v, each `[batch * seq * heads, head_dim]` (views of one buffer)
    fn qkv_rows(&self, hidden: Tensor<B, 3>) -> [Tensor<B, 2>; 3] {
        let [batch, seq, _] = hidden.dims();
        let head_dim = self.head_dim;
        let qkv = linear_rows(&self.query_key_value, hidden) // [batch, seq, 3 d_model]
            .reshape([batch * seq * self.n_heads, 3 * head_dim]);
        [0, 1, 2].map(|part| qkv.clone().narrow(1, part * head_dim, head_dim))
    }

    /// `[batch * seq * heads, head_dim]` rows seen as `[batch, heads, seq, head_dim]` (a view when
    /// burn can express it; the matrix products read strided operands without copying).
    fn heads_view(&self, rows: Tensor<B, 2>, batch: usize, seq: usize) -> Tensor<B, 4> {
        split_heads(rows, batch, seq)
    }

    /// # Shapes
    /// - hidden: `[batch, seq, d_model]` → same
    fn forward(&self, hidden: Tensor<B, 3>, tables: &AttentionTables<B>) -> Tensor<B, 3> {
        let [batch, seq, d_model] = hidden.dims();
        let shape = AttentionShape {
            batch,
            seq,
            heads: self.n_heads,
            head_dim: self.head_dim,
            rotary_dims: tables.rotary_dims(),
        };
        let qkv = linear_rows(&self.query_key_value, hidden) // [batch, seq, 3 d_model]
            .reshape([batch * seq * self.n_heads, 3 * self.head_dim]);
        let out = causal_attention(qkv, tables, shape).reshape([batch, seq, d_model]);
        linear_rows(&self.dense, out)
    }
}

impl<B: ModelBackend> Mlp<B> {
    /// # Shapes
    /// - hidden: `[batch, seq, d_model]` → same
    fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let inner = gelu(linear_rows(&self.dense_h_to_4h, hidden));
        linear_rows(&self.dense_4h_to_h, inner)
    }
}
