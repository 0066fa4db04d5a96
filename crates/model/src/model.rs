//! The GPT-NeoX/Pythia decoder: embedding, parallel-residual blocks, final LayerNorm, untied head.
//!
//! The layout follows HF `GPTNeoXForCausalLM` tensor for tensor (see [`crate::checkpoint`]), so a
//! checkpoint moves between mixlab and HF transformers by renaming and transposing only.

use burn::module::{Initializer, Module, ModuleVisitor, Param};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, DType, Int, Tensor, TensorData};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::fused::{ModelBackend, gelu, matmul, merge_heads, softmax_last, split_heads, token_nll};

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

/// Per-forward constants shared by all blocks: rotary tables and the causal mask.
struct AttentionContext<B: Backend> {
    /// cos of the rotary angles, duplicated over both halves as in HF, repeated for every head
    /// and flattened: [1, seq * heads * rotary_dims] (position-major, as the projection's rows).
    cos: Option<Tensor<B, 2>>,
    /// sin, same layout as `cos`.
    sin: Option<Tensor<B, 2>>,
    /// 0 on and below the diagonal, -inf above, flattened: [1, seq * seq]. Flat, because burn's
    /// CPU backend adds a row shared by all outer positions with SIMD, while a [1, 1, seq, seq]
    /// broadcast over [batch, heads, seq, seq] takes its element-by-element strided path.
    causal_mask: Tensor<B, 2>,
    rotary_dims: usize,
}

impl<B: Backend> AttentionContext<B> {
    fn new(config: &ModelConfig, seq: usize, device: &B::Device, dtype: DType) -> Self {
        let rotary_dims = config.rotary_dims();
        let (cos, sin) = if rotary_dims == 0 {
            (None, None)
        } else {
            let half = rotary_dims / 2;
            // HF: inv_freq = 1 / base^(2i / rotary_dims), angle = position * inv_freq, and the
            // table is cat(angles, angles) so that it lines up with rotate_half's two halves.
            let inv_freq: Vec<f64> = (0..half)
                .map(|i| 1.0 / config.rotary_base.powf((2 * i) as f64 / rotary_dims as f64))
                .collect();
            let heads = config.n_heads;
            let mut cos = Vec::with_capacity(seq * heads * rotary_dims);
            let mut sin = Vec::with_capacity(seq * heads * rotary_dims);
            for position in 0..seq {
                for _ in 0..heads {
                    for _ in 0..2 {
                        for frequency in &inv_freq {
                            let angle = position as f64 * frequency;
                            cos.push(angle.cos());
                            sin.push(angle.sin());
                        }
                    }
                }
            }
            let table = |values: Vec<f64>| {
                Tensor::<B, 2>::from_data(
                    TensorData::new(values, [1, seq * heads * rotary_dims]),
                    (device, dtype),
                )
            };
            (Some(table(cos)), Some(table(sin)))
        };
        let mask: Vec<f32> = (0..seq)
            .flat_map(|row| {
                (0..seq).map(move |col| if col > row { f32::NEG_INFINITY } else { 0.0 })
            })
            .collect();
        let causal_mask = Tensor::from_data(TensorData::new(mask, [1, seq * seq]), (device, dtype));
        Self {
            cos,
            sin,
            causal_mask,
            rotary_dims,
        }
    }

    /// Rotates the first `rotary_dims` of every head (HF `apply_rotary_pos_emb`, rotate-half form).
    ///
    /// Works on the projection's own row layout, one row per (batch, position, head), so that
    /// every copy burn's CPU backend makes is two-dimensional (its fast tiled path) and the
    /// products with the cos/sin tables are a row shared by the whole batch (its SIMD path).
    ///
    /// # Shapes
    /// - x: `[batch * seq * heads, head_dim]` (any strides) → same, contiguous
    fn apply_rotary(&self, x: Tensor<B, 2>, batch: usize) -> Tensor<B, 2> {
        let (Some(cos), Some(sin)) = (&self.cos, &self.sin) else {
            return x;
        };
        let [rows, head_dim] = x.dims();
        let rotary_dims = self.rotary_dims;
        let half = rotary_dims / 2;
        let x_rot = x.clone().narrow(1, 0, rotary_dims);
        let x1 = x_rot.clone().narrow(1, 0, half);
        let x2 = x_rot.clone().narrow(1, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 1); // [rows, rotary_dims]
        let per_sequence = rows / batch * rotary_dims;
        let embedded = (x_rot.reshape([batch, per_sequence]) * cos.clone()
            + rotated.reshape([batch, per_sequence]) * sin.clone())
        .reshape([rows, rotary_dims]);
        if rotary_dims == head_dim {
            embedded
        } else {
            Tensor::cat(
                vec![embedded, x.narrow(1, rotary_dims, head_dim - rotary_dims)],
                1,
            )
        }
    }
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

impl ModelConfig {
    /// Builds the model with GPT-NeoX initialisation and draws every weight now, in a fixed order,
    /// from the backend's RNG (seed it first with `B::seed(&device, seed)` for a reproducible init).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<GptNeoX<B>> {
        let model = self.init_lazy(device)?;
        model.visit(&mut Materialize);
        Ok(model)
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
        let [_, seq] = tokens.dims();
        let device = tokens.device();
        let hidden = self.embed_in.forward(tokens); // [batch, seq, d_model]
        let context = AttentionContext::new(&self.config, seq, &device, hidden.dtype());
        let hidden = self
            .layers
            .iter()
            .fold(hidden, |hidden, layer| layer.forward(hidden, &context));
        let hidden = self.final_layer_norm.forward(hidden);
        linear_rows(&self.embed_out, hidden)
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
    fn forward(&self, hidden: Tensor<B, 3>, context: &AttentionContext<B>) -> Tensor<B, 3> {
        let attention = self
            .attention
            .forward(self.input_layernorm.forward(hidden.clone()), context);
        let mlp = self
            .mlp
            .forward(self.post_attention_layernorm.forward(hidden.clone()));
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
    fn forward(&self, hidden: Tensor<B, 3>, context: &AttentionContext<B>) -> Tensor<B, 3> {
        let [batch, seq, d_model] = hidden.dims();
        let [q, k, v] = self.qkv_rows(hidden);
        // Scaling q rather than the scores touches seq·head_dim values instead of seq².
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let q = self.heads_view(context.apply_rotary(q, batch).mul_scalar(scale), batch, seq);
        let k = self.heads_view(context.apply_rotary(k, batch), batch, seq);
        let v = self.heads_view(v, batch, seq);
        let scores = (matmul(q, k.swap_dims(2, 3)) // [batch, heads, seq, seq]
            .reshape([batch * self.n_heads, seq * seq])
            + context.causal_mask.clone())
        .reshape([batch, self.n_heads, seq, seq]);
        let probs = softmax_last(scores);
        // [batch, heads, seq, head_dim] → rows → [batch, seq, d_model]
        let out = merge_heads(matmul(probs, v)).reshape([batch, seq, d_model]);
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
