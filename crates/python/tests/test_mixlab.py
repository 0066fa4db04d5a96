"""Tests of the `mixlab` Python package: run them from the repository root,

    python crates/python/tests/test_mixlab.py

with the package importable (`pip install ./crates/python`). The replay tests read the committed
runs of results/quick: every mixer, built in Python from the `[mixer]` table of a run's
config.toml, must take exactly the decisions (weights, DoReMi's loss weights) that mixlab's
trainer logged in that run's metrics.jsonl, step by step. `crates/experiments/tests/python_package.rs`
builds the package and runs this file from `cargo test` when maturin is installed.
"""

import importlib.util
import json
import math
import pathlib
import tempfile
import unittest

import mixlab

HAS_TORCH = importlib.util.find_spec("torch") is not None

RESULTS = pathlib.Path("results/quick/runs")
DOMAINS = ["Pile-CC", "Github", "ArXiv", "DM Mathematics"]
ODM = 'kind = "odm"\nrule = "paper"\nwarmup_steps = 2\ninitial_weights = "uniform"\n'


def lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def in_order(by_name, domains):
    return [by_name[name] for name in domains]


def feedback_arrays(feedback, domains):
    """A logged step's feedback (domain name -> sums and counts) as observe()'s arrays."""
    arrays = {key: [] for key in ("loss_sum", "loss_count", "sequences", "tokens", "excess_loss_sum", "excess_tokens")}
    for name in domains:
        record = feedback.get(name, {})
        count = record.get("loss_count", 0)
        loss_sum = record.get("loss_sum", record.get("loss_mean", 0.0) * count)
        arrays["loss_sum"].append(loss_sum)
        arrays["loss_count"].append(count)
        arrays["sequences"].append(record.get("sequences", 0))
        arrays["tokens"].append(record.get("tokens", 0))
        arrays["excess_loss_sum"].append(record.get("excess_loss_sum", 0.0))
        arrays["excess_tokens"].append(record.get("excess_tokens", 0))
    return arrays


def step_arrays(k, step):
    """Synthetic feedback: every domain drawn once, losses that differ by domain and fall."""
    return {
        "loss_sum": [3.0 + 0.5 * d - 0.01 * step for d in range(k)],
        "loss_count": [1] * k,
        "sequences": [4] * k,
        "tokens": [512] * k,
    }


class ReplaysCommittedRuns(unittest.TestCase):
    """The mixers take in Python the decisions they took in mixlab's trainer."""

    def replay(self, method):
        run = RESULTS / method / "seed-42"
        if not run.is_dir():
            self.skipTest(f"{run} is absent (run from the repository root)")
        config = (run / "config.toml").read_text()
        log = lines(run / "metrics.jsonl")
        header, log = log[0], log[1:]
        domains = header["domains"]
        mixer = mixlab.Mixer(
            config,
            domains,
            token_counts=in_order(header["token_counts"], domains),
            vocab_size=header["vocab_size"],
        )
        self.assertEqual(mixer.domains, domains)
        # Validation lines precede the train line of their step in the file, but the trainer
        # hands them to the mixer after that step's feedback.
        validations = {
            line["step"]: [line["domains"].get(name, {}).get("loss") for name in domains]
            for line in log
            if line["type"] in ("eval", "mixer-eval")
        }
        if mixer.wants_validation(0):
            mixer.observe_validation(0, validations[0])
        steps = 0
        for line in (line for line in log if line["type"] == "train"):
            step = line["step"]
            self.assertEqual(mixer.weights(), in_order(line["weights"], domains), f"{method} step {step}")
            mixer.observe(step, **feedback_arrays(line["feedback"], domains))
            if mixer.wants_validation(step):
                mixer.observe_validation(step, validations[step])
            if line.get("loss_weights") is not None:
                self.assertEqual(mixer.loss_weights(), in_order(line["loss_weights"], domains), f"{method} step {step}")
            self.assertEqual(mixer.weights(), in_order(line["next_weights"], domains), f"{method} step {step}")
            steps += 1
        self.assertEqual(steps, 160)
        return mixer

    def test_odm_paper_rule(self):
        self.replay("odm-paper")

    def test_odm_code_rule(self):
        self.replay("odm-code")

    def test_ado(self):
        self.replay("ado")

    def test_aioli(self):
        mixer = self.replay("aioli")
        self.assertTrue(mixer.needs_validation())
        summary = json.loads((RESULTS / "aioli/seed-42/summary.json").read_text())
        self.assertEqual(mixer.policy(), in_order(summary["final_weights"], mixer.domains))

    def test_doremi_proxy(self):
        mixer = self.replay("doremi-proxy")
        self.assertTrue(mixer.needs_reference_model())

    def test_static_tables(self):
        for method in ("tpw", "uniform"):
            self.replay(method)


class Behaviour(unittest.TestCase):
    def test_kinds_and_config_forms(self):
        self.assertEqual(mixlab.kinds(), ["static", "odm", "doremi", "ado", "aioli"])
        from_toml = mixlab.Mixer(ODM, DOMAINS)
        from_dict = mixlab.Mixer({"kind": "odm", "rule": "paper", "warmup_steps": 2, "initial_weights": "uniform"}, DOMAINS)
        run_config = mixlab.Mixer("name = \"run\"\n[mixer]\n" + ODM, DOMAINS)
        for mixer in (from_toml, from_dict, run_config):
            self.assertEqual(mixer.kind, "odm")
            self.assertEqual(mixer.weights(), [0.25] * 4)
        self.assertIn("odm", repr(from_toml))

    def test_state_dict_round_trip_continues_exactly(self):
        a = mixlab.Mixer(ODM, DOMAINS)
        for step in range(1, 6):
            a.observe(step, **step_arrays(4, step))
        state = a.state_dict()
        self.assertIsInstance(state, dict)
        b = mixlab.Mixer(ODM, DOMAINS)
        b.load_state_dict(json.loads(json.dumps(state)))
        for step in range(6, 12):
            a.observe(step, **step_arrays(4, step))
            b.observe(step, **step_arrays(4, step))
            self.assertEqual(a.weights(), b.weights())
        self.assertNotEqual(a.weights(), [0.25] * 4, "ODM moved away from uniform")
        self.assertAlmostEqual(math.fsum(a.weights()), 1.0, places=12)
        self.assertIn("exploration", a.internals())

    def test_errors_name_what_is_wrong(self):
        with self.assertRaisesRegex(mixlab.MixerError, "nope"):
            mixlab.Mixer('kind = "nope"', DOMAINS)
        with self.assertRaisesRegex(ValueError, "warmup_stepz"):
            mixlab.Mixer(ODM + "warmup_stepz = 3\n", DOMAINS)
        mixer = mixlab.Mixer(ODM, DOMAINS)
        arrays = step_arrays(4, 1)
        arrays["loss_sum"] = arrays["loss_sum"][:3]
        with self.assertRaisesRegex(mixlab.MixerError, "loss_sum: 3 values for 4 domains"):
            mixer.observe(1, **arrays)
        arrays = step_arrays(4, 1)
        arrays["loss_sum"][2] = float("nan")
        with self.assertRaisesRegex(mixlab.MixerError, "ArXiv"):
            mixer.observe(1, **arrays)
        with self.assertRaisesRegex(mixlab.MixerError, "step"):
            mixer.observe(0, **step_arrays(4, 0))
        self.assertEqual(mixer.weights(), [0.25] * 4, "refused feedback changed nothing")
        arrays = step_arrays(4, 1)
        arrays["tokens"][1] = -5
        with self.assertRaisesRegex(mixlab.MixerError, "tokens: -5 for `Github` is negative"):
            mixer.observe(1, **arrays)
        static = mixlab.Mixer('kind = "static"\nweights = "uniform"', DOMAINS)
        with self.assertRaises(mixlab.MixerError):
            static.load_state_dict(mixer.state_dict())
        # A corrupt state: the right envelope with a field mangled, and not a state at all.
        state = mixer.state_dict()
        corrupt = json.loads(json.dumps(state).replace("[", "[\"x\", ", 1))
        with self.assertRaisesRegex(mixlab.MixerError, "cannot restore state: .*domains"):
            mixer.load_state_dict(corrupt)
        with self.assertRaisesRegex(mixlab.MixerError, "state"):
            mixer.load_state_dict({"garbage": 1})
        self.assertEqual(mixer.weights(), [0.25] * 4, "refused states changed nothing")
        with self.assertRaisesRegex(mixlab.MixerError, "config"):
            mixlab.Mixer(42, DOMAINS)


def two_rank_worker(rank, init_file, out_dir):
    """One of two gloo ranks: half the sequences each, feedback all-reduced, one mixer step."""
    import torch
    import torch.distributed as dist

    import mixlab.torch

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    loss, ids, mask = torch_batch()
    half = slice(0, 3) if rank == 0 else slice(3, 6)
    feedback = mixlab.torch.domain_feedback(loss[half], ids[half], 4, mask=mask[half])
    mixer = mixlab.Mixer(ODM, DOMAINS)
    mixer.observe(1, **feedback)
    with open(pathlib.Path(out_dir) / f"rank{rank}.json", "w") as f:
        json.dump({"feedback": feedback, "weights": mixer.weights()}, f)
    dist.destroy_process_group()


def torch_batch():
    """Six sequences of four tokens from domains 0, 2, 2, 3, 0, 2; the last token of the second
    sequence and every token of the fifth bear no loss."""
    import torch

    loss = torch.arange(24, dtype=torch.float32).reshape(6, 4) / 8.0
    ids = torch.tensor([0, 2, 2, 3, 0, 2])
    mask = torch.ones(6, 4)
    mask[1, 3] = 0
    mask[4] = 0
    return loss, ids, mask


@unittest.skipUnless(HAS_TORCH, "torch is not installed (pip install torch)")
class TorchFeedback(unittest.TestCase):
    def expected(self):
        # By hand: each sequence's mean token loss (row r holds (4r .. 4r+3) / 8):
        # r0 (0+1+2+3)/4/8 = 0.1875; r1 (4+5+6)/3/8 = 0.625 (its last token masked);
        # r2 (8+9+10+11)/4/8 = 1.1875; r3 (12..15) 1.6875; r4 bears no token (a sequence, no
        # loss term); r5 (20..23) 2.6875. Domain 2 holds r1, r2, r5: 3 terms, 3 + 4 + 4 tokens.
        return {
            "loss_sum": [0.1875, 0.0, 0.625 + 1.1875 + 2.6875, 1.6875],
            "loss_count": [1, 0, 3, 1],
            "sequences": [2, 0, 3, 1],
            "tokens": [4, 0, 11, 4],
        }

    def test_sums_and_counts_by_hand(self):
        import mixlab.torch

        loss, ids, mask = torch_batch()
        feedback = mixlab.torch.domain_feedback(loss, ids, 4, mask=mask)
        expected = self.expected()
        for key in ("loss_count", "sequences", "tokens"):
            self.assertEqual(feedback[key], expected[key], key)
        for got, want in zip(feedback["loss_sum"], expected["loss_sum"]):
            self.assertAlmostEqual(got, want, places=12)
        mixer = mixlab.Mixer(ODM, DOMAINS)
        mixer.observe(1, **feedback)
        with self.assertRaisesRegex(ValueError, "domain_ids"):
            mixlab.torch.domain_feedback(loss, ids + 2, 4)
        with self.assertRaisesRegex(ValueError, "mask"):
            mixlab.torch.domain_feedback(loss, ids, 4, mask=mask[:, :2])

    def test_two_ranks_all_reduce_to_the_same_feedback_and_decision(self):
        import torch.multiprocessing as mp

        with tempfile.TemporaryDirectory() as tmp:
            mp.spawn(two_rank_worker, args=(f"{tmp}/init", tmp), nprocs=2, join=True)
            ranks = [json.loads((pathlib.Path(tmp) / f"rank{r}.json").read_text()) for r in (0, 1)]
        self.assertEqual(ranks[0], ranks[1], "both ranks observed the same feedback and decided alike")
        expected = self.expected()
        for key in ("loss_count", "sequences", "tokens"):
            self.assertEqual(ranks[0]["feedback"][key], expected[key], key)
        for got, want in zip(ranks[0]["feedback"]["loss_sum"], expected["loss_sum"]):
            self.assertAlmostEqual(got, want, places=12)


if __name__ == "__main__":
    unittest.main(verbosity=2)
