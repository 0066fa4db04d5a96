"""Per-problem log-likelihood margins of the probe from `experiments eval --out` reports.

The three probe domains hold the same 3,000 one-digit problems in the same order and differ only
in the answer token (correct / correct +- 1 or 2 / another problem's answer), so the difference
of their summed NLL over 3,000 is the mean margin of the correct answer per problem, in nats.
"""
import glob
import json
import os

here = os.path.dirname(os.path.abspath(__file__))
print("| model | correct vs +-1, +-2 | correct vs another answer |")
print("|---|---:|---:|")
for path in sorted(glob.glob(os.path.join(here, "*.json"))):
    domains = {d["domain"]: d for d in json.load(open(path))["domains"]}
    correct = domains["Correct"]["nll_sum"]
    tight = (domains["Tight"]["nll_sum"] - correct) / 3000
    other = (domains["Iid"]["nll_sum"] - correct) / 3000
    print(f"| {os.path.basename(path)[:-5]} | {tight:.3f} | {other:.3f} |")
