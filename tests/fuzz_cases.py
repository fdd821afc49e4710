"""Generated inputs for every entry point, and the rule that classifies what each one did.

Each Hypothesis strategy below draws a `Case`: a call into the package with inputs that are valid,
invalid, or of either kind (corrupted files: refusing or reading them are both fine), decided by
how the input was built, never by the code under test. `outcome(case)` runs it under a deadline:

- "clean_error": refused with ValueError / TypeError / FileNotFoundError naming what was wrong;
- "accepted": valid input, and the result is what that input means (checked per case);
- "silent_wrong": an invalid input accepted, or a result that does not match the input;
- "crash": any other exception, a valid input refused, or a message that names nothing;
- "hang": the call ran past the deadline.

`tests/test_validate_properties.py` runs these with the fast "ci" profile and asserts that only the
first two happen; `benchmarks/fuzz_inputs.py` runs them for minutes ("long") and prints the counts.
"""
from __future__ import annotations

import math
import signal
import string
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from collab.checkpoint import CheckpointError

# ci: the same examples on every run (derandomize), so CI never flakes; the long profile explores
settings.register_profile("ci", max_examples=40, deadline=None, database=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=2000, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
CLEAN = (ValueError, TypeError, FileNotFoundError, CheckpointError)  # CheckpointError: named, documented
OUTCOMES = ("clean_error", "accepted", "silent_wrong", "crash", "hang")
DEADLINE_S = 20.0


@dataclass
class Case:
    entry: str
    run: Callable[[], Any]
    expect: str  # "accept" | "refuse" | "either"
    check: Callable[[Any], bool] | None = None  # is an accepted result what the input means?
    mentions: tuple[str, ...] = ()  # a refusal must name one of these (case-insensitive)
    label: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


class Hang(BaseException):
    pass


@contextmanager
def deadline(seconds: float):
    def fire(*_):
        raise Hang()

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def outcome(case: Case, seconds: float = DEADLINE_S) -> tuple[str, str]:
    """(class, what happened) for one case."""
    try:
        with deadline(seconds):
            result = case.run()
    except Hang:
        return "hang", f"ran past {seconds} s"
    except CLEAN as e:
        message = str(e)
        if case.expect == "accept":
            return "crash", f"valid input refused: {type(e).__name__}: {message[:300]}"
        if not message or (case.mentions and not any(m.lower() in message.lower() for m in case.mentions)):
            return "crash", f"unexplained {type(e).__name__}: {message[:300]!r} (expected a mention of {case.mentions})"
        return "clean_error", message[:120]
    except Exception as e:  # noqa: BLE001 - classifying every failure is the point
        return "crash", f"{type(e).__name__}: {str(e)[:300]}"
    if case.expect == "refuse":
        return "silent_wrong", "invalid input accepted"
    if case.check is not None and not case.check(result):
        return "silent_wrong", "accepted, but the result does not match the input"
    return "accepted", ""


# ---------------------------------------------------------------- shared fixtures (built once)

_CACHE: dict[str, Any] = {}


def tiny(kind: str = "mask_text"):
    from tests.conftest import tiny_config, tiny_model

    if kind not in _CACHE:
        kinds = {"mask_text": None, "attributes": {"attributes": "attributes"}}[kind]
        _CACHE[kind] = tiny_model(tiny_config(kinds) if kinds else None)
    return _CACHE[kind]


def unique() -> int:
    """A fresh number for file names (not drawn: files are side effects, not data)."""
    _CACHE["n"] = _CACHE.get("n", 0) + 1
    return _CACHE["n"]


def scratch() -> Path:
    if "dir" not in _CACHE:
        _CACHE["dir"] = Path(tempfile.mkdtemp(prefix="collab_fuzz_"))
    return _CACHE["dir"]


# ---------------------------------------------------------------- values of every kind

def _ints(lo: int, hi: int, valid_hi: int) -> st.SearchStrategy[tuple[Any, bool]]:
    """(value, valid) for an integer parameter valid in [lo, valid_hi], drawn around [lo, hi]."""
    ok = st.integers(lo, hi)
    return st.one_of(
        ok.map(lambda v: (v, True)),
        ok.map(lambda v: (np.int64(v), True)),
        ok.map(lambda v: (float(v), lo <= float(v) <= valid_hi)),  # integral floats are accepted (documented)
        st.integers(-2**70, lo - 1).map(lambda v: (v, False)),
        st.integers(valid_hi + 1, 2**70).map(lambda v: (v, False)),
        st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not (f.is_integer() and lo <= f <= valid_hi))
        .map(lambda v: (v, False)),
        st.sampled_from([True, False, None, "2", b"2", [2], 2 + 0j, np.float64("nan"), object()]).map(lambda v: (v, False)),
    )


def _reals(lo: float, hi: float) -> st.SearchStrategy[tuple[Any, bool]]:
    ok = st.floats(lo, hi)
    return st.one_of(
        ok.map(lambda v: (v, True)), ok.map(lambda v: (np.float32(v), lo <= float(np.float32(v)) <= hi)),
        st.integers(int(math.ceil(lo)), int(hi)).map(lambda v: (v, True)),
        st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not lo <= f <= hi).map(lambda v: (v, False)),
        st.sampled_from([None, "0.5", True, 0.5j, [0.5]]).map(lambda v: (v, False)),
    )


def _choice(options: tuple[str, ...]) -> st.SearchStrategy[tuple[Any, bool]]:
    return st.one_of(st.sampled_from(options).map(lambda v: (v, True)),
                     st.sampled_from(["", "DDIM", "paper ", None, 3, "official\x00"]).map(lambda v: (v, False)))


# ---------------------------------------------------------------- generate()

@st.composite
def generate_cases(draw) -> Case:
    from collab.pipeline import generate

    model = tiny()
    options = {"steps": _ints(1, 3, 1000), "eta": _reals(0.0, 1.0), "seed": _ints(0, 2**63 - 1, 2**63 - 1),
               "batch_size": _ints(1, 2, 64), "mode": _choice(("collaborative", "composable", "no_spatial")),
               "rule": _choice(("paper", "official")), "sampler": _choice(("ddim", "dpmpp_2m"))}
    chosen = draw(st.lists(st.sampled_from(sorted(options)), max_size=3, unique=True))
    kwargs, valid = {"steps": 1, "decode": False}, True
    for name in chosen:
        value, ok = draw(options[name])
        ok = ok or (value is None and name in ("seed", "rule"))  # None: a fresh seed, the model's rule
        kwargs[name], valid = value, valid and ok
    extra = draw(st.sampled_from(["", "conditions", "generator", "x_T"]))
    conditions: Any = {"text": "a man with a beard", "mask": np.zeros((32, 32), np.uint8)}
    if extra == "conditions":
        conditions = draw(st.sampled_from([None, [], "a man", {"text": None}, {"text": []}, {"text": ["a"] * 70}]))
        valid = False
    elif extra == "generator":
        kwargs["generator"] = draw(st.sampled_from(["abc", 0, np.random.default_rng(0), torch.Generator()]))
        valid = valid and isinstance(kwargs["generator"], torch.Generator)
    elif extra == "x_T":
        batch = kwargs.get("batch_size", 1)
        good = isinstance(batch, (int, np.integer, float)) and not isinstance(batch, bool) and batch in (1, 2)
        shape = draw(st.sampled_from([(1, 3, 8, 8), (2, 3, 8, 8), (1, 4, 8, 8), (1, 3, 16, 16), (3, 8, 8)]))
        fill = draw(st.sampled_from([0.5, float("nan"), float("inf")]))
        kwargs["x_T"] = torch.full(shape, fill)
        valid = valid and good and shape == (int(batch), 3, 8, 8) and math.isfinite(fill)
    batch = kwargs.get("batch_size", 1)

    def check(result) -> bool:
        # a given generator wins over `seed`; the settings then record the seed it started from
        given = kwargs.get("generator")
        seed = given.initial_seed() if isinstance(given, torch.Generator) else kwargs.get("seed", 0)
        return (result.latents.shape[0] == int(batch) and bool(torch.isfinite(result.latents).all())
                and (seed is None or result.settings.seed == int(seed)))

    mentions = tuple(chosen) + ({"conditions": ("conditions",), "generator": ("generator",), "x_T": ("x_T",)}
                                .get(extra, ()))
    return Case("generate", lambda: generate(model, conditions, **kwargs), "accept" if valid else "refuse", check,
                mentions, label=f"{extra} {kwargs!r}"[:300])


# ---------------------------------------------------------------- text conditions

_INVISIBLE = "\x00\x01\x07\x1b\x7f\u200b\u200c\u200d\u2060\ufeff\u00ad \t\n\r\u3000\u2028"


def _text_expectation(text: str) -> str:
    if len(text) > 1000 or "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return "refuse"
    if all(c in _INVISIBLE for c in text):
        return "refuse"  # nothing readable: empty, spaces, control, zero-width, NUL
    if any(c in string.ascii_letters + string.digits for c in text):
        return "accept"
    return "either"  # lone marks, symbols, private use: the tokenizer decides


@st.composite
def text_cases(draw) -> Case:
    from collab.pipeline import generate

    text = draw(st.one_of(
        st.text(st.sampled_from(_INVISIBLE), max_size=20),
        st.text(st.characters(), max_size=40),
        st.text(st.characters(categories=("Cc", "Cf", "Cs", "Zs", "Mn", "Co", "So")), max_size=12),
        st.builds(lambda a, b: a + b, st.text(st.sampled_from(_INVISIBLE), max_size=5), st.sampled_from(["a man", "X"])),
        st.integers(990, 1100).map(lambda n: "a" * n),
        st.sampled_from([None, 5, b"a man", ["a man"], {"text": "a"}]),
    ))
    expect = _text_expectation(text) if isinstance(text, str) else "refuse"
    if isinstance(text, list):
        expect = "accept"  # a batch of one
    model = tiny()
    return Case("text", lambda: generate(model, {"text": text}, steps=1, decode=False), expect, None,
                ("text",), label=repr(text)[:200])


# ---------------------------------------------------------------- attributes

_ATTR_VALUES = [(True, 1.0), (False, 0.0), (np.bool_(True), 1.0), (1, 1.0), (0, 0.0), (np.int64(1), 1.0),
                (1.0, 1.0), ("no", None), ("yes", None), ("True", None), (None, None), (2, None), (0.5, None),
                (float("nan"), None), ([1], None), (-1, None)]


@st.composite
def attribute_cases(draw) -> Case:
    model = tiny("attributes")
    names = model.config.modality("attributes").encoder.names
    form = draw(st.sampled_from(["dict", "vector", "string"]))
    expected = torch.zeros(len(names))
    if form == "dict":
        picked = draw(st.lists(st.sampled_from(list(names) + ["bearded", "Male"]), max_size=4, unique=True))
        raw, valid = {}, True
        for name in picked:
            value, meaning = draw(st.sampled_from(_ATTR_VALUES))
            raw[name] = value
            key = name.lower()  # names are matched case-insensitively (documented)
            valid = valid and meaning is not None and key in names
            if valid:
                expected[names.index(key)] = meaning
    elif form == "vector":
        length = draw(st.sampled_from([len(names), len(names) - 1, 0]))
        dtype = draw(st.sampled_from(["int64", "float32", "bool", "complex64", "object", "<U1", "float64"]))
        bits = draw(st.lists(st.sampled_from([0, 1]), min_size=length, max_size=length))
        bad = draw(st.sampled_from([None, 2, float("nan"), -1]))
        values = list(bits)
        if bad is not None and length and dtype in ("float32", "float64", "int64", "object"):
            values[0] = bad if dtype != "int64" or isinstance(bad, int) else 2
        raw = np.array(values, dtype=dtype)
        valid = length == len(names) and dtype in ("int64", "float32", "bool", "float64") and \
            all(v in (0, 1) for v in values)
        if valid:
            expected = torch.tensor([float(v) for v in values])
    else:
        picked = draw(st.lists(st.sampled_from(list(names) + ["bearded", "none"]), max_size=3, unique=True))
        raw = ", ".join(picked)
        valid = all(p in names for p in picked) or picked == ["none"]
        for p in picked:
            if p in names:
                expected[names.index(p)] = 1.0

    def check(out) -> bool:
        return torch.equal(out.cpu().reshape(-1), expected)

    return Case("attributes", lambda: model.prepare("attributes", [raw]), "accept" if valid else "refuse", check,
                ("attribute",), label=repr(raw)[:200])
