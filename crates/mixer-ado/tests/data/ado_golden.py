"""Golden values for mixlab-mixer-ado, from a transcription of the reference code.

Reference: yidingjiang/ado at bc3d8d0, src/data_selectors/ado.py
  - AdoSelector.update (lines 122-190): counts, history prior, loss rows with imputation, refit
  - AdoSelector.curr_dist (lines 89-120): slope, prior x history^0.5, clip, smoothing
  - compute_scaling_law_params (lines 217-243): cumsum, [ignore_steps::10], savgol_filter(101, 3)
  - clip_min_probability, huber_loss, loss_fn, scaling_law, fit_scaling_law (lines 245-305)
and src/dataloader/adaptive_loader.py (get_batch renormalises the policy; update calls
data_policy.update then curr_dist with the same itr).

The transcription is mine; the fit runs the same optimiser as the code (jaxopt.LBFGS, tol 1e-5,
maxiter 200, over the same 512 start points, nanargmin of the final values) but in float64
(jax_enable_x64), so that only the optimiser's path separates it from mixlab's fit.
Schedule and window are shortened (the code's are for 60,000-step runs).

Run:  python3 ado_golden.py   (needs numpy, scipy, jax, jaxopt; writes the two files beside it)
Versions used for the committed files: numpy 2.4.6, scipy 1.17.1, jax 0.10.2, jaxopt 0.8.5.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from jaxopt import LBFGS
from scipy.signal import savgol_filter

jax.config.update("jax_enable_x64", True)
HERE = os.path.dirname(os.path.abspath(__file__))

NAMES = ["A", "B", "C"]
K = 3
PRIOR = np.array([0.5, 0.3, 0.2])
STEPS = 100
SEQS = 8  # sequences per step
CONFIG = dict(ignore_steps=10, start_step=40, update_interval=20, smoothing_window=11,
              smoothing_order=3, fit_stride=2)


# ---- the feedback: a fixed sequence of per-sequence losses -------------------------------
def lcg():
    x = 0x2545F4914F6CDD1D
    while True:
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
        yield (x >> 11) / 2**53


def make_feedback():
    rnd = lcg()
    seen = [0, 0, 0]
    steps = []
    for t in range(1, STEPS + 1):
        per = {k: [] for k in range(K)}
        for _ in range(SEQS):
            u = next(rnd)
            k = 0 if u < 0.5 else (1 if u < 0.8 else 2)
            if t == 1 and k == 1:
                k = 0  # B is absent from the first step: its loss is imputed
            seen[k] += 1
            noise = 0.02 * (2 * next(rnd) - 1)
            n = seen[k]
            law = [np.exp(0.6) + np.exp(1.2) * n ** -0.4,   # A learns
                   np.exp(0.9) + np.exp(0.8) * n ** -0.2,   # B learns slowly
                   2.0][k]                                  # C never improves
            per[k].append(round(float(law + noise), 6))
        steps.append(per)
    return steps


FEED = make_feedback()


def write_feedback():
    with open(os.path.join(HERE, "ado_golden_feedback.jsonl"), "w") as f:
        f.write(json.dumps({"domains": NAMES}) + "\n")
        for t, per in enumerate(FEED, start=1):
            fb = {}
            for k, ls in per.items():
                if not ls:
                    continue
                s = 0.0
                for x in ls:
                    s += x
                fb[NAMES[k]] = {"loss_sum": s, "loss_mean": s / len(ls), "loss_count": len(ls),
                                "sequences": len(ls), "tokens": 128 * len(ls)}
            f.write(json.dumps({"step": t, "feedback": fb}) + "\n")


# ---- the reference's pieces, transcribed ---------------------------------------------------
def huber(target, pred, delta=1e-3):
    d = jnp.abs(target - pred)
    return jnp.where(d > delta, delta * (d - 0.5 * delta), 0.5 * d ** 2)


def loss_fn(p, D, L):
    a, e, alpha = p
    arg1 = a - alpha * jnp.log(D)
    arg2 = e + jnp.zeros(arg1.shape)
    stacked = jnp.stack((arg1, arg2), axis=0)
    m = jnp.max(stacked, axis=0, keepdims=True)
    pred = jnp.squeeze(jnp.log(jnp.sum(jnp.exp(stacked - m), axis=0, keepdims=True)) + m, 0)
    return (jnp.sum(huber(jnp.log(L), pred)) + jnp.maximum(alpha - 0.8, 0)
            - jnp.minimum(alpha, 0.001) + jnp.maximum(a - 6.5, 0) - jnp.minimum(e - 0.5, 0))


def grid():
    A, E, AL = jnp.meshgrid(jnp.arange(-2, 6, 1.0), jnp.arange(-2, 2, 0.5),
                            jnp.arange(8) * 0.1, indexing="ij")
    return jnp.stack((A.flatten(), E.flatten(), AL.flatten()), axis=1)


def fit(D, L):
    solver = LBFGS(loss_fn, tol=1e-5, maxiter=200)
    res, state = jax.vmap(solver.run, in_axes=(0, None, None))(grid(), D, L)
    i = int(jnp.nanargmin(state.value))
    return np.asarray(res[i]), float(state.value[i])


def clip_min_probability(p, m):
    deficit = max(m * len(p) - p.sum(), 0)
    scaled = p * ((1 - deficit) / p.sum())
    c = np.maximum(scaled, m)
    return c / c.sum()


def run(count):
    c = CONFIG
    cnt_rows, loss_rows = [], []
    p_hist, p_avg = PRIOR.copy(), PRIOR.copy()
    params = None
    policy = PRIOR.copy()
    out = {"weights": [[0] + list(policy)], "fits": []}
    for t, per in enumerate(FEED, start=1):
        itr = t - 1
        counts = np.array([len(per[k]) for k in range(K)])
        p_hist = 0.9 * p_hist + 0.1 * counts / counts.sum()
        sums = [sum(per[k], 0.0) if per[k] else 0.0 for k in range(K)]
        # np.mean over the step's sequences is the sum of the loss terms over their number.
        step_mean = sum(sums) / counts.sum()
        row = []
        for k in range(K):
            if per[k]:
                s = 0.0
                for x in per[k]:
                    s += x
                row.append(s / len(per[k]))
            elif loss_rows:
                row.append(loss_rows[-1][k])
            else:
                row.append(step_mean)
        loss_rows.append(row)
        cnt_rows.append(counts if count == "domain" else np.full(K, counts.sum()))
        if itr >= c["start_step"] and itr % c["update_interval"] == 0:
            cum = np.cumsum(np.array(cnt_rows), 0)[c["ignore_steps"]::c["fit_stride"]].T
            smooth = savgol_filter(np.array(loss_rows).T, c["smoothing_window"],
                                   c["smoothing_order"], axis=-1)[:, c["ignore_steps"]::c["fit_stride"]]
            fitted = [fit(jnp.asarray(cum[k], dtype=jnp.float64), jnp.asarray(smooth[k])) for k in range(K)]
            P = np.array([f[0] for f in fitted])
            if np.isfinite(P).all():
                params = P
            out["fits"].append({"step": t, "params": P.tolist(), "objective": [f[1] for f in fitted],
                                "points_n": cum.tolist(), "points_loss": smooth.tolist()})
        if itr >= c["start_step"] and params is not None:
            n = np.sum(np.array(cnt_rows), 0).astype(np.float64)
            if count == "domain":
                n = np.maximum(n, 1.0)
            irred = np.exp(params[:, 1])
            expnt = np.maximum(params[:, 2], 0.05)
            curr = np.exp(params[:, 1]) + np.exp(params[:, 0]) / n ** params[:, 2]
            w = expnt * (curr - irred) / n * PRIOR * p_hist ** 0.5
            dist = clip_min_probability(w / w.sum(), 0.01)
            p = 0.9 * p_avg + 0.1 * dist
            p_avg = (1 - 1 / (itr + 1)) * p_avg + 1 / (itr + 1) * dist
            policy = p / p.sum()
        out["weights"].append([t] + list(policy))
    return out


def pieces():
    """Unit goldens: savgol_filter, loss_fn's value and gradient, clip_min_probability."""
    y = np.array([2.0 + 1.0 / (1 + 0.1 * i) + 0.05 * np.sin(1.7 * i) for i in range(40)])
    sg = savgol_filter(y, 11, 3)
    D = jnp.asarray([100.0 * (i + 1) for i in range(12)])
    L = jnp.asarray([np.exp(0.7) + np.exp(1.1) * (100.0 * (i + 1)) ** -0.3 + 0.004 * (-1) ** i
                     for i in range(12)])
    vg = jax.value_and_grad(loss_fn)
    obj = []
    for p in [[1.1, 0.7, 0.3], [0.0, 0.2, 0.9], [7.0, 0.5, 0.0], [2.0, -1.0, 0.45]]:
        v, g = vg(jnp.asarray(p), D, L)
        obj.append({"p": p, "value": float(v), "grad": [float(x) for x in g]})
    clip = [clip_min_probability(np.array(v), 0.01).tolist()
            for v in ([0.995, 0.004, 0.001], [0.6, 0.3, 0.1], [0.9999, 0.0, 0.0001])]
    return {"savgol_input": y.tolist(), "savgol_11_3": sg.tolist(),
            "objective_n": [float(x) for x in D], "objective_loss": [float(x) for x in L],
            "objective": obj, "clip_input": [[0.995, 0.004, 0.001], [0.6, 0.3, 0.1],
                                             [0.9999, 0.0, 0.0001]], "clip_0.01": clip}


if __name__ == "__main__":
    write_feedback()
    expected = {"config": CONFIG, "prior": PRIOR.tolist(), "shared": run("shared"),
                "domain": run("domain"), "pieces": pieces()}
    with open(os.path.join(HERE, "ado_golden_expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print("wrote ado_golden_feedback.jsonl and ado_golden_expected.json")
