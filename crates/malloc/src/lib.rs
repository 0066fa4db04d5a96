//! Keep freed memory in the process's heap while training on a CPU.
//!
//! burn's CPU backend allocates a fresh buffer for nearly every intermediate tensor of a training
//! step (activations, gradients, the [batch, seq, vocab] logits), and frees it a few operations
//! later. glibc serves every block above its mmap threshold (128 KiB to start, adapting up to
//! 32 MiB) with a fresh `mmap`, and returns it to the kernel on `free`; the kernel then has to fault
//! in and zero every page again on the next step. A `perf` profile of the `tiny` training step
//! put 17% of the samples under tensor allocation, 4-7% of them in page faults and page clearing
//! (`../shared/burn-notes.md`, 2026-12-06).
//!
//! [`keep_freed_memory`] raises the mmap threshold to 32 MiB and the trim threshold to 1 GiB
//! (the same as `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824`),
//! so those blocks come from the heap and stay there for the next step. The process keeps its
//! peak heap instead of returning it between steps; nothing is computed differently (allocation
//! does not change any arithmetic), which the training tests check bit for bit.
//!
//! On targets other than Linux with glibc this does nothing and says so.

use std::fmt;
use std::sync::OnceLock;

/// The environment variable that turns the tuning off (`MIXLAB_MALLOC=default`), for side-by-side
/// measurements and for machines where the returned memory matters more than speed.
pub const ENV_VAR: &str = "MIXLAB_MALLOC";

/// glibc's mmap threshold after tuning: blocks below it come from the heap (bytes; 32 MiB is the
/// largest value glibc's own dynamic threshold would reach on 64-bit targets).
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// glibc's trim threshold after tuning: free memory at the top of the heap is returned to the kernel
/// only beyond this many bytes.
pub const TRIM_THRESHOLD: usize = 1 << 30;

/// What [`keep_freed_memory`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tuning {
    /// Both thresholds were set.
    Applied,
    /// Left alone on purpose, with the reason (opt-out variable, or the user's own
    /// `GLIBC_TUNABLES` for malloc).
    Skipped(String),
    /// Not glibc: nothing to tune.
    Unsupported,
    /// glibc refused a setting (mallopt returned 0).
    Refused(&'static str),
}

impl fmt::Display for Tuning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tuning::Applied => write!(
                f,
                "malloc keeps freed memory (mmap threshold {} MiB, trim threshold {} MiB; {ENV_VAR}=default turns this off)",
                MMAP_THRESHOLD >> 20,
                TRIM_THRESHOLD >> 20
            ),
            Tuning::Skipped(reason) => write!(f, "malloc left at its defaults: {reason}"),
            Tuning::Unsupported => write!(f, "malloc left at its defaults (not glibc)"),
            Tuning::Refused(what) => write!(f, "malloc left at its defaults: glibc refused {what}"),
        }
    }
}

/// Decide from the environment whether to tune: `Some(reason)` when the tuning is to be skipped.
fn skip_reason(opt_out: Option<&str>, glibc_tunables: Option<&str>) -> Option<String> {
    if let Some(value) = opt_out
        && value != "keep"
    {
        return Some(format!("{ENV_VAR}={value}"));
    }
    if let Some(tunables) = glibc_tunables
        && tunables.contains("glibc.malloc.")
    {
        return Some("GLIBC_TUNABLES sets malloc's own parameters".to_owned());
    }
    None
}

/// Raise glibc's mmap and trim thresholds for this process (see the crate documentation), unless
/// `MIXLAB_MALLOC` is set to anything but `keep` or `GLIBC_TUNABLES` already tunes malloc. Call it
/// at start-up, before the first large allocation; later calls return the first call's outcome
/// without touching malloc again.
pub fn keep_freed_memory() -> Tuning {
    static OUTCOME: OnceLock<Tuning> = OnceLock::new();
    OUTCOME.get_or_init(tune).clone()
}

fn tune() -> Tuning {
    let opt_out = std::env::var(ENV_VAR).ok();
    let tunables = std::env::var("GLIBC_TUNABLES").ok();
    if let Some(reason) = skip_reason(opt_out.as_deref(), tunables.as_deref()) {
        return Tuning::Skipped(reason);
    }
    set_thresholds()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> Tuning {
    // Both values fit a c_int (32 MiB and 1 GiB).
    let settings = [
        (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD, "the mmap threshold"),
        (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD, "the trim threshold"),
    ];
    for (param, value, what) in settings {
        let value = libc::c_int::try_from(value).expect("threshold fits a C int");
        // SAFETY: mallopt only updates malloc's tuning parameters under its own lock; it takes two
        // integers and touches no memory of ours.
        #[allow(unsafe_code)]
        let ok = unsafe { libc::mallopt(param, value) };
        if ok == 0 {
            return Tuning::Refused(what);
        }
    }
    Tuning::Applied
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> Tuning {
    Tuning::Unsupported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_out_and_user_tunables_are_respected() {
        assert_eq!(skip_reason(None, None), None);
        assert_eq!(skip_reason(Some("keep"), None), None);
        assert_eq!(
            skip_reason(Some("default"), None),
            Some("MIXLAB_MALLOC=default".to_owned())
        );
        assert_eq!(
            skip_reason(None, Some("glibc.malloc.mmap_threshold=1000")),
            Some("GLIBC_TUNABLES sets malloc's own parameters".to_owned())
        );
        // Tunables of other glibc parts leave malloc to us.
        assert_eq!(skip_reason(None, Some("glibc.cpu.hwcaps=-AVX2")), None);
    }
}
