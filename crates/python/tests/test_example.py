"""examples/pytorch/train_odm.py under torchrun: two ranks decide alike, equal one process, resume exactly.

    MIXLAB_DATASET=DIR python crates/python/tests/test_example.py   (from the repository root)

DIR is a prepared mixlab dataset (`crates/experiments/tests/python_package.rs` makes one and
calls this file). Trains the example three ways for 20 steps on CPU: in one process (two
DataLoader workers), under `torchrun --nproc_per_node 2` (gloo), and under torchrun again but
killed with SIGKILL after its step-10 checkpoint and started again with the same command.
"""

import importlib.util
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "pytorch" / "train_odm.py"
STEPS = 20
# The released code's rule: its weights follow the losses from the first step, so the ranks'
# agreement is tested on moving numbers (the paper's rule stays uniform while eps_t = 1/K, the
# first 26 steps with these 11 domains).
MIXER = 'kind = "odm"\nrule = "reference-code"\ninitial_weights = { temperature = 1.0 }'
MISSING = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]


def command(out, ranks):
    args = [str(EXAMPLE), "--dataset", os.environ["MIXLAB_DATASET"], "--out", str(out),
            "--steps", str(STEPS), "--micro-batches", "4", "--micro-batch-size", "4",
            "--checkpoint-every", "5", "--lr", "3e-3", "--mixer", MIXER]
    if ranks == 1:
        return [sys.executable] + args + ["--workers", "2"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={ranks}"] + args


def descendants(pid):
    """Every process below `pid` (torchrun starts its ranks in sessions of their own)."""
    found = []
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child] + descendants(child)
    return found


def read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def numbers(line):
    """What must repeat exactly in a rerun: everything but the timings."""
    return {k: v for k, v in line.items() if k != "seconds"}


@unittest.skipUnless("MIXLAB_DATASET" in os.environ, "set MIXLAB_DATASET")
@unittest.skipIf(MISSING, f"{', '.join(MISSING)} not installed (pip install torch transformers)")
class TrainOdmExample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        tmp = pathlib.Path(cls.tmp.name)
        cls.one, cls.two, cls.killed = tmp / "one", tmp / "two", tmp / "killed"
        for out, ranks in ((cls.one, 1), (cls.two, 2)):
            subprocess.run(command(out, ranks), check=True, cwd=ROOT)
        # The same two-rank run, killed hard once its step-10 checkpoint is written and a few
        # steps are past it, then started again with the same command.
        run = subprocess.Popen(command(cls.killed, 2), cwd=ROOT)
        log = cls.killed / "steps-rank0.jsonl"
        deadline = time.monotonic() + 600
        while not (log.exists() and len(log.read_text().splitlines()) >= 12):
            if run.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the run to kill ended or stalled before step 12")
            time.sleep(0.05)
        # The whole job at once, as a crashed machine would stop it.
        for pid in [run.pid] + descendants(run.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        run.wait()
        cls.cut_at = len(log.read_text().splitlines())
        cls.resumed = subprocess.run(command(cls.killed, 2), check=True, cwd=ROOT,
                                     capture_output=True, text=True).stdout

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_both_ranks_hold_the_same_weights_at_every_step(self):
        ranks = [read_log(self.two / f"steps-rank{r}.jsonl") for r in (0, 1)]
        self.assertEqual(len(ranks[0]), STEPS)
        self.assertEqual([l["step"] for l in ranks[0]], list(range(1, STEPS + 1)))
        for a, b in zip(*ranks):
            self.assertEqual(a["weights"], b["weights"], f"step {a['step']}")
            self.assertEqual(a["loss"], b["loss"], f"step {a['step']}")
        first, last = ranks[0][0]["weights"], ranks[0][-1]["weights"]
        self.assertNotEqual(first, last, "ODM moved the mixture, so the comparison means something")

    def test_two_ranks_equal_one_process_over_the_same_batches(self):
        one = read_log(self.one / "steps-rank0.jsonl")
        two = [read_log(self.two / f"steps-rank{r}.jsonl") for r in (0, 1)]
        self.assertEqual(len(one), STEPS)
        for step, a in enumerate(one):
            b = two[0][step]
            # Rank 0 drew the step's first micro-batches, rank 1 the rest: the same global batch.
            self.assertEqual(a["domains"], b["domains"] + two[1][step]["domains"])
            # Float sums in another order (DDP's mean of two halves) are the only difference.
            for name, w in a["weights"].items():
                self.assertAlmostEqual(w, b["weights"][name], delta=1e-6,
                                       msg=f"step {a['step']} {name}")
            self.assertAlmostEqual(a["loss"], b["loss"], delta=1e-5 * a["loss"])

    def test_a_killed_run_resumes_exactly(self):
        self.assertGreaterEqual(self.cut_at, 12)
        # Killed at step 12 or later: the last checkpoint is step 10's (or 15's, had it got so far).
        self.assertRegex(self.resumed, r"resuming from .* at step (10|15)\n")
        for r in (0, 1):
            whole = read_log(self.two / f"steps-rank{r}.jsonl")
            again = read_log(self.killed / f"steps-rank{r}.jsonl")
            self.assertEqual([numbers(l) for l in again], [numbers(l) for l in whole], f"rank {r}")

    def test_a_checkpoint_of_another_run_is_refused(self):
        args = command(self.one, 1)
        args[args.index("--lr") + 1] = "1e-3"
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("belongs to another run: lr was 0.003, now 0.001", done.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
