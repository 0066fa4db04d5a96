"""mixlab.DataStream against a mixlab run's own batches.

    MIXLAB_DATASET=DIR MIXLAB_RUN=RUN_DIR MIXLAB_DUMP=batches.npy python crates/python/tests/test_data.py

RUN_DIR is a finished `experiments train` run on DIR started with `--dump-batches batches.npy`;
the stream, given the weights the run logged at each step, must yield exactly the rows the run
trained on, alone and split over two ranks, and after a state round trip.
`crates/experiments/tests/python_data.rs` makes such a run and calls this file.
"""

import json
import os
import pathlib
import tomllib
import unittest

import numpy as np

import mixlab

ENV = ("MIXLAB_DATASET", "MIXLAB_RUN", "MIXLAB_DUMP")


@unittest.skipUnless(all(k in os.environ for k in ENV), f"set {', '.join(ENV)}")
class DataStreamReplaysARun(unittest.TestCase):
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
        self.assertEqual(stream.step, 0, "refused draws moved nothing")


if __name__ == "__main__":
    unittest.main(verbosity=2)
