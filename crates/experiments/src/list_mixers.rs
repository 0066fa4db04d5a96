//! `experiments list-mixers`: the registered mixers, their parameters and the named weight tables.

use anyhow::{Result, bail};
use mixlab_mixing::NamedTable;
use serde_json::json;

use crate::mixers;

/// Arguments of `list-mixers`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this mixer kind.
    kind: Option<String>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Prints the registry.
pub fn run(args: Args) -> Result<()> {
    let registry = mixers::registry();
    let entries: Vec<_> = match &args.kind {
        Some(kind) => vec![*registry.get(kind)?],
        None => registry.entries().to_vec(),
    };
    if entries.is_empty() {
        bail!("no mixer is registered");
    }
    if args.json {
        let doc = json!({
            "mixers": entries.iter().map(|e| json!({
                "kind": e.kind,
                "summary": e.summary,
                "params": e.params,
            })).collect::<Vec<_>>(),
            "named_tables": NamedTable::ALL.iter().map(|t| json!({
                "name": t.name(),
                "description": t.description(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    for entry in &entries {
        println!("kind = \"{}\"\n    {}", entry.kind, entry.summary);
        for p in entry.params {
            println!("  {:<20} {}  (default: {})", p.name, p.type_name, p.default);
            println!(
                "  {:<20} {}",
                "",
                p.doc.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
        println!();
    }
    println!(
        "named weight tables (for `weights`, `initial_weights`, `sampling_weights`; also \"uniform\"):"
    );
    for t in NamedTable::ALL {
        println!("  {:<22} {}", t.name(), t.description());
    }
    Ok(())
}
