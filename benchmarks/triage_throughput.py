"""Triage throughput in-process: the four steps next to the raw encoder on the same texts.

Both are measured in the same run, alternating, several times; medians are reported, and the
ratio steps/encoder is computed per run of the steps, against the encoder runs just before and
just after it. Optionally the same for the int8-quantized encoder,
with its quality cost on the labelled business set's holdout part (samples/business).

    python benchmarks/triage_throughput.py [--messages 1024] [--runs 3] [--quantized]

The steps get the messages as manage.py triage hands them over (Triager.chunk_size at a time, 512
at batch 32), and the raw encoder all at once: with the default 1,024 messages the steps see two
chunks, so what chunking costs in padding is counted against them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.inbox.engine import parse_message  # noqa: E402
from apps.inbox.engine.mailbox import iter_messages  # noqa: E402
from apps.triage.engine.classify import category_text  # noqa: E402
from apps.triage.engine.evaluation import evaluate_triage, load_labelled  # noqa: E402
from apps.triage.engine.hashing import CHAR_NGRAMS  # noqa: E402
from apps.triage.engine.pipeline import TriageConfig, Triager  # noqa: E402

CORPUS = ROOT.parent / "shared" / "data" / "spamassassin"


def load_messages(count: int):
    raws = [item.raw for item in iter_messages([CORPUS]) if item.raw]
    step = max(1, len(raws) // count)  # spread over every folder of the corpus
    raws = raws[::step][:count]
    started = time.perf_counter()
    messages = [parse_message(raw) for raw in raws]
    return messages, len(messages) / (time.perf_counter() - started)


def encoder_rate(triager: Triager, texts: list[str]) -> float:
    started = time.perf_counter()
    triager.encoder.encode(texts)
    return len(texts) / (time.perf_counter() - started)


def steps_rate(triager: Triager, messages) -> float:
    size = triager.chunk_size  # as manage.py triage hands them over
    # Every run meets its words as new ones, as a fresh worker would: no run is helped by the
    # character n-grams the one before it hashed.
    CHAR_NGRAMS.forget()
    started = time.perf_counter()
    for start in range(0, len(messages), size):
        triager.triage(messages[start : start + size])
    return len(messages) / (time.perf_counter() - started)


def measure(triager: Triager, messages, runs: int) -> dict:
    texts = [category_text(m) for m in messages]
    triager.triage(messages[:8])  # warm-up: first calls allocate
    # Each run of the steps sits between two runs of the encoder and is compared with their mean
    # time per message: on a shared machine whose speed drifts during a run, both sides then
    # see the same machine (compared with the run before alone, one ratio read 184%).
    encoder, steps = [encoder_rate(triager, texts)], []
    for _ in range(runs):
        steps.append(steps_rate(triager, messages))
        encoder.append(encoder_rate(triager, texts))
    around = [
        2 / (1 / before + 1 / after)
        for before, after in zip(encoder[:-1], encoder[1:], strict=True)
    ]
    ratios = [s / e for s, e in zip(steps, around, strict=True)]
    return {"encoder": statistics.median(encoder), "steps": statistics.median(steps),
            "ratio": statistics.median(ratios), "ratios": ratios}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--quantized", action="store_true", help="also measure the int8 encoder (CPU)"
    )
    parser.add_argument(
        "--batch-sizes", default="", help="comma list: raw encoder rate per batch size"
    )
    args = parser.parse_args()

    messages, parse_rate = load_messages(args.messages)
    triager = Triager(TriageConfig(device=args.device, batch_size=args.batch_size))
    figures = measure(triager, messages, args.runs)
    device = triager.encoder.device
    print(f"## Triage throughput ({time.strftime('%Y-%m-%d')})\n")
    print(f"{len(messages)} SpamAssassin messages spread over the corpus; device {device}; batch "
          f"{args.batch_size}; {args.runs} alternating runs, medians; {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; encoder {triager.versions['encoder']}.\n")  # fmt: skip
    print("| what | messages/s |")
    print("|---|---|")
    print(f"| parsing (MIME, quotes, language) | {parse_rate:.0f} |")
    print(f"| raw encoder, same texts | {figures['encoder']:.1f} |")
    print(f"| classify + prioritize + summarize + draft | {figures['steps']:.1f} |")
    print(f"\nSteps / encoder, per run: {', '.join(f'{r:.0%}' for r in figures['ratios'])}; "
          f"median {figures['ratio']:.0%} (target 95%).")  # fmt: skip

    if args.batch_sizes:
        texts = [category_text(m) for m in messages]
        print("\n| batch size | raw encoder messages/s |")
        print("|---|---|")
        for size in (int(s) for s in args.batch_sizes.split(",")):
            triager.encoder.batch_size = size
            rates = [encoder_rate(triager, texts) for _ in range(args.runs)]
            print(f"| {size} | {statistics.median(rates):.1f} |")
        triager.encoder.batch_size = args.batch_size

    if args.quantized:
        business = ROOT / "samples" / "business"
        labelled = load_labelled(business / "messages", business / "labels.csv", split="holdout")
        full_quality = evaluate_triage(triager, labelled)
        quantized = Triager(TriageConfig(device="cpu", quantize=True, batch_size=args.batch_size))
        q = measure(quantized, messages, args.runs)
        q_quality = evaluate_triage(quantized, labelled)
        full_labels = [o.category.label for o in triager.triage([i.message for i in labelled])]
        q_labels = [o.category.label for o in quantized.triage([i.message for i in labelled])]
        agreement = sum(a == b for a, b in zip(full_labels, q_labels, strict=True)) / len(labelled)
        print(
            "\n| encoder | raw encoder messages/s | steps messages/s | category accuracy "
            "(holdout) | priority accepted (holdout) |"
        )
        print("|---|---|---|---|---|")
        for name, speed, quality in (("float32", figures, full_quality),
                                     ("int8 dynamic", q, q_quality)):  # fmt: skip
            print(f"| {name} | {speed['encoder']:.1f} | {speed['steps']:.1f} | "
                  f"{quality['category_accuracy']:.1%} | {quality['priority_exact']:.1%} |")  # fmt: skip
        print(f"\nint8 / float32 encoder speed: {q['encoder'] / figures['encoder']:.2f}x; labels agreeing "
              f"with float32 on the labelled set: {agreement:.0%}.")  # fmt: skip


if __name__ == "__main__":
    main()
