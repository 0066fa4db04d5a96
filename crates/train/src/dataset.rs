//! The run's dataset: opened, or generated (the built-in synthetic corpus) and prepared on first
//! use when the config says how; and the context a mixer is built with.

use mixlab_data::{DomainStore, OpenOptions, PrepareConfig, TokenizerSource};
use mixlab_mixing::{DomainSet, MixerContext};

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};

/// Opens the run's dataset, preparing it first when it is missing and the config says how.
pub fn open_dataset(config: &TrainConfig) -> Result<DomainStore> {
    let dir = &config.data.dataset;
    if !dir.join(mixlab_data::manifest::MANIFEST_FILE).is_file() {
        let Some(spec) = &config.data.prepare else {
            return Err(TrainError::config(
                "data.dataset",
                format!(
                    "{} is not a prepared dataset and [data.prepare] is absent",
                    dir.display()
                ),
            ));
        };
        if let Some(synthetic) = &spec.synthetic
            && !spec.corpus.exists()
        {
            tracing::info!(corpus = %spec.corpus.display(), seed = synthetic.seed, scale = synthetic.scale, "generating the built-in synthetic corpus");
            let generator = mixlab_data::synthetic::SyntheticConfig {
                seed: synthetic.seed,
                scale: synthetic.scale,
                ..Default::default()
            };
            mixlab_data::synthetic::generate_corpus(&generator, &spec.corpus, false)?;
        }
        tracing::info!(dataset = %dir.display(), corpus = %spec.corpus.display(), "preparing dataset on first use");
        let tokenizer: TokenizerSource = spec.tokenizer.parse()?;
        let mut prep = PrepareConfig::new(
            vec![spec.corpus.clone()],
            dir.clone(),
            tokenizer,
            spec.seq_len,
        );
        prep.progress = true;
        mixlab_data::prepare_dataset(&prep)?;
    }
    Ok(DomainStore::open(dir, &OpenOptions::default())?)
}

/// The mixer context of a dataset: its domains, training token counts and vocabulary.
pub fn mixer_context(store: &DomainStore) -> Result<MixerContext> {
    let names = store.domain_names();
    let domains = DomainSet::new(names.iter().map(String::as_str))?;
    let tokens = store.manifest().train_tokens();
    let counts = names.iter().map(|n| tokens[n]).collect();
    Ok(MixerContext::new(domains)
        .with_token_counts(counts)?
        .with_vocab_size(store.manifest().vocab_size))
}
