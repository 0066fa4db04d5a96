#!/usr/bin/env python3
"""Tokenization throughput of HF tokenizers' own `encode_batch_fast` on a Pile-format corpus.

The side-by-side reference for the ingest line of `experiments bench data`: give both the same
tokenizer.json (for example the one `experiments prepare-data --tokenizer train:8192` writes
beside its dataset) and the same corpus, and compare MB/s of input (the decompressed lines, as
mixlab counts them) or tokens/s (mixlab's count adds one end-of-document token per document). mixlab's ingest also reads
and decompresses the corpus and writes Parquet shards; this script times only the encoding
(reading and decompressing happen before the clock starts), so it is the faster side by
construction.

    benches/hf_tokenizers_baseline.py --tokenizer DATASET/tokenizer.json \
        [--input ../shared/data/mini-pile] [--threads 2] [--rounds 3]

Needs the `tokenizers` package (`pip install tokenizers`); `.zst` files are read with the
`zstandard` package when installed, otherwise through the `zstd` command. Prints one line per
round; exits 2 with a message when a package or command it needs is missing, 1 with the file
and line when the input is not a Pile-format corpus.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def jsonl_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.name.endswith(".jsonl") or p.name.endswith(".jsonl.zst")
    )


def corpus_files(root: Path) -> list[Path]:
    """The documents `prepare-data` reads from `root`: a file itself; a directory laid out like
    the Pile, its `train/` files and then `val` and `test`; any other directory, its own
    `.jsonl(.zst)` files, in name order."""
    if root.is_file():
        return [root]
    if (root / "train").is_dir():
        files = jsonl_files(root / "train")
        for split in ("val", "test"):
            files += [p for p in (root / f"{split}.jsonl", root / f"{split}.jsonl.zst") if p.is_file()]
    else:
        files = jsonl_files(root)
    if not files:
        sys.exit(f"error: {root} has no .jsonl or .jsonl.zst files")
    return files


def read_lines(path: Path) -> list[str]:
    if not path.name.endswith(".zst"):
        return path.read_text(encoding="utf-8").splitlines()
    try:
        import zstandard

        with path.open("rb") as raw:
            data = zstandard.ZstdDecompressor().stream_reader(raw).read()
    except ImportError:
        if shutil.which("zstd") is None:
            print(
                f"error: {path} is zstd-compressed and neither the zstandard package nor the "
                "zstd command is available (pip install zstandard)",
                file=sys.stderr,
            )
            sys.exit(2)
        data = subprocess.run(
            ["zstd", "-dc", str(path)], check=True, stdout=subprocess.PIPE
        ).stdout
    return data.decode("utf-8").splitlines()


def texts_of(files: list[Path]) -> tuple[list[str], int]:
    """The documents' texts, and the bytes of the decompressed lines they came from (what
    mixlab's ingest counts as its input, JSON and metadata included)."""
    texts, line_bytes = [], 0
    for path in files:
        for number, line in enumerate(read_lines(path), start=1):
            line_bytes += len(line.encode("utf-8")) + 1
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                sys.exit(f"error: {path}:{number}: not a Pile-format line ({error})")
            if not isinstance(text, str):
                sys.exit(f"error: {path}:{number}: field text is {type(text).__name__}, not a string")
            texts.append(text)
    return texts, line_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True, type=Path, help="a tokenizer.json")
    parser.add_argument(
        "--input",
        type=Path,
        default=Path(__file__).resolve().parent.parent.parent / "shared/data/mini-pile",
        help="a Pile-format corpus: a .jsonl(.zst) file or a directory (default: the shared mini-pile)",
    )
    parser.add_argument("--threads", type=int, default=2, help="threads of the tokenizer's pool")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the corpus")
    parser.add_argument("--batch", type=int, default=1000, help="documents per encode call")
    args = parser.parse_args()

    # The Rust side's pool reads this when it starts, so before the import.
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        import tokenizers
    except ImportError:
        print("error: the tokenizers package is not installed (pip install tokenizers)", file=sys.stderr)
        sys.exit(2)
    if not args.tokenizer.is_file():
        sys.exit(f"error: {args.tokenizer} does not exist")
    if not args.input.exists():
        sys.exit(f"error: {args.input} does not exist: pass --input with a Pile-format corpus")

    tokenizer = tokenizers.Tokenizer.from_file(str(args.tokenizer))
    # mixlab's ingest calls encode_batch_fast (no offsets), so the same here where it exists.
    encode = getattr(tokenizer, "encode_batch_fast", None)
    method = "encode_batch_fast"
    if encode is None:
        encode, method = tokenizer.encode_batch, "encode_batch"
    texts, line_bytes = texts_of(corpus_files(args.input))
    # MB/s of the decompressed input lines, as `experiments bench data` reports its ingest (the
    # texts alone are fewer bytes: JSON escapes and metadata left out).
    megabytes = line_bytes / 1e6
    text_megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    print(
        f"hf tokenizers {tokenizers.__version__} {method}: {len(texts)} documents, "
        f"{megabytes:.1f} MB of input lines ({text_megabytes:.1f} MB of text), "
        f"{args.threads} thread(s)"
    )
    for round_ in range(1, args.rounds + 1):
        start = time.perf_counter()
        tokens = 0
        for at in range(0, len(texts), args.batch):
            for encoding in encode(texts[at : at + args.batch], add_special_tokens=False):
                tokens += len(encoding.ids)
        seconds = time.perf_counter() - start
        print(
            f"round {round_}: {seconds:.2f} s = {megabytes / seconds:.2f} MB/s of input, "
            f"{tokens} tokens = {tokens / seconds:,.0f} tokens/s"
        )


if __name__ == "__main__":
    main()
