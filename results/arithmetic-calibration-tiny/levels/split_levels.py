"""Split the default corpus's `arithmetic` subject by difficulty level.

The subject draws level 1 (one-digit `a + b`, `a - b`) and level 2 (two-digit `+`/`-`, one-digit
`*`) problems in equal shares (crates/data/src/synthetic/multiple_choice.rs). Level-1 questions
are exactly the canonical `What is A + B?` / `What is A - B?` with one-digit operands; every
other question is level 2. The dev split (the worked examples) is kept whole in both sets, so
the prompts differ from the full subject's only in which test questions are asked.

    python3 split_levels.py MC_DATA_DIR OUT_DIR   # writes OUT_DIR/level1/data, OUT_DIR/level2/data
"""

import csv
import os
import re
import sys

LEVEL_1 = re.compile(r"What is \d [+-] \d\?")


def main(src: str, out: str) -> None:
    for level in ("level1", "level2"):
        for split in ("dev", "test"):
            os.makedirs(os.path.join(out, level, "data", split), exist_ok=True)
    with open(os.path.join(src, "dev", "arithmetic_dev.csv"), newline="") as f:
        dev = list(csv.reader(f))
    with open(os.path.join(src, "test", "arithmetic_test.csv"), newline="") as f:
        test = list(csv.reader(f))
    ones = [row for row in test if LEVEL_1.fullmatch(row[0])]
    twos = [row for row in test if not LEVEL_1.fullmatch(row[0])]
    for level, rows in (("level1", ones), ("level2", twos)):
        for split, data in (("dev", dev), ("test", rows)):
            path = os.path.join(out, level, "data", split, f"arithmetic_{split}.csv")
            with open(path, "w", newline="") as f:
                csv.writer(f).writerows(data)
    print(f"{len(test)} test questions: {len(ones)} level 1, {len(twos)} level 2")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
