//! The compute threads of a run, which its owner may change while it runs.
//!
//! burn's CPU backend and gemm split work over rayon's thread pool, whose size is fixed when
//! the process starts. A run of `reproduce --jobs 2` on two cores starts with one thread (the
//! other core trains the other run); when the other run ends and nothing else is left to
//! start, this run should take both cores. [`ThreadBudget`] runs each piece of work (a step, a
//! validation) in a pool of the budget's current size, so a change applies from the next
//! piece on. The numbers do not depend on the thread count: the kernels split work by rows and
//! output blocks, never a sum, and a test trains with the count changing every step.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How many compute threads a run may use now; cheap to clone (clones share the budget).
#[derive(Clone)]
pub struct ThreadBudget {
    inner: Arc<Inner>,
}

struct Inner {
    threads: AtomicUsize,
    /// One pool per size used so far: pools are kept, as starting threads for every step
    /// would cost more than the step's parallel sections save on a small model.
    pools: Mutex<BTreeMap<usize, Arc<rayon::ThreadPool>>>,
}

impl std::fmt::Debug for ThreadBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadBudget")
            .field("threads", &self.threads())
            .finish()
    }
}

impl ThreadBudget {
    /// A budget of `threads` (at least one).
    pub fn new(threads: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                threads: AtomicUsize::new(threads.max(1)),
                pools: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// A budget of the process's global rayon pool's size (`RAYON_NUM_THREADS`, else one thread
    /// per core): for a run that has the machine to itself, so that its work runs inside a
    /// pool rather than being handed to the global pool one operation at a time.
    pub fn global() -> Self {
        Self::new(rayon::current_num_threads())
    }

    /// Changes the budget (at least one thread); work already under way keeps its pool.
    pub fn set(&self, threads: usize) {
        self.inner.threads.store(threads.max(1), Ordering::SeqCst);
    }

    /// The current budget.
    pub fn threads(&self) -> usize {
        self.inner.threads.load(Ordering::SeqCst)
    }

    /// Runs `f` in a pool of the current budget's size: rayon's parallel work inside it (burn's
    /// CPU kernels, gemm) uses that many threads. If a pool cannot be started (the OS refused a
    /// thread), `f` runs in the process's global pool instead, which changes only the speed.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match self.pool(self.threads()) {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    fn pool(&self, threads: usize) -> Option<Arc<rayon::ThreadPool>> {
        // A panic elsewhere cannot leave the map of pools half-changed.
        let mut pools = self
            .inner
            .pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(pool) = pools.get(&threads) {
            return Some(pool.clone());
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("compute-{threads}-{i}"))
            .build()
            .map_err(|e| tracing::warn!("starting {threads} compute threads: {e}"))
            .ok()?;
        let pool = Arc::new(pool);
        pools.insert(threads, pool.clone());
        Some(pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_global_budget_is_the_global_pools_size_and_runs_on_a_pool_thread() {
        let budget = ThreadBudget::global();
        assert_eq!(budget.threads(), rayon::current_num_threads());
        // The point of running inside a pool: the work starts on one of its threads.
        assert!(rayon::current_thread_index().is_none());
        assert!(budget.install(rayon::current_thread_index).is_some());
    }

    #[test]
    fn work_runs_with_the_budget_current_when_it_starts() {
        let budget = ThreadBudget::new(0);
        assert_eq!(budget.threads(), 1, "at least one thread");
        assert_eq!(budget.install(rayon::current_num_threads), 1);
        budget.set(3);
        assert_eq!(budget.install(rayon::current_num_threads), 3);
        let clone = budget.clone();
        clone.set(2);
        assert_eq!(budget.install(rayon::current_num_threads), 2);
        budget.set(3);
        assert_eq!(
            budget.install(rayon::current_num_threads),
            3,
            "pools are kept"
        );
    }
}
