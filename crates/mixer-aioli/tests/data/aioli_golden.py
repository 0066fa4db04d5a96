"""Golden values for mixlab-mixer-aioli, from a transcription of the reference code.

Reference: HazyResearch/aioli at a236112, trainer/aioli_trainer.py
  - AioliTrainer.learn_params_subroutine (lines 119-196): the probe order (line 123), the probe
    mixtures, G[:, j] += previous - new, G /= lp_rounds (164), A[i] = solve(W, G[i]) (166-179),
    the diagonal variant (181-190)
  - AioliTrainer.train (lines 198-411): weights_init = ones (231), the prior's steps, one round
    per iteration: validation, LearnParams, normalisation (323-331), the EMA or multiplicative
    update (333-345), training until counter is a multiple of update_steps (397)
  - dataset/slimpj_dataset.py set_proportions (340-348): a mixture is divided by its sum

Two things are not the code's, on purpose:
  - the probe order: np.random.permutation from numpy's global generator cannot be reproduced
    outside numpy, so both sides draw it from SplitMix64 with a Fisher-Yates shuffle (below,
    as in src/rng.rs). Any uniform permutation is faithful to the method.
  - with a prior phase the code's exploit data, n_data = update_steps * batch_size - lp_duration
    - batch_size * prior_steps (lines 234, 297), is empty once prior_steps >= update_steps, so
    its rounds would have no exploit step; this transcription trains each round until counter
    is a multiple of update_steps, as the loop's break (line 397) intends.

Validation losses are a fixed synthetic sequence (one line per step, 0..STEPS): the golden test
replays them; that a real model's losses would depend on the mixture does not matter here.

Run:  python3 aioli_golden.py   (needs numpy; writes the two files beside it)
Version used for the committed files: numpy 2.4.6.
"""

import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ["A", "B", "C", "D"]
K = 4
STEPS = 120
M64 = 2**64


class SplitMix64:
    def __init__(self, seed):
        self.state = seed % M64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) % M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % M64
        return z ^ (z >> 31)

    def below(self, n):
        threshold = (M64 - n) % n
        while True:
            x = self.next()
            if x >= threshold:
                return x % n

    def permutation(self, n):
        p = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.below(i + 1)
            p[i], p[j] = p[j], p[i]
        return p


def lcg():
    x = 0x2545F4914F6CDD1D
    while True:
        x = (x * 6364136223846793005 + 1442695040888963407) % M64
        yield (x >> 11) / 2**53


def make_validation():
    """Validation loss of every domain after every step 0..STEPS."""
    rnd = lcg()
    table = []
    for s in range(STEPS + 1):
        row = []
        for i in range(K):
            speed = 10.0 + 6.0 * i
            noise = 0.02 * (2 * next(rnd) - 1)
            row.append(2.0 + 0.3 * i + 3.0 / (1.0 + s / speed) + noise)
        table.append(row)
    return table


VAL = make_validation()


def write_feedback():
    with open(os.path.join(HERE, "aioli_golden_feedback.jsonl"), "w") as f:
        f.write(json.dumps({"domains": NAMES}) + "\n")
        f.write(json.dumps({"type": "mixer-eval", "split": "val", "step": 0,
                            "domains": {n: {"loss": VAL[0][i]} for i, n in enumerate(NAMES)}}) + "\n")
        for t in range(1, STEPS + 1):
            d = NAMES[(t * 7) % K]
            loss = 3.0 + 2.0 / t
            fb = {d: {"loss_sum": 8 * loss, "loss_mean": loss, "loss_count": 8, "sequences": 8,
                      "tokens": 1024}}
            f.write(json.dumps({"step": t, "feedback": fb}) + "\n")
            f.write(json.dumps({"type": "mixer-eval", "split": "val", "step": t,
                                "domains": {n: {"loss": VAL[t][i]} for i, n in enumerate(NAMES)}}) + "\n")


VARIANTS = {
    # The 3-domain script's shape: EMA, normalised A, smoothed probes; with a prior phase.
    "ema": dict(prior=[0.4, 0.3, 0.2, 0.1], prior_steps=24, update_steps=24, lp_rounds=2,
                lp_steps=2, one_hot_factor=0.625, eta=0.5, ema=0.3, normalize=True,
                diagonal=False, seed=5),
    # The code without --ema and --aioli_normalize_A, one-hot probes (argparse defaults).
    "multiplicative": dict(prior=None, prior_steps=0, update_steps=20, lp_rounds=1, lp_steps=3,
                           one_hot_factor=1.0, eta=2.0, ema=None, normalize=False,
                           diagonal=False, seed=17),
    # --aioli_diagonal with smoothed probes.
    "diagonal": dict(prior=None, prior_steps=0, update_steps=30, lp_rounds=3, lp_steps=2,
                     one_hot_factor=0.7, eta=1.0, ema=0.1, normalize=True, diagonal=True,
                     seed=3),
}


def run(c):
    k = K
    rng = SplitMix64(c["seed"])
    used = {}  # step -> the normalised mixture it trains on
    estimates, orders = [], []

    def train(weights):
        nonlocal counter
        w = np.array(weights, dtype=float)
        used[counter + 1] = w / w.sum()  # set_proportions
        counter += 1

    counter = 0
    if c["prior"] is not None:
        weights = np.array(c["prior"])
        for _ in range(c["prior_steps"]):
            train(weights)
    else:
        weights = np.ones(k)
    weights_init = np.ones(k)
    dynamic = STEPS - c["prior_steps"]
    ema_graph = None
    for i in range(-(-dynamic // c["update_steps"])):
        previous = np.array(VAL[counter])  # loss_0
        graph = np.zeros((k, k))
        order = np.concatenate([rng.permutation(k) for _ in range(c["lp_rounds"])])
        orders.append([int(x) for x in order])
        for j in order:
            w = np.ones(k) * (1 - c["one_hot_factor"]) / (k - 1)
            w[j] = c["one_hot_factor"]
            for _ in range(c["lp_steps"]):
                train(w)
            new = np.array(VAL[counter])
            graph[:, j] += previous - new
            previous = new
        graph /= c["lp_rounds"]
        if c["one_hot_factor"] != 1 and not c["diagonal"]:
            W = np.zeros((k, k))
            for r in range(k):
                row = np.ones(k) * (1 - c["one_hot_factor"]) / (k - 1)
                row[r] = c["one_hot_factor"]
                W[r] = row
            A = np.zeros((k, k))
            for r, row in enumerate(graph):
                A[r] = np.linalg.solve(W, row)
            graph = A
        elif c["one_hot_factor"] != 1 and c["diagonal"]:
            A = np.zeros((k, k))
            for r in range(k):
                A[r, r] = graph[r, r] / c["one_hot_factor"]
            graph = A
        if c["normalize"]:
            m = graph.min()
            if m < 0:
                graph -= m
            graph /= graph.sum()
        estimates.append(graph.tolist())
        if c["ema"] is not None:
            ema_graph = graph if i == 0 else (1 - c["ema"]) * graph + c["ema"] * ema_graph
            weights = np.multiply(weights_init, np.exp(c["eta"] * ema_graph.sum(axis=0)))
        elif i == 0:
            weights = np.multiply(weights_init, np.exp(c["eta"] * graph.sum(axis=0)))
        else:
            weights = np.multiply(weights, np.exp(c["eta"] * graph.sum(axis=0)))
        while counter < STEPS:
            train(weights)
            if counter % c["update_steps"] == 0:
                break
        if counter == STEPS:
            break
    assert sorted(used) == list(range(1, STEPS + 1))
    # What mixlab's replay prints after step t: the mixture of step t + 1.
    after = [used[t + 1].tolist() for t in range(STEPS)]
    return {"config": c, "weights_after": after, "estimates": estimates, "orders": orders}


def main():
    write_feedback()
    out = {name: run(c) for name, c in VARIANTS.items()}
    with open(os.path.join(HERE, "aioli_golden_expected.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
