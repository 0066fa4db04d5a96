//! Training throughput of the model presets: forward + backward + global-norm clip + AdamW.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo bench -p mixlab-model --bench train_step -- [--device cpu|tch-cpu|cuda[:N]]
//!     [--bf16] [--batch N] [--warmup N] [--steps N] [--matmul-size N]
//!     [--save-init FILE] [--init-from FILE] [--losses FILE] [PRESET ...]
//! ```
//!
//! Presets default to `tiny small`. Each line reports tokens/s (median step), model FLOP/s, their
//! share of the measured matrix-product rate on the same device (model-FLOPs utilisation), and
//! the peak resident memory of the process during that preset.
//!
//! For comparing precisions (scripts/gpu-bench.sh), with one preset: `--save-init` writes the
//! initial weights (HF safetensors), `--init-from` starts from such a file instead of the seeded
//! initialisation, and `--losses` writes every step's loss, one `STEP LOSS` line per step.

use std::process::ExitCode;

use mixlab_model::{
    CpuTrainBackend, CudaTrainBackend, DeviceSpec, ModelConfig, Precision, TrainBackend,
    TrainBenchConfig, bench_training, cpu_device, cuda_device, matmul_flops_per_second,
};

struct Args {
    device: DeviceSpec,
    precision: Precision,
    bench: TrainBenchConfig,
    matmul_size: Option<usize>,
    /// Where to write every step's loss (one preset only).
    losses: Option<std::path::PathBuf>,
    presets: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        device: DeviceSpec::Cpu,
        precision: Precision::F32,
        bench: TrainBenchConfig::default(),
        matmul_size: None,
        losses: None,
        presets: Vec::new(),
    };
    let mut raw = std::env::args().skip(1);
    let number = |flag: &str, value: Option<String>| -> Result<usize, String> {
        value
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| format!("{flag} needs a number"))
    };
    let path = |flag: &str, value: Option<String>| -> Result<std::path::PathBuf, String> {
        value
            .map(Into::into)
            .ok_or_else(|| format!("{flag} needs a file"))
    };
    while let Some(arg) = raw.next() {
        match arg.as_str() {
            // cargo bench passes --bench to every bench target.
            "--bench" => {}
            "--device" => {
                let spec = raw.next().ok_or("--device needs a value")?;
                args.device = spec.parse().map_err(|error| format!("{error}"))?;
            }
            "--bf16" => args.precision = Precision::Bf16,
            "--batch" => args.bench.batch_size = number("--batch", raw.next())?,
            "--warmup" => args.bench.warmup_steps = number("--warmup", raw.next())?,
            "--steps" => args.bench.measured_steps = number("--steps", raw.next())?,
            "--matmul-size" => args.matmul_size = Some(number("--matmul-size", raw.next())?),
            "--save-init" => args.bench.save_init = Some(path("--save-init", raw.next())?),
            "--init-from" => args.bench.init_from = Some(path("--init-from", raw.next())?),
            "--losses" => args.losses = Some(path("--losses", raw.next())?),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            preset => args.presets.push(preset.to_owned()),
        }
    }
    if args.presets.is_empty() {
        args.presets = vec!["tiny".to_owned(), "small".to_owned()];
    }
    let per_preset =
        args.bench.save_init.is_some() || args.bench.init_from.is_some() || args.losses.is_some();
    if per_preset && args.presets.len() != 1 {
        return Err("--save-init, --init-from and --losses take exactly one preset".to_owned());
    }
    Ok(args)
}

fn run<B: TrainBackend>(
    args: &Args,
    device: B::Device,
    default_matmul_size: usize,
) -> Result<(), String> {
    let matmul_size = args.matmul_size.unwrap_or(default_matmul_size);
    let matmul_rate = matmul_flops_per_second::<B::InnerBackend>(&device, matmul_size, 5);
    println!(
        "device {} ({:?}), rayon threads {}, matmul {matmul_size}^3: {:.1} GFLOP/s",
        args.device,
        args.precision,
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".to_owned()),
        matmul_rate / 1e9
    );
    for name in &args.presets {
        let config = ModelConfig::preset(name).map_err(|error| error.to_string())?;
        let report = bench_training::<B>(&config, &args.bench, &device)
            .map_err(|error| error.to_string())?;
        let peak = report
            .peak_rss_bytes
            .map(|bytes| format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0)))
            .unwrap_or_else(|| "n/a".to_owned());
        println!(
            "{name:<12} params {:>13}  batch {} x {} tokens  step {:.3} s  {:>9.0} tokens/s  \
             {:.2} model GFLOP/s ({:.1}% of matmul)  peak RSS {peak}  loss {:.3} -> {:.3}",
            report.params,
            args.bench.batch_size,
            report.tokens_per_step / args.bench.batch_size,
            report.median_step_seconds,
            report.tokens_per_second,
            report.model_flops_per_second / 1e9,
            100.0 * report.model_flops_per_second / matmul_rate,
            report.loss_first_last.0,
            report.loss_first_last.1,
        );
        if let Some(path) = &args.losses {
            let lines: String = report
                .losses
                .iter()
                .enumerate()
                .map(|(step, loss)| format!("{} {loss}\n", step + 1))
                .collect();
            // Whole or not at all: a comparison never reads a truncated curve.
            mixlab_atomic::write_file(path, lines)
                .map_err(|error| format!("writing {}: {error}", path.display()))?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // As the experiments binary does (`MIXLAB_MALLOC=default` measures without it).
    println!("{}", mixlab_malloc::keep_freed_memory());
    let result = parse_args().and_then(|args| match args.device {
        DeviceSpec::Cpu | DeviceSpec::TchCpu if args.precision == Precision::Bf16 => {
            Err("--bf16 is for CUDA; the CPU benchmark runs in f32".to_owned())
        }
        DeviceSpec::Cpu => run::<CpuTrainBackend>(&args, cpu_device(), 1024),
        #[cfg(feature = "tch")]
        DeviceSpec::TchCpu => {
            run::<mixlab_model::TchTrainBackend>(&args, mixlab_model::tch_cpu_device(), 1024)
        }
        #[cfg(not(feature = "tch"))]
        DeviceSpec::TchCpu => Err(mixlab_model::ModelError::TchNotBuilt.to_string()),
        DeviceSpec::Cuda(index) => {
            let device = cuda_device(index, args.precision).map_err(|error| error.to_string())?;
            run::<CudaTrainBackend>(&args, device, 8192)
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
