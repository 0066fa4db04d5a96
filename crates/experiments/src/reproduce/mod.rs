//! `reproduce` (the paper's comparison: TPW, DoReMi, ODM, uniform), `ablate-exploration` (ODM's
//! exploration schedule, smoothing and sampling granularity) and `report`: their arguments and
//! what they print. The plan, its runs and the report are the `mixlab-study` library's.

use std::path::PathBuf;

use anyhow::{Result, bail};
use mixlab_model::DeviceSpec;
pub use mixlab_study::PlanKind;
use mixlab_study::run::default_jobs;
use mixlab_study::{
    ChildCommand, Plan, PlanChange, PlanRequest, RunSettings, build_plan, default_out, reference,
    report, run_plan, save_plan, write_atomic,
};

/// Arguments shared by `reproduce` and `ablate-exploration`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// `smoke` (minutes, a pipeline check), `quick` (160 steps, ~6 min on 2 CPU cores), `tiny`
    /// (2,000 steps) or `paper-1b` (GPU). Default: `tiny` for `reproduce`; `quick` for
    /// `ablate-exploration` (at `tiny` it trains nine runs of 2,000 steps).
    #[arg(long)]
    pub preset: Option<String>,
    /// A Pile-format corpus (prepared here with the preset's tokenizer) or a prepared dataset
    /// (with manifest.json). Default: the built-in synthetic corpus, generated on first use.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A tokenizer.json for preparing `--data` (default: the preset's, `train:4096`).
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// Multiple-choice benchmark in the hendrycks/test layout (e.g. MMLU). Default: the
    /// synthetic corpus's own set; none for `--data` without `--mmlu`.
    #[arg(long)]
    pub mmlu: Option<PathBuf>,
    /// Test questions per subject (default: the preset's; 0 = all).
    #[arg(long)]
    pub mc_limit: Option<usize>,
    /// Seeds per method (42, 1234, 100, 222 as in the paper's scripts, then 1000, 1001, ...).
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// Optimizer steps of every run (default: the preset's); warm-ups stay 1% and 2%, and
    /// validation keeps the preset's number of points per run.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Only these methods (comma-separated ids; dependencies are added).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// A method of your own, as data (TOML: id, label, about, `[mixer]`, optional
    /// `[dataset_weights]` and `[training]`; see docs/adding-a-mixer.md), added after the built-in
    /// ones. Repeat for several; give it again when resuming.
    #[arg(long = "method-file", value_name = "FILE")]
    pub method_files: Vec<PathBuf>,
    /// `cpu`, `tch-cpu` (builds with `--features tch`), `cuda` or `cuda:N` (default: the preset's).
    #[arg(long, conflicts_with = "devices")]
    pub device: Option<DeviceSpec>,
    /// Data parallelism on one machine: every run shares its steps' micro-batches among one
    /// worker per listed device (`cuda:0,cuda:1`; the first holds the model).
    #[arg(long, value_delimiter = ',')]
    pub devices: Option<Vec<DeviceSpec>>,
    /// Results directory (default: `runs/reproduce-<preset>` or `runs/ablate-exploration-<preset>`,
    /// which git ignores; the committed references under results/ change only when named here).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the synthetic corpus and prepared datasets go.
    #[arg(long, default_value = "data")]
    pub data_root: PathBuf,
    /// Runs at a time (default: one per CPU core on a CPU, one on a GPU). With more than one, each
    /// run is a child process with its share of the cores (a small model trains about as fast on
    /// one core as on two); every run's losses are the same as when it runs alone.
    #[arg(long)]
    pub jobs: Option<usize>,
}

impl Args {
    /// The preset asked for, or the default of `kind`.
    pub fn preset_name(&self, kind: PlanKind) -> &str {
        self.preset.as_deref().unwrap_or(kind.default_preset())
    }

    /// The plan request these arguments make for `kind`.
    pub fn request(&self, kind: PlanKind) -> PlanRequest {
        PlanRequest {
            kind,
            preset: self.preset_name(kind).to_string(),
            steps: self.steps,
            device: self.device,
            devices: self.devices.clone(),
            mc_limit: self.mc_limit,
            seeds: self.seeds,
            methods: self.methods.clone(),
            method_files: self.method_files.clone(),
            data: self.data.clone(),
            tokenizer: self.tokenizer.clone(),
            mmlu: self.mmlu.clone(),
            data_root: self.data_root.clone(),
        }
    }
}

/// Runs `reproduce` or `ablate-exploration`: plan, runs, evaluations, report.
pub fn run(kind: PlanKind, args: Args) -> Result<()> {
    let name = args.preset_name(kind);
    let out = args.out.clone().unwrap_or_else(|| default_out(kind, name));
    // Checked before planning, which may generate and prepare a corpus.
    if args.jobs == Some(0) {
        bail!("--jobs must be at least 1");
    }
    let mixers = crate::mixers::registry();
    let plan = build_plan(&args.request(kind), &mixers)?;
    std::fs::create_dir_all(&out)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
    // One `reproduce` per results directory while it runs (each run's directory is locked by
    // its own training as well).
    let _lock = mixlab_data::lock::DirLock::acquire(&out)?;
    if let PlanChange::AddsMethods(added) = save_plan(&out, &plan)? {
        eprintln!(
            "{}: adding {} to the saved plan (its finished runs are kept)",
            out.display(),
            added.join(", ")
        );
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let history = out.join("commands.txt");
    let mut previous = std::fs::read_to_string(&history).unwrap_or_default();
    previous.push_str(&command);
    previous.push('\n');
    write_atomic(&history, &previous)?;

    let settings = RunSettings {
        jobs: args
            .jobs
            .unwrap_or_else(|| default_jobs(plan.preset.device)),
        stop: crate::stop::stop_flag()?,
        mixers,
        child: ChildCommand::this_executable("reproduce-run")?,
    };
    eprintln!("results directory: {}", out.display());
    let reference = reference::find(&out, kind, name);
    if let Some(dir) = &reference {
        eprintln!(
            "its report will compare with the committed reference {}",
            dir.display()
        );
    }
    run_plan(&plan, &out, &settings)?;
    let written = report::write_report(&out, reference.as_deref())?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Arguments of the hidden `reproduce-run` subcommand (one job of `reproduce --jobs N`).
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The results directory (the plan itself comes as TOML on stdin).
    #[arg(long)]
    pub out: PathBuf,
    /// The method id of the run.
    #[arg(long)]
    pub method: String,
    /// The training seed of the run.
    #[arg(long)]
    pub seed: u64,
}

/// Runs `reproduce-run`: one job of the plan in `args.out`, as a child of `reproduce --jobs N`.
pub fn run_child(args: RunArgs) -> Result<()> {
    let stop = crate::stop::stop_flag()?;
    mixlab_study::run::child::run_child(
        &args.out,
        &args.method,
        args.seed,
        &stop,
        &crate::mixers::registry(),
    )?;
    Ok(())
}

/// Arguments of `report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A results directory written by `reproduce` or `ablate-exploration` (holds plan.json).
    pub dir: PathBuf,
    /// A results directory to compare with (default: the committed `results/<preset>` of the
    /// same kind, when it exists and is not DIR).
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Compare with no reference.
    #[arg(long, conflicts_with = "reference")]
    pub no_reference: bool,
}

/// Runs `report`: re-renders report.md and the figures from the files alone.
pub fn run_report(args: ReportArgs) -> Result<()> {
    let reference = if args.no_reference {
        None
    } else if let Some(dir) = args.reference {
        Some(dir)
    } else {
        let plan = Plan::load(&args.dir)?;
        reference::find(&args.dir, plan.kind, &plan.preset.name)
    };
    for path in report::write_report(&args.dir, reference.as_deref())? {
        println!("wrote {}", path.display());
    }
    Ok(())
}
