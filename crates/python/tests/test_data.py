"""mixlab.DataStream against a mixlab run's own batches.

    MIXLAB_DATASET=DIR MIXLAB_RUN=RUN_DIR MIXLAB_DUMP=batches.npy python crates/python/tests/test_data.py

RUN_DIR is a finished `experiments train` run on DIR started with `--dump-batches batches.npy`;
the stream, given the weights the run logged at each step, must yield exactly the rows the run
trained on, alone and split over two ranks, and after a state round trip.
`crates/experiments/tests/python_data.rs` makes such a run and calls this file.
"""

import importlib.util
import json
import os
import pathlib
import tempfile
import tomllib
import unittest

import numpy as np

import mixlab

ENV = ("MIXLAB_DATASET", "MIXLAB_RUN", "MIXLAB_DUMP")
HAS_TORCH = importlib.util.find_spec("torch") is not None


class ReplaysARun:
    def setUp(self):
        run = pathlib.Path(os.environ["MIXLAB_RUN"])
        with open(run / "config.toml", "rb") as f:
            self.config = tomllib.load(f)
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        self.steps = [line for line in lines if line.get("type") == "train"]
        self.dump = np.load(os.environ["MIXLAB_DUMP"])
        self.assertEqual(len(self.steps), self.dump.shape[0])

    def stream(self, **kwargs):
        t = self.config["training"]
        return mixlab.DataStream(
            os.environ["MIXLAB_DATASET"],
            t["seed"],
            t["micro_batches"],
            t["batch_size"] // t["micro_batches"],
            granularity=t.get("granularity", "micro-batch"),
            warmup_granularity=t.get("warmup_granularity"),
            warmup_steps=t.get("warmup_steps", 0),
            **kwargs,
        )

    def weights(self, stream, line):
        return [line["weights"][name] for name in stream.domains]


@unittest.skipUnless(all(k in os.environ for k in ENV), f"set {', '.join(ENV)}")
class DataStreamReplaysARun(ReplaysARun, unittest.TestCase):
    def test_every_step_equals_the_runs_batches(self):
        stream = self.stream()
        moved = False
        for line, expected in zip(self.steps, self.dump):
            tokens, domains = stream.next_step(self.weights(stream, line))
            self.assertEqual(tokens.dtype, np.uint32)
            np.testing.assert_array_equal(tokens, expected, err_msg=f"step {line['step']}")
            names = [[stream.domains[d] for d in mb] for mb in domains.tolist()]
            self.assertEqual(names, line["domains_drawn"], f"step {line['step']}")
            moved |= line["weights"] != self.steps[0]["weights"]
        self.assertTrue(moved, "the run's weights changed, so the stream followed a moving mixture")
        self.assertEqual(stream.step, len(self.steps))

    def test_two_ranks_split_each_step_in_plan_order(self):
        ranks = [self.stream(rank=r, world_size=2) for r in (0, 1)]
        for line, expected in zip(self.steps, self.dump):
            halves = [s.next_step(self.weights(s, line))[0] for s in ranks]
            np.testing.assert_array_equal(np.concatenate(halves), expected, err_msg=f"step {line['step']}")

    def test_state_round_trip_continues_exactly(self):
        first = self.stream()
        half = len(self.steps) // 2
        for line in self.steps[:half]:
            first.next_step(self.weights(first, line))
        state = json.loads(json.dumps(first.state_dict()))
        second = self.stream()
        second.load_state_dict(state)
        self.assertEqual(second.step, half)
        for line, expected in zip(self.steps[half:], self.dump[half:]):
            np.testing.assert_array_equal(second.next_step(self.weights(second, line))[0], expected)
        other = mixlab.DataStream(os.environ["MIXLAB_DATASET"], 1234, 2, 1)
        with self.assertRaisesRegex(mixlab.MixerError, "saved by a stream of"):
            other.load_state_dict(state)

    def test_skipped_steps_leave_the_stream_where_drawn_ones_do(self):
        # Odd steps skipped, even steps read: every read equals the run's rows.
        stream = self.stream()
        for line, expected in zip(self.steps, self.dump):
            weights = self.weights(stream, line)
            if line["step"] % 2:
                stream.skip_step(weights)
            else:
                np.testing.assert_array_equal(stream.next_step(weights)[0], expected)
        self.assertEqual(stream.step, len(self.steps))
        with self.assertRaisesRegex(mixlab.MixerError, "weights: 1 values for"):
            stream.skip_step([1.0])

    def test_bad_arguments_are_named(self):
        stream = self.stream()
        with self.assertRaisesRegex(mixlab.MixerError, "weights: 1 values for"):
            stream.next_step([1.0])
        with self.assertRaisesRegex(mixlab.MixerError, "not a distribution"):
            stream.next_step([-1.0] + [1.0] * (len(stream.domains) - 1))
        with self.assertRaisesRegex(mixlab.MixerError, "world_size 3 must divide"):
            self.stream(rank=0, world_size=3)
        with self.assertRaisesRegex(mixlab.MixerError, "granularity"):
            mixlab.DataStream(os.environ["MIXLAB_DATASET"], 1, 2, 1, granularity="token")
        with tempfile.TemporaryDirectory() as empty:
            with self.assertRaisesRegex(mixlab.MixerError, "manifest.json") as refused:
                mixlab.DataStream(empty, 1, 2, 1)
            self.assertIn(empty, str(refused.exception))
        self.assertEqual(stream.step, 0, "refused draws moved nothing")


@unittest.skipUnless(all(k in os.environ for k in ENV), f"set {', '.join(ENV)}")
@unittest.skipUnless(HAS_TORCH, "torch is not installed (pip install torch)")
class MixedDatasetReplaysARun(ReplaysARun, unittest.TestCase):
    """mixlab.torch.MixedDataset under a DataLoader yields the run's rows, whatever the workers."""

    def dataset(self, **kwargs):
        import mixlab.torch

        t = self.config["training"]
        return mixlab.torch.MixedDataset(
            os.environ["MIXLAB_DATASET"], t["seed"], t["micro_batches"],
            t["batch_size"] // t["micro_batches"], granularity=t.get("granularity", "micro-batch"),
            warmup_granularity=t.get("warmup_granularity"), warmup_steps=t.get("warmup_steps", 0),
            **kwargs)

    def replay(self, dataset, workers, first=1, rank=0, world_size=1):
        """Trains nothing: publishes the run's weights step by step, as a trainer would after
        each step's feedback, and checks every batch the loader hands over."""
        import torch

        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)
        per_rank = self.dump.shape[1] // world_size
        dataset.publish(first, self.weights(dataset, self.steps[first - 1]))
        seen = first
        for batch in loader:
            self.assertEqual(batch.step, seen)
            expected = self.dump[seen - 1][rank * per_rank:(rank + 1) * per_rank].astype(np.int64)
            np.testing.assert_array_equal(batch.input_ids.numpy(), expected[..., :-1])
            np.testing.assert_array_equal(batch.labels.numpy(), expected[..., 1:])
            names = [[dataset.domains[d] for d in mb] for mb in batch.domain_ids.tolist()]
            drawn = self.steps[seen - 1]["domains_drawn"][rank * per_rank:(rank + 1) * per_rank]
            self.assertEqual(names, drawn, f"step {seen}")
            if seen < len(self.steps):
                dataset.publish(seen + 1, self.weights(dataset, self.steps[seen]))
            seen += 1
        self.assertEqual(seen, len(self.steps) + 1, "every step was yielded once")

    def test_in_process_and_with_workers(self):
        for workers in (0, 1, 3):
            with self.subTest(workers=workers):
                self.replay(self.dataset(steps=len(self.steps)), workers)

    def test_a_rank_with_two_workers(self):
        self.replay(self.dataset(steps=len(self.steps), rank=1, world_size=2), 2,
                    rank=1, world_size=2)

    def test_resume_from_a_state_continues_exactly(self):
        import torch

        half = len(self.steps) // 2
        first = self.dataset(steps=half)
        loader = torch.utils.data.DataLoader(first, batch_size=None, num_workers=2)
        first.publish(1, self.weights(first, self.steps[0]))
        for batch in loader:
            first.publish(batch.step + 1, self.weights(first, self.steps[batch.step]))
        self.assertEqual(batch.step, half)
        state = json.loads(json.dumps(first.state_dict()))
        resumed = self.dataset(steps=len(self.steps))
        resumed.load_state_dict(state)
        self.assertEqual(resumed.published, half + 1)
        # The resumed trainer publishes its next step unconditionally: a no-op here.
        self.replay(resumed, 2, first=half + 1)

    def test_misuse_is_named(self):
        import torch

        dataset = self.dataset(steps=2)
        with self.assertRaisesRegex(RuntimeError, r"no weights published; call dataset.publish\(1"):
            next(iter(torch.utils.data.DataLoader(dataset, batch_size=None)))
        weights = self.weights(dataset, self.steps[0])
        with self.assertRaisesRegex(ValueError, "step 2 after step 0"):
            dataset.publish(2, weights)
        with self.assertRaisesRegex(ValueError, "1 weights for"):
            dataset.publish(1, [1.0])
        with self.assertRaisesRegex(ValueError, "not a distribution"):
            dataset.publish(1, [0.0] * len(weights))
        dataset.publish(1, weights)
        dataset.publish(1, weights)
        with self.assertRaisesRegex(ValueError, "already published with other weights"):
            dataset.publish(1, [1.0] * len(weights))
        with self.assertRaisesRegex(ValueError, "not a mixlab.torch.MixedDataset state"):
            dataset.load_state_dict({"stream": {}})
        state = dataset.state_dict()
        state["published"] = 5
        with self.assertRaisesRegex(ValueError, "does not follow"):
            self.dataset().load_state_dict(state)


if __name__ == "__main__":
    unittest.main(verbosity=2)
