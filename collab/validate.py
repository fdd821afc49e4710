"""Checks of user input where it enters the package: small pure functions that return the value in
its canonical form or raise an error naming the parameter, the value and what is allowed.

Conventions, the same at every entry point:
- integers: Python and numpy integers; floats with an integral value (2.0) too, since sliders and
  JSON send them; never bools, fractions, NaN or strings;
- reals: Python and numpy ints and floats, finite unless said otherwise; never bools or complex;
- arrays: numeric (bool, integer or real) dtypes only; complex, object, string and void refused.
"""
from __future__ import annotations

import math
import numbers
import os
import stat
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

import numpy as np
import torch

# Documented bounds (README, "Input bounds").
SEED_MAX = 2**63 - 1  # seeds are 0..2^63-1: torch would wrap -1 and 2^64-1 onto the same stream
MAX_BATCH_SIZE = 64
MAX_TEXT_CHARS = 1000  # far beyond the 77 tokens a text encoder reads
MAX_PATH_CHARS = 4096
MAX_PREVIEW = 60  # characters of a bad value quoted in a message


def show(value: Any) -> str:
    """A short repr of a bad value for an error message (type included for non-scalars)."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    text = text if len(text) <= MAX_PREVIEW else text[:MAX_PREVIEW] + "..."
    kind = type(value).__name__
    return text if kind in ("int", "float", "str", "bool", "NoneType") else f"{text} ({kind})"


def integer(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """An int in [lo, hi] (inclusive bounds, None = open)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an integer{_range(lo, hi)}, got {show(value)}")
    if not isinstance(value, numbers.Integral):
        if not math.isfinite(float(value)) or float(value) != int(float(value)):
            raise ValueError(f"{name} must be a whole number{_range(lo, hi)}, got {show(value)}")
    out = int(value)
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        raise ValueError(f"{name} must be{_range(lo, hi)}, got {out}")
    return out


def real(name: str, value: Any, lo: float | None = None, hi: float | None = None) -> float:
    """A finite float in [lo, hi] (inclusive bounds, None = open)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number{_range(lo, hi)}, got {show(value)}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be a finite number{_range(lo, hi)}, got {out}")
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        raise ValueError(f"{name} must be{_range(lo, hi)}, got {out}")
    return out


def _range(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" in [{lo}, {hi}]"
    if lo is not None:
        return f" >= {lo}"
    return f" <= {hi}" if hi is not None else ""


def choice(name: str, value: Any, options: Iterable[str]) -> str:
    options = tuple(options)
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"unknown {name} {show(value)}; {name} must be one of {', '.join(options)}")
    return value


def flag(name: str, value: Any) -> bool:
    """A real boolean (Python or numpy) or the integers 0 / 1; never strings such as 'no'."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{name} must be True/False (or 1/0), got {show(value)}")


def seed_value(name: str, value: Any) -> int | None:
    return None if value is None else integer(name, value, 0, SEED_MAX)


def text(name: str, value: Any, max_chars: int = MAX_TEXT_CHARS) -> str:
    """A prompt: a str of at most max_chars characters, no NUL, no lone surrogates. (Whether it holds
    any readable word is decided by the tokenizer: see conditions.TextInput.)"""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {show(value)}")
    if len(value) > max_chars:
        raise ValueError(f"{name} is {len(value):,} characters long; at most {max_chars:,} are accepted "
                         "(the text encoder reads the first 77 tokens only)")
    if "\x00" in value:
        raise ValueError(f"{name} contains a NUL character (\\x00), which no prompt holds: {show(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} is not valid Unicode text (it holds a lone surrogate): {show(value)}") from None
    return value


def callable_or_none(name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a callable or None, got {show(value)}")
    return value


def mapping(name: str, value: Any, what: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping {what}, got {show(value)}")
    return value


# ---------------------------------------------------------------- arrays and tensors


def numeric_array(name: str, value: Any, finite: bool = True) -> np.ndarray | torch.Tensor:
    """An ndarray / tensor of a bool, integer or real dtype (finite when asked); returned unchanged."""
    if isinstance(value, torch.Tensor):
        ok = not (value.is_complex() or value.dtype in (torch.quint8, torch.qint8, torch.qint32))
        real_dtype = value.is_floating_point()
    elif isinstance(value, np.ndarray):
        ok = value.dtype.kind in "biuf"
        real_dtype = value.dtype.kind == "f"
    else:
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {show(value)}")
    if not ok:
        raise TypeError(f"{name} must hold numbers (bool, integer or real), got dtype {value.dtype}")
    if finite and real_dtype:
        all_finite = torch.isfinite(value).all() if isinstance(value, torch.Tensor) else np.isfinite(value).all()
        if not bool(all_finite):
            raise ValueError(f"{name} holds NaN or infinite values ({show(value)})")
    return value


def tensor(name: str, value: Any, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """A finite real torch tensor, of `shape` when given."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {show(value)}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(value.shape)}")
    return numeric_array(name, value)


def first_non_finite(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The first key whose floating tensor holds NaN or inf, or None.

    One float32 sum per tensor, without temporaries (15x faster than isfinite().all()): a sum is
    non-finite whenever an element is, and, rarely, when a finite sum overflows: only then is each
    element tested."""
    for key, t in tensors.items():
        if t.is_floating_point() and t.numel() and not torch.isfinite(t.sum(dtype=torch.float32)):
            if not bool(torch.isfinite(t).all()):
                return key
    return None


# ---------------------------------------------------------------- files


def file_path(name: str, value: Any, what: str = "file") -> Path:
    """An existing regular file (symlinks followed). FIFOs, devices, sockets and directories are
    refused without being opened (opening a FIFO blocks until a writer comes)."""
    if not isinstance(value, (str, os.PathLike)) or isinstance(value, bytes):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {show(value)}")
    raw = os.fspath(value)
    if not isinstance(raw, str):
        raise TypeError(f"{name} must be a text path, got {show(raw)}")
    if not raw:
        raise ValueError(f"{name} is an empty path")
    if "\x00" in raw:
        raise ValueError(f"{name} contains a NUL character: {show(raw)}")
    if len(raw) > MAX_PATH_CHARS:
        raise ValueError(f"{name} is {len(raw):,} characters long; at most {MAX_PATH_CHARS:,}")
    path = Path(raw)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {_short(raw)} ({name})") from None
    except OSError as e:  # name too long, permission denied, a loop of links, ...
        raise ValueError(f"{name}: cannot access {_short(raw)} ({e.strerror or e})") from None
    if stat.S_ISDIR(mode):
        raise ValueError(f"{name}: {_short(raw)} is a directory, not a {what}")
    if not stat.S_ISREG(mode):
        kind = "FIFO" if stat.S_ISFIFO(mode) else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else \
            "socket" if stat.S_ISSOCK(mode) else "special file"
        raise ValueError(f"{name}: {_short(raw)} is a {kind}, not a regular {what}")
    return path


def _short(path: str, limit: int = 200) -> str:
    return path if len(path) <= limit else path[:limit] + "..."


# ---------------------------------------------------------------- generate()


class GenerateArgs(NamedTuple):
    """The canonical values of generate()'s numeric options."""

    steps: int
    eta: float
    seed: int | None
    batch_size: int
    rule: str


def generate_args(model: Any, conditions: Any, *, mode: Any, rule: Any, sampler: Any, steps: Any, eta: Any,
                  seed: Any, batch_size: Any, generator: Any = None, x_T: Any = None, noise: Any = None,
                  callback: Any = None, contexts: Any = None, collaborators: Any = None,
                  decode: Any = True) -> GenerateArgs:
    """Every argument of `collab.pipeline.generate`, checked before any work is done."""
    from collab.combination import MODES, RULES
    from collab.samplers import SAMPLERS

    mapping("conditions", conditions, "{modality name: condition} (use {} with contexts=)")
    for name, raw in conditions.items():
        if raw is None:
            raise ValueError(f"conditions[{name!r}] is None; leave the modality out to not condition on it")
        if isinstance(raw, (list, tuple)) and not 1 <= len(raw) <= MAX_BATCH_SIZE:
            raise ValueError(f"conditions[{name!r}] is a list of {len(raw)} conditions; give 1..{MAX_BATCH_SIZE}")
    if contexts is not None:
        for name, c in mapping("contexts", contexts, "{modality name: context tensor [B, L, D]}").items():
            if tensor(f"contexts[{name!r}]", c).ndim != 3:
                raise ValueError(f"contexts[{name!r}] must be [B, L, D], got shape {list(c.shape)}")
    if collaborators is not None:
        for name, net in mapping("collaborators", collaborators, "{modality name: UNet}").items():
            if not isinstance(net, torch.nn.Module):
                raise TypeError(f"collaborators[{name!r}] must be a torch.nn.Module, got {show(net)}")
    choice("mode", mode, MODES)
    rule = choice("rule", model.config.default_rule if rule is None else rule, RULES)
    choice("sampler", sampler, SAMPLERS)
    steps = integer("steps", steps, 1, model.config.timesteps)
    eta = real("eta", eta, 0.0, 1.0)
    batch_size = integer("batch_size", batch_size, 1, MAX_BATCH_SIZE)
    seed = seed_value("seed", seed)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {show(generator)}")
    if x_T is not None:
        tensor("x_T", x_T, model.latent_shape(batch_size))
    callable_or_none("noise", noise)
    callable_or_none("callback", callback)
    if not isinstance(decode, (bool, np.bool_)):
        raise TypeError(f"decode must be True or False, got {show(decode)}")
    return GenerateArgs(steps, eta, seed, batch_size, rule)
