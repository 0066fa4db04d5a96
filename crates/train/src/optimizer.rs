//! The trainer's optimizer: AdamW with decoupled weight decay on weight matrices and embeddings
//! only, defined beside the model (`mixlab_model::DecoupledAdamW`) so that the training-step
//! benchmark runs it too.

pub use mixlab_model::{DecoupledAdamW, TrainOptimizer};
