//! Weights as safetensors with HF GPT-NeoX names, plus a matching HF `config.json`.
//!
//! A directory written by [`GptNeoX::save_pretrained`] opens with
//! `GPTNeoXForCausalLM.from_pretrained(dir)` (and so in lm-evaluation-harness), and a Pythia
//! directory loads with [`GptNeoX::load_pretrained`]. The tensors map one to one:
//!
//! | HF name | mixlab | layout |
//! |---|---|---|
//! | `gpt_neox.embed_in.weight` | embedding | [vocab, d] both |
//! | `gpt_neox.layers.N.{input,post_attention}_layernorm.{weight,bias}` | LayerNorm γ, β | \[d\] |
//! | `gpt_neox.layers.N.attention.query_key_value.{weight,bias}` | fused QKV | HF [3d, d], burn [d, 3d] |
//! | `gpt_neox.layers.N.attention.dense.{weight,bias}` | attention output | transposed |
//! | `gpt_neox.layers.N.mlp.dense_h_to_4h.{weight,bias}` | MLP in | transposed |
//! | `gpt_neox.layers.N.mlp.dense_4h_to_h.{weight,bias}` | MLP out | transposed |
//! | `gpt_neox.final_layer_norm.{weight,bias}` | final LayerNorm | \[d\] |
//! | `embed_out.weight` | output head (no bias) | HF [vocab, d], burn [d, vocab] |
//!
//! HF `nn.Linear` stores weights as [out, in], burn's `Linear` as [in, out], hence the transposes.
//! The QKV output features keep HF's per-head interleaved order in mixlab too (see
//! [`crate::Attention::qkv_heads`]), so no permutation is needed.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde_json::{Value, json};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::model::GptNeoX;

/// File name of the weights inside a pretrained directory (HF convention).
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the HF config inside a pretrained directory.
pub const CONFIG_FILE: &str = "config.json";

/// Non-parameter buffers that some HF GPT-NeoX checkpoints (Pythia among them) also store.
const IGNORED_BUFFER_SUFFIXES: [&str; 3] =
    [".attention.bias", ".attention.masked_bias", ".inv_freq"];

/// A parameter of the model under its HF name.
enum Slot<'a, B: Backend> {
    /// Same layout in HF and burn.
    Vector(&'a mut Param<Tensor<B, 1>>),
    /// A matrix; `transposed` when HF stores it as [out, in] and burn as [in, out].
    Matrix {
        param: &'a mut Param<Tensor<B, 2>>,
        transposed: bool,
    },
}

impl<B: Backend> Slot<'_, B> {
    /// The shape HF uses for this tensor, read without initialising the parameter.
    fn hf_shape(&self) -> Vec<usize> {
        match self {
            Slot::Vector(param) => param.lazy_shape().to_vec(),
            Slot::Matrix { param, transposed } => {
                let mut dims = param.lazy_shape().to_vec();
                if *transposed {
                    dims.reverse();
                }
                dims
            }
        }
    }
}

fn push_layer_norm<'a, B: Backend>(
    slots: &mut Vec<(String, Slot<'a, B>)>,
    prefix: &str,
    norm: &'a mut LayerNorm<B>,
) {
    slots.push((format!("{prefix}.weight"), Slot::Vector(&mut norm.gamma)));
    if let Some(beta) = norm.beta.as_mut() {
        slots.push((format!("{prefix}.bias"), Slot::Vector(beta)));
    }
}

fn push_linear<'a, B: Backend>(
    slots: &mut Vec<(String, Slot<'a, B>)>,
    prefix: &str,
    linear: &'a mut Linear<B>,
) {
    slots.push((
        format!("{prefix}.weight"),
        Slot::Matrix {
            param: &mut linear.weight,
            transposed: true,
        },
    ));
    if let Some(bias) = linear.bias.as_mut() {
        slots.push((format!("{prefix}.bias"), Slot::Vector(bias)));
    }
}

impl<B: Backend> GptNeoX<B> {
    /// Every parameter with its HF name, in HF's order.
    fn hf_slots(&mut self) -> Vec<(String, Slot<'_, B>)> {
        let mut slots = Vec::new();
        slots.push((
            "gpt_neox.embed_in.weight".to_owned(),
            Slot::Matrix {
                param: &mut self.embed_in.weight,
                transposed: false,
            },
        ));
        for (index, layer) in self.layers.iter_mut().enumerate() {
            let prefix = format!("gpt_neox.layers.{index}");
            push_layer_norm(
                &mut slots,
                &format!("{prefix}.input_layernorm"),
                &mut layer.input_layernorm,
            );
            push_layer_norm(
                &mut slots,
                &format!("{prefix}.post_attention_layernorm"),
                &mut layer.post_attention_layernorm,
            );
            push_linear(
                &mut slots,
                &format!("{prefix}.attention.query_key_value"),
                &mut layer.attention.query_key_value,
            );
            push_linear(
                &mut slots,
                &format!("{prefix}.attention.dense"),
                &mut layer.attention.dense,
            );
            push_linear(
                &mut slots,
                &format!("{prefix}.mlp.dense_h_to_4h"),
                &mut layer.mlp.dense_h_to_4h,
            );
            push_linear(
                &mut slots,
                &format!("{prefix}.mlp.dense_4h_to_h"),
                &mut layer.mlp.dense_4h_to_h,
            );
        }
        push_layer_norm(
            &mut slots,
            "gpt_neox.final_layer_norm",
            &mut self.final_layer_norm,
        );
        push_linear(&mut slots, "embed_out", &mut self.embed_out);
        slots
    }

    /// The HF names of all parameters, in HF's order.
    pub fn hf_parameter_names(&self) -> Vec<String> {
        self.clone()
            .hf_slots()
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// Writes all weights to one safetensors file under HF GPT-NeoX names, in the model's own
    /// float type (f32 on CPU, bf16 for a bf16 CUDA model).
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let mut copy = self.clone(); // cheap: tensors are reference-counted
        let mut entries = Vec::new();
        for (name, slot) in copy.hf_slots() {
            let data = match slot {
                Slot::Vector(param) => param.val().into_data(),
                Slot::Matrix { param, transposed } => {
                    let tensor = param.val();
                    if transposed {
                        tensor.transpose()
                    } else {
                        tensor
                    }
                    .into_data()
                }
            };
            let dtype =
                safetensors_dtype(data.dtype).ok_or_else(|| ModelError::UnsupportedDtype {
                    path: path.to_owned(),
                    name: name.clone(),
                    dtype: format!("{:?}", data.dtype),
                })?;
            entries.push((name, dtype, data.shape.to_vec(), data.into_bytes()));
        }
        let views = entries
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                TensorView::new(*dtype, shape.clone(), bytes)
                    .map(|view| (name.as_str(), view))
                    .map_err(|error| ModelError::Safetensors {
                        path: path.to_owned(),
                        reason: format!("tensor `{name}`: {error}"),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        // transformers refuses safetensors files whose metadata lacks a known "format".
        let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
        // Serialised straight into a synced temporary that is renamed into place: a 1B model's
        // 4 GB are never held twice, and a crash never leaves a truncated file at `path`.
        mixlab_atomic::write_file_with(path, |tmp| {
            safetensors::serialize_to_file(views, Some(metadata), tmp).map_err(|error| {
                ModelError::Safetensors {
                    path: path.to_owned(),
                    reason: error.to_string(),
                }
            })
        })
    }

    /// Replaces every weight with the one of the same HF name in `path`.
    ///
    /// Every parameter must be present with the shape this model's config implies; extra tensors
    /// are an error, except the attention-mask and rotary buffers some HF checkpoints also store.
    /// F32, F16, BF16 and F64 files load into any model float type.
    pub fn load_safetensors(self, path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })?;
        self.load_safetensors_bytes(&bytes, path)
    }

    /// [`Self::load_safetensors`] from the file's bytes already in memory (read once by a caller
    /// that also hashes them); `path` only labels errors.
    pub fn load_safetensors_bytes(mut self, bytes: &[u8], path: &Path) -> Result<Self> {
        let file = SafeTensors::deserialize(bytes).map_err(|error| ModelError::Safetensors {
            path: path.to_owned(),
            reason: error.to_string(),
        })?;
        let mut unused: BTreeSet<String> = file.names().into_iter().map(str::to_owned).collect();
        for (name, slot) in self.hf_slots() {
            let view = file.tensor(&name).map_err(|_| ModelError::MissingTensor {
                path: path.to_owned(),
                name: name.clone(),
            })?;
            unused.remove(&name);
            let expected = slot.hf_shape();
            if view.shape() != expected.as_slice() {
                return Err(ModelError::ShapeMismatch {
                    path: path.to_owned(),
                    name,
                    found: view.shape().to_vec(),
                    expected,
                });
            }
            let (dtype, element_size) =
                burn_dtype(view.dtype()).ok_or_else(|| ModelError::UnsupportedDtype {
                    path: path.to_owned(),
                    name: name.clone(),
                    dtype: format!("{:?}", view.dtype()),
                })?;
            match slot {
                Slot::Vector(param) => {
                    let data = TensorData::from_bytes_vec(view.data().to_vec(), expected, dtype);
                    let device = param.lazy_device();
                    *param = Param::initialized(
                        param.id,
                        Tensor::from_data(data, &device).require_grad(),
                    );
                }
                Slot::Matrix { param, transposed } => {
                    let data = if transposed {
                        let [rows, cols] = [expected[0], expected[1]];
                        let swapped = transpose_bytes(view.data(), rows, cols, element_size);
                        TensorData::from_bytes_vec(swapped, [cols, rows], dtype)
                    } else {
                        TensorData::from_bytes_vec(view.data().to_vec(), expected, dtype)
                    };
                    let device = param.lazy_device();
                    *param = Param::initialized(
                        param.id,
                        Tensor::from_data(data, &device).require_grad(),
                    );
                }
            }
        }
        if let Some(extra) = unused.into_iter().find(|name| {
            !IGNORED_BUFFER_SUFFIXES
                .iter()
                .any(|suffix| name.ends_with(suffix))
        }) {
            return Err(ModelError::UnexpectedTensor {
                path: path.to_owned(),
                name: extra,
            });
        }
        Ok(self)
    }

    /// Writes `config.json` (HF GPT-NeoX) and `model.safetensors` into `dir`, creating it.
    pub fn save_pretrained(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let dtype = self.embed_in.weight.val().dtype();
        let config_path = dir.join(CONFIG_FILE);
        let text =
            serde_json::to_string_pretty(&self.config.to_hf_config(dtype)).map_err(|source| {
                ModelError::Json {
                    path: config_path.clone(),
                    source,
                }
            })?;
        mixlab_atomic::write_file(&config_path, text + "\n")?;
        self.save_safetensors(&dir.join(WEIGHTS_FILE))
    }

    /// Reads an HF GPT-NeoX directory (`config.json` + `model.safetensors`), e.g. a Pythia
    /// checkpoint or one written by [`GptNeoX::save_pretrained`]. Weights are never drawn at
    /// random first: the model is built lazily and every parameter is replaced from the file.
    pub fn load_pretrained(dir: &Path, device: &B::Device) -> Result<Self> {
        let config = ModelConfig::read_hf_config(&dir.join(CONFIG_FILE))?;
        config
            .init_lazy(device)?
            .load_safetensors(&dir.join(WEIGHTS_FILE))
    }
}

fn safetensors_dtype(dtype: DType) -> Option<Dtype> {
    match dtype {
        DType::F32 => Some(Dtype::F32),
        DType::F16 => Some(Dtype::F16),
        DType::BF16 => Some(Dtype::BF16),
        DType::F64 => Some(Dtype::F64),
        _ => None,
    }
}

/// The burn dtype and element size in bytes of a safetensors float dtype.
fn burn_dtype(dtype: Dtype) -> Option<(DType, usize)> {
    match dtype {
        Dtype::F32 => Some((DType::F32, 4)),
        Dtype::F16 => Some((DType::F16, 2)),
        Dtype::BF16 => Some((DType::BF16, 2)),
        Dtype::F64 => Some((DType::F64, 8)),
        _ => None,
    }
}

/// Transposes a row-major [rows, cols] matrix of `element_size`-byte elements on the host, so
/// that loaded weights are contiguous in burn's layout instead of strided views.
fn transpose_bytes(data: &[u8], rows: usize, cols: usize, element_size: usize) -> Vec<u8> {
    let mut out = vec![0u8; data.len()];
    for row in 0..rows {
        for col in 0..cols {
            let from = (row * cols + col) * element_size;
            let to = (col * rows + row) * element_size;
            out[to..to + element_size].copy_from_slice(&data[from..from + element_size]);
        }
    }
    out
}

/// Name of the extra `config.json` field that keeps the tokenizer's (unpadded) vocabulary size;
/// HF stores unknown fields as config attributes and ignores them otherwise.
const TOKENIZER_VOCAB_FIELD: &str = "mixlab_tokenizer_vocab_size";

impl ModelConfig {
    /// The HF `GPTNeoXConfig` for this model, as written to `config.json`.
    ///
    /// `vocab_size` is the padded size (the number of embedding rows HF will allocate).
    pub fn to_hf_config(&self, dtype: DType) -> Value {
        let torch_dtype = match dtype {
            DType::BF16 => "bfloat16",
            DType::F16 => "float16",
            DType::F64 => "float64",
            _ => "float32",
        };
        json!({
            "architectures": ["GPTNeoXForCausalLM"],
            "model_type": "gpt_neox",
            "vocab_size": self.padded_vocab_size(),
            "hidden_size": self.d_model,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "intermediate_size": self.d_ff,
            "hidden_act": "gelu",
            "rotary_pct": self.rotary_pct,
            "rotary_emb_base": self.rotary_base,
            "max_position_embeddings": self.max_seq_len,
            "layer_norm_eps": self.layer_norm_eps,
            "use_parallel_residual": true,
            "tie_word_embeddings": false,
            "attention_bias": true,
            "attention_dropout": 0.0,
            "hidden_dropout": 0.0,
            "initializer_range": 0.02,
            "use_cache": true,
            "torch_dtype": torch_dtype,
            TOKENIZER_VOCAB_FIELD: self.vocab_size,
        })
    }

    /// Reads an HF GPT-NeoX `config.json`, rejecting variants this architecture does not implement
    /// (sequential residual, tied embeddings, other activations, bias-free attention).
    pub fn read_hf_config(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: path.to_owned(),
            source,
        })?;
        Self::from_hf_config(&value, path)
    }

    /// Converts a parsed HF GPT-NeoX config; `path` only labels errors.
    pub fn from_hf_config(value: &Value, path: &Path) -> Result<Self> {
        let fields = HfFields { value, path };
        if let Some(model_type) = fields.optional_str("model_type")?
            && model_type != "gpt_neox"
        {
            return Err(fields.error(
                "model_type",
                format!("is `{model_type}`, expected `gpt_neox`"),
            ));
        }
        fields.expect_bool("use_parallel_residual", true)?;
        fields.expect_bool("tie_word_embeddings", false)?;
        fields.expect_bool("attention_bias", true)?;
        if let Some(activation) = fields.optional_str("hidden_act")?
            && activation != "gelu"
        {
            return Err(fields.error(
                "hidden_act",
                format!("is `{activation}`; only exact `gelu` is implemented"),
            ));
        }
        let padded_vocab = fields.usize("vocab_size")?;
        let config = Self {
            vocab_size: fields
                .optional_usize(TOKENIZER_VOCAB_FIELD)?
                .unwrap_or(padded_vocab),
            n_layers: fields.usize("num_hidden_layers")?,
            d_model: fields.usize("hidden_size")?,
            n_heads: fields.usize("num_attention_heads")?,
            d_ff: fields.usize("intermediate_size")?,
            max_seq_len: fields
                .optional_usize("max_position_embeddings")?
                .unwrap_or(2048),
            rotary_pct: match fields.optional_f64("rotary_pct")? {
                Some(pct) => pct,
                None => fields
                    .optional_f64("partial_rotary_factor")?
                    .unwrap_or(0.25),
            },
            rotary_base: match fields.optional_f64("rotary_emb_base")? {
                Some(base) => base,
                None => fields.optional_f64("rope_theta")?.unwrap_or(10_000.0),
            },
            layer_norm_eps: fields.optional_f64("layer_norm_eps")?.unwrap_or(1e-5),
        };
        if config.padded_vocab_size() != padded_vocab {
            return Err(fields.error(
                "vocab_size",
                format!(
                    "{padded_vocab} embedding rows, but a tokenizer of {} pads to {}",
                    config.vocab_size,
                    config.padded_vocab_size()
                ),
            ));
        }
        config.validate()?;
        Ok(config)
    }
}

/// Typed access to the fields of an HF config, with errors that name the field.
struct HfFields<'a> {
    value: &'a Value,
    path: &'a Path,
}

impl HfFields<'_> {
    fn error(&self, field: &str, reason: String) -> ModelError {
        ModelError::HfConfig {
            path: PathBuf::from(self.path),
            field: field.to_owned(),
            reason,
        }
    }

    fn get(&self, field: &str) -> Option<&Value> {
        self.value.get(field).filter(|value| !value.is_null())
    }

    fn optional_usize(&self, field: &str) -> Result<Option<usize>> {
        self.get(field)
            .map(|value| {
                value
                    .as_u64()
                    .and_then(|number| usize::try_from(number).ok())
                    .ok_or_else(|| {
                        self.error(
                            field,
                            format!("is {value}, expected a non-negative integer"),
                        )
                    })
            })
            .transpose()
    }

    fn usize(&self, field: &str) -> Result<usize> {
        self.optional_usize(field)?
            .ok_or_else(|| self.error(field, "is missing".to_owned()))
    }

    fn optional_f64(&self, field: &str) -> Result<Option<f64>> {
        self.get(field)
            .map(|value| {
                value
                    .as_f64()
                    .ok_or_else(|| self.error(field, format!("is {value}, expected a number")))
            })
            .transpose()
    }

    fn optional_str(&self, field: &str) -> Result<Option<&str>> {
        self.get(field)
            .map(|value| {
                value
                    .as_str()
                    .ok_or_else(|| self.error(field, format!("is {value}, expected a string")))
            })
            .transpose()
    }

    /// Accepts the field when absent (HF's default equals `expected`) or equal to `expected`.
    fn expect_bool(&self, field: &str, expected: bool) -> Result<()> {
        match self.get(field) {
            None => Ok(()),
            Some(Value::Bool(found)) if *found == expected => Ok(()),
            Some(found) => Err(self.error(
                field,
                format!("is {found}; mixlab implements only `{expected}`"),
            )),
        }
    }
}
