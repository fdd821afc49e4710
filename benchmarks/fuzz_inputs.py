"""The long profile of the input-validation property suite: generate inputs for every entry point
for a while and count what each did (clean error / correct acceptance / silent wrong / crash / hang).

    python benchmarks/fuzz_inputs.py --minutes 5            # every entry point, in turn, until time is up
    python benchmarks/fuzz_inputs.py --only mask_file cli   # some of them

Cases and the classification are those of tests/test_validate_properties.py (tests/fuzz_cases.py).
Prints one line per entry point, the totals, and the first examples of every bad outcome. Exit
status 1 when any silent wrong result, crash or hang was seen.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import given, settings  # noqa: E402

from tests import fuzz_files  # noqa: E402
from tests.fuzz_cases import OUTCOMES, attribute_cases, generate_cases, outcome, text_cases  # noqa: E402

STRATEGIES = {"generate": generate_cases, "text": text_cases, "attributes": attribute_cases, **fuzz_files.ALL}
BATCH = {"checkpoint": 40, "cli": 30}  # entry points that load a model per case run fewer per turn


def run_batch(entry: str, examples: int, counts: Counter, bad: dict, stop_at: float) -> None:
    @settings(settings.get_profile("long"), max_examples=examples, phases=["generate"])
    @given(case=STRATEGIES[entry]())
    def one(case):
        if time.monotonic() > stop_at:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kind, what = outcome(case)
        counts[kind] += 1
        if kind not in ("clean_error", "accepted") and len(bad[entry]) < 5:
            bad[entry].append(f"{kind}: [{case.label}] {what}")

    one()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--only", nargs="+", choices=sorted(STRATEGIES))
    args = ap.parse_args()
    entries = args.only or sorted(STRATEGIES)
    stop_at = time.monotonic() + args.minutes * 60
    counts = {e: Counter() for e in entries}
    bad: dict[str, list[str]] = defaultdict(list)
    while time.monotonic() < stop_at:
        for entry in entries:
            if time.monotonic() > stop_at:
                break
            run_batch(entry, BATCH.get(entry, 200), counts[entry], bad, stop_at)
    total = Counter()
    print(f"{'entry point':<14}" + "".join(f"{k:>13}" for k in OUTCOMES))
    for entry in entries:
        total.update(counts[entry])
        print(f"{entry:<14}" + "".join(f"{counts[entry][k]:>13}" for k in OUTCOMES))
    print(f"{'total':<14}" + "".join(f"{total[k]:>13}" for k in OUTCOMES) + f"   ({sum(total.values())} inputs, "
          f"{args.minutes:g} min)")
    for entry, examples in bad.items():
        for line in examples:
            print(f"  {entry}: {line}")
    return 1 if any(total[k] for k in ("silent_wrong", "crash", "hang")) else 0


if __name__ == "__main__":
    sys.exit(main())
