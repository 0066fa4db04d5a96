//! Running tasks on a few threads, each after the tasks it waits for, the chains with the most
//! work first.

use crate::error::{Result, StudyError};

/// Where one task of [`run_in_parallel`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Waiting,
    Running,
    Done,
    Failed,
}

/// Runs tasks `0..waits_for.len()` on `jobs` threads, task `i` only after the tasks in
/// `waits_for[i]` succeeded. Of the ready tasks, the one heading the chain with the most work
/// (`costs[i]`, the task's expected work, added along the tasks waiting on it) goes first, then
/// the lowest index: on few cores the DoReMi chain (reference, proxy, main run) would otherwise
/// start its proxy only after every independent run and finish last alone, and the longest
/// run (Aioli's) would start last and end alone. With equal costs that is the longest chain in
/// tasks. `announce(n, i)` as task `i` starts as the `n`-th. `running(tasks)` whenever the set
/// of running tasks changes, with the tasks in the order they started: as a task starts (before
/// its `work` is called), and after a task ends once no task starts in its place; the caller
/// shares the cores among them.
/// After a failure (an error or a panic) no new task starts and those under way finish.
/// Returns the failures in the order they happened, with their task index.
pub(super) fn run_in_parallel(
    waits_for: &[Vec<usize>],
    costs: &[u64],
    jobs: usize,
    announce: impl Fn(usize, usize) + Sync,
    running: impl Fn(&[usize]) + Sync,
    work: impl Fn(usize) -> Result<()> + Sync,
) -> Vec<(usize, StudyError)> {
    struct Board {
        states: Vec<TaskState>,
        errors: Vec<(usize, StudyError)>,
        started: usize,
        /// The running tasks, in the order they started.
        running: Vec<usize>,
        /// The running set `running` was last called with.
        reported: Vec<usize>,
    }
    let total = waits_for.len();
    let board = std::sync::Mutex::new(Board {
        states: vec![TaskState::Waiting; total],
        errors: Vec::new(),
        started: 0,
        running: Vec::new(),
        reported: Vec::new(),
    });
    let chain = chain_costs(waits_for, costs);
    let changed = std::sync::Condvar::new();
    let lock = || {
        board
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    // A task's end is reported only once no other task starts in its place, so that a run
    // left alone is not given every core for the moment before its next neighbour starts.
    let report = |board: &mut Board| {
        if board.running != board.reported {
            running(&board.running);
            board.reported.clone_from(&board.running);
        }
    };
    let next = || -> Option<usize> {
        let mut guard = lock();
        loop {
            if !guard.errors.is_empty() {
                return None;
            }
            let states = &guard.states;
            let ready = (0..total)
                .filter(|&i| {
                    states[i] == TaskState::Waiting
                        && waits_for[i].iter().all(|&d| states[d] == TaskState::Done)
                })
                .max_by_key(|&i| (chain[i], std::cmp::Reverse(i)));
            if let Some(i) = ready {
                guard.states[i] = TaskState::Running;
                guard.started += 1;
                guard.running.push(i);
                report(&mut guard);
                announce(guard.started, i);
                return Some(i);
            }
            if !guard.states.contains(&TaskState::Running) {
                return None;
            }
            report(&mut guard);
            guard = changed
                .wait(guard)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, total.max(1)) {
            scope.spawn(|| {
                while let Some(i) = next() {
                    // A panic (burn panics on some device errors) must still end the task, or
                    // the tasks waiting for it would wait forever.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(i)))
                        .unwrap_or_else(|panic| {
                            let what = panic
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| panic.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "a panic".into());
                            Err(StudyError::Failed(format!("panicked: {what}")))
                        });
                    let mut guard = lock();
                    guard.running.retain(|&r| r != i);
                    match result {
                        Ok(()) => guard.states[i] = TaskState::Done,
                        Err(e) => {
                            guard.states[i] = TaskState::Failed;
                            guard.errors.push((i, e));
                        }
                    }
                    changed.notify_all();
                }
            });
        }
    });
    board
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .errors
}

/// For each task, the most work along a chain that starts with it: its own cost plus the most
/// of the tasks waiting for it (theirs, and so on). With every cost 1, the tasks in the longest
/// chain.
fn chain_costs(waits_for: &[Vec<usize>], costs: &[u64]) -> Vec<u64> {
    assert_eq!(waits_for.len(), costs.len(), "one cost per task");
    let mut chain = costs.to_vec();
    // Each pass lengthens chains by at least one link; a chain has at most `len` tasks.
    for _ in 0..waits_for.len() {
        let mut changed = false;
        for (i, deps) in waits_for.iter().enumerate() {
            for &d in deps {
                let through = costs[d].saturating_add(chain[i]);
                if chain[d] < through {
                    chain[d] = through;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::bail;

    /// Task events in the order they happened: (task, started?).
    type Events = std::sync::Mutex<Vec<(usize, bool)>>;

    fn position(events: &[(usize, bool)], task: usize, start: bool) -> Option<usize> {
        events.iter().position(|&e| e == (task, start))
    }

    #[test]
    fn parallel_tasks_wait_for_their_dependency_and_all_run() {
        // 0 -> 1 -> 2 is a chain (reference, proxy, main run); 3 and 4 are free.
        let waits_for = [vec![], vec![0], vec![1], vec![], vec![]];
        let events = Events::default();
        let announced = std::sync::Mutex::new(Vec::new());
        let errors = run_in_parallel(
            &waits_for,
            &[1; 5],
            3,
            |n, i| announced.lock().unwrap().push((n, i)),
            |_| {},
            |i| {
                events.lock().unwrap().push((i, true));
                std::thread::sleep(std::time::Duration::from_millis(20));
                events.lock().unwrap().push((i, false));
                Ok(())
            },
        );
        assert!(errors.is_empty());
        let events = events.into_inner().unwrap();
        assert_eq!(events.len(), 10, "every task ran once: {events:?}");
        for (task, dep) in [(1, 0), (2, 1)] {
            assert!(
                position(&events, dep, false) < position(&events, task, true),
                "{task} started before {dep} ended: {events:?}"
            );
        }
        let announced = announced.into_inner().unwrap();
        let numbers: Vec<usize> = announced.iter().map(|&(n, _)| n).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5]);
        assert_eq!(
            announced[0],
            (1, 0),
            "the head of the longest chain goes first"
        );
    }

    /// The order one thread runs `waits_for` in, with these costs.
    fn order(waits_for: &[Vec<usize>], costs: &[u64]) -> Vec<usize> {
        let order = std::sync::Mutex::new(Vec::new());
        let errors = run_in_parallel(
            waits_for,
            costs,
            1,
            |_, i| order.lock().unwrap().push(i),
            |_| {},
            |_| Ok(()),
        );
        assert!(errors.is_empty());
        order.into_inner().unwrap()
    }

    #[test]
    fn the_longest_chain_starts_first() {
        // The reproduce plan's shape: tpw, two free runs, then the proxy (after tpw) and DoReMi
        // (after the proxy).
        let waits_for = [vec![], vec![], vec![], vec![0], vec![3]];
        let ones = [1; 5];
        assert_eq!(chain_costs(&waits_for, &ones), [3, 1, 1, 2, 1]);
        assert_eq!(chain_costs(&[vec![], vec![0], vec![0]], &[1; 3]), [2, 1, 1]);
        // A run waiting for two: both heads lengthen.
        assert_eq!(
            chain_costs(&[vec![], vec![], vec![0, 1]], &[1; 3]),
            [2, 2, 1]
        );
        // One thread shows the order: the proxy right after its reference, then by index.
        assert_eq!(order(&waits_for, &ones), [0, 3, 1, 2, 4]);
    }

    #[test]
    fn the_chain_with_the_most_work_starts_first() {
        // The same shape, where free run 2 costs more than the whole chain (`quick`'s Aioli
        // against TPW, the proxy and DoReMi): it goes first, then the chain, then run 1.
        let waits_for = [vec![], vec![], vec![], vec![0], vec![3]];
        let costs = [10, 10, 40, 13, 10];
        assert_eq!(chain_costs(&waits_for, &costs), [33, 10, 40, 23, 10]);
        assert_eq!(order(&waits_for, &costs), [2, 0, 3, 1, 4]);
        // Through the longer of two branches: 0 -> {1, 2}, 2 -> 3.
        let waits_for = [vec![], vec![0], vec![0], vec![2]];
        assert_eq!(chain_costs(&waits_for, &[1, 50, 20, 20]), [51, 50, 40, 20]);
    }

    #[test]
    fn a_failure_or_panic_stops_new_tasks_and_skips_its_dependents() {
        for panics in [false, true] {
            let waits_for = [vec![], vec![0], vec![]];
            let ran = std::sync::Mutex::new(Vec::new());
            let errors = run_in_parallel(
                &waits_for,
                &[1; 3],
                2,
                |_, _| {},
                |_| {},
                |i| {
                    ran.lock().unwrap().push(i);
                    if i == 0 {
                        if panics {
                            panic!("device lost");
                        }
                        bail!("bad config");
                    }
                    Ok(())
                },
            );
            let ran = ran.into_inner().unwrap();
            assert!(
                !ran.contains(&1),
                "the dependent of a failed task ran: {ran:?}"
            );
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].0, 0);
            let message = errors[0].1.to_string();
            let expected = if panics {
                "panicked: device lost"
            } else {
                "bad config"
            };
            assert_eq!(message, expected);
        }
    }

    /// The running sets `run_in_parallel` reports for `waits_for` on two threads, where task 0
    /// takes 150 ms and every other task 10 ms.
    fn running_sets(waits_for: &[Vec<usize>]) -> Vec<Vec<usize>> {
        let sets = std::sync::Mutex::new(Vec::new());
        let errors = run_in_parallel(
            waits_for,
            &vec![1; waits_for.len()],
            2,
            |_, _| {},
            |running| sets.lock().unwrap().push(running.to_vec()),
            |i| {
                let ms = if i == 0 { 150 } else { 10 };
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(())
            },
        );
        assert!(errors.is_empty());
        sets.into_inner().unwrap()
    }

    #[test]
    fn the_running_set_is_reported_as_tasks_start_and_end() {
        // A chain 0 -> 1 and a free task 2: 0 and 2 start together; when 2 ends first, 0 runs
        // alone (its share grows), then 1 starts after 0 and runs alone.
        assert_eq!(
            running_sets(&[vec![], vec![0], vec![]]),
            [vec![0], vec![0, 2], vec![0], vec![1]],
            "starts and ends, with the running tasks in start order"
        );
        // Three free tasks: when 1 ends, 2 starts in its place, and 0 is not reported alone in
        // between (it would be given every core for a moment).
        assert_eq!(
            running_sets(&[vec![], vec![], vec![]]),
            [vec![0], vec![0, 1], vec![0, 2], vec![0]]
        );
    }
}
