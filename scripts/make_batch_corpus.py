#!/usr/bin/env python
"""Build a JSONL corpus of {"id", "messages", "response"} rows from ../shared/data, for batch scoring runs.

The corpus is made at run time from the shared data sets and is never committed (the default output is under
runs/, which git ignores). Sources, interleaved so every slice of the file mixes them: BeaverTails 30k-test
(dev part), PKU-SafeRLHF safe/unsafe pairs, BeaverTails SPARD pairs, Do-Not-Answer (six models' answers) and
GPTFuzz labelled responses. Every tenth conversation gets a system message and every seventh a benign earlier
turn, so transcripts vary in shape.

    python scripts/make_batch_corpus.py                       # 20,000 rows -> runs/batch/corpus-20k.jsonl
    python scripts/make_batch_corpus.py --rows 2000 --malformed 20 --out /tmp/small.jsonl
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
Pair = tuple[str, str, str]  # (source id, prompt, response)


def _jsonl(path: Path) -> Iterator[dict[str, object]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def beavertails(data: Path) -> Iterator[Pair]:
    for i, row in enumerate(_jsonl(data / "beavertails" / "beavertails_30k_test_dev.jsonl")):
        yield f"beavertails-{i}", str(row["prompt"]), str(row["response"])


def pku(data: Path) -> Iterator[Pair]:
    for i, row in enumerate(_jsonl(data / "pku-saferlhf" / "pku_saferlhf_test_safety_pairs_1000.jsonl")):
        yield f"pku-{i}-safe", str(row["prompt"]), str(row["safe_response"])
        yield f"pku-{i}-unsafe", str(row["prompt"]), str(row["unsafe_response"])


def spard(data: Path) -> Iterator[Pair]:
    for split in ("test", "train"):
        for i, row in enumerate(_jsonl(data / "beavertails-pairs-spard" / f"beaverTails_{split}.jsonl")):
            yield f"spard-{split}-{i}-safe", str(row["prompt"]), str(row["safe"])
            yield f"spard-{split}-{i}-unsafe", str(row["prompt"]), str(row["unsafe"])


def do_not_answer(data: Path) -> Iterator[Pair]:
    models = ("GPT4", "ChatGPT", "Claude", "ChatGLM2", "llama2-7b-chat", "vicuna-7b")
    with (data / "do-not-answer" / "data_en.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            for model in models:
                yield f"dna-{row['id']}-{model}", row["question"], row[f"{model}_response"]


def gptfuzz(data: Path) -> Iterator[Pair]:
    folder = data / "gptfuzz-labeled-responses"
    with (folder / "question_list.csv").open(encoding="utf-8", newline="") as handle:
        questions = {row["index"]: row["text"] for row in csv.DictReader(handle)}
    for split in ("evaluate", "train"):
        with (folder / f"{split}.csv").open(encoding="utf-8", newline="") as handle:
            for i, row in enumerate(csv.DictReader(handle)):
                yield f"gptfuzz-{split}-{i}", questions.get(row["question"], row["question"]), row["Response"]


SOURCES = (beavertails, pku, spard, do_not_answer, gptfuzz)


def build(data: Path, rows: int, seed: int) -> list[dict[str, object]]:
    """Interleave the sources, shuffle within each, and shape the first ``rows`` pairs into conversations."""
    rng = random.Random(seed)
    streams = []
    for source in SOURCES:
        pairs = list(source(data))
        rng.shuffle(pairs)
        streams.append(pairs)
    mixed = [pair for group in itertools.zip_longest(*streams) for pair in group if pair is not None]
    if len(mixed) < rows:
        sys.exit(f"only {len(mixed)} pairs available in {data}; asked for {rows}")
    out = []
    for index, (row_id, prompt, response) in enumerate(mixed[:rows]):
        messages = []
        if index % 10 == 0:
            messages.append({"role": "system", "content": "You are a helpful assistant."})
        if index % 7 == 0:
            messages += [{"role": "user", "content": "Hi there!"}, {"role": "assistant", "content": "Hello!"}]
        messages.append({"role": "user", "content": prompt})
        out.append({"id": row_id, "messages": messages, "response": response})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared" / "data", help="shared data folder"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "batch" / "corpus-20k.jsonl")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--malformed", type=int, default=0, help="replace this many rows with broken lines")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"data folder not found: {args.data} (pass --data)")
    rows = build(args.data, args.rows, args.seed)
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    rng = random.Random(args.seed + 1)
    for position in rng.sample(range(len(lines)), args.malformed):
        lines[position] = lines[position][: len(lines[position]) // 2]  # a truncated write
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    size = args.out.stat().st_size / 2**20
    print(f"wrote {len(lines):,} rows ({args.malformed} malformed, {size:.1f} MiB) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
