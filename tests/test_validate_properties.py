"""Property-based input validation over every entry point (fast "ci" profile; the long profile is
`python benchmarks/fuzz_inputs.py`). Every generated input must end in a clean error or a correct
acceptance: never a silent wrong result, a crash or a hang. See tests/fuzz_cases.py."""
from __future__ import annotations

import os
import warnings

import pytest
from hypothesis import given, settings

from tests import fuzz_files
from tests.fuzz_cases import Case, attribute_cases, generate_cases, outcome, text_cases

PROFILE = settings.get_profile(os.environ.get("COLLAB_FUZZ_PROFILE", "ci"))
STRATEGIES = {"generate": generate_cases, "text": text_cases, "attributes": attribute_cases, **fuzz_files.ALL}
CHEAP = {"checkpoint": 12, "cli": 10}  # examples of the entry points that load a model per case


def _property(strategy, examples: int | None):
    @settings(PROFILE, max_examples=examples or PROFILE.max_examples)
    @given(case=strategy())
    def run(case: Case) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kind, what = outcome(case)
        assert kind in ("clean_error", "accepted"), f"{case.entry} [{case.label}]: {kind}: {what}"

    return run


@pytest.mark.parametrize("entry", sorted(STRATEGIES))
def test_every_input_is_refused_cleanly_or_read_correctly(entry):
    examples = CHEAP.get(entry) if os.environ.get("COLLAB_FUZZ_PROFILE", "ci") == "ci" else None
    _property(STRATEGIES[entry], examples)()
