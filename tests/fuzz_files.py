"""Generated inputs for the entry points that read arrays and files: masks (arrays, tensors,
encoded masks, image and .npy files, special files), the paint-bucket fill, configs, checkpoints,
edit settings and the command line. See tests/fuzz_cases.py for how outcomes are classified."""
from __future__ import annotations

import contextlib
import io
import os
import struct
import zlib
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from hypothesis import strategies as st
from PIL import Image

from collab.classes import NUM_CLASSES, PALETTE
from tests.fuzz_cases import Case, scratch, tiny, unique

_NUMERIC = ("uint8", "int16", "int64", "float32", "float64", "bool")
_PALETTE = np.array(PALETTE, np.uint8)


# ---------------------------------------------------------------- masks as arrays

def _as_dtype(array: np.ndarray, dtype: str) -> Any:
    if dtype == "bfloat16":
        return torch.from_numpy(np.asarray(array, np.float32)).to(torch.bfloat16)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(array).astype(dtype)


def _values(source: Any) -> np.ndarray | None:
    """The numbers a user array holds (float64), or None for non-numeric dtypes: the oracle."""
    if isinstance(source, torch.Tensor):
        return source.float().numpy().astype(np.float64)
    return source.astype(np.float64) if source.dtype.kind in "biuf" else None


@st.composite
def mask_array_cases(draw) -> Case:
    from collab.masks import load_mask

    h, w = draw(st.integers(0, 40)), draw(st.integers(0, 40))
    form = draw(st.sampled_from(["labels", "labels1", "rgb", "rgba", "odd_channels", "1d", "4d", "huge"]))
    dtype = draw(st.sampled_from(_NUMERIC + ("complex64", "object", "<U2", "bfloat16")))
    labels = np.array(draw(st.lists(st.integers(0, NUM_CLASSES - 1), min_size=h * w, max_size=h * w)),
                      np.int64).reshape(h, w)
    poison = draw(st.sampled_from([None, None, 19, 255, -1, 0.5, float("nan"), float("inf")]))
    if form in ("labels", "labels1"):
        values = labels.astype(np.float64)
        if poison is not None and h * w:
            values.flat[draw(st.integers(0, h * w - 1))] = poison
        source = _as_dtype(values[..., None] if form == "labels1" else values, dtype)
        got = _values(source)
        valid = (got is not None and got.size > 0 and bool(np.isfinite(got).all()) and bool((got == np.round(got)).all())
                 and got.min() >= 0 and got.max() < NUM_CLASSES)
        expected = got.reshape(h, w).astype(np.uint8) if valid else None
    elif form in ("rgb", "rgba"):
        array = _PALETTE[labels]
        if form == "rgba":
            array = np.concatenate([array, np.full((h, w, 1), 255, np.uint8)], -1)
        source = _as_dtype(array, dtype)
        valid, expected = h * w > 0 and dtype in ("uint8", "int16", "int64"), labels.astype(np.uint8)
    else:
        shape = {"odd_channels": (h, w, 2), "1d": (h * w,), "4d": (1, h, w, 3), "huge": (4200, 4100)}[form]
        source, valid, expected = np.zeros(shape, np.uint8), False, None

    def check(out) -> bool:
        return np.array_equal(out, expected)

    return Case("mask_array", lambda: load_mask(source), "accept" if valid else "refuse", check,
                ("mask", "label", "colour", "array", "pixels", "dtype"), label=f"{form} {dtype} {h}x{w} poison={poison}")


@st.composite
def encoded_mask_cases(draw) -> Case:
    model = tiny()
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["onehot", "probabilities", "nan", "negative", "zero_column", "complex", "int"]))
    labels = rng.integers(0, NUM_CLASSES, 1024)
    x = np.eye(NUM_CLASSES, dtype=np.float32)[labels].T.copy()  # [19, 1024]
    if kind == "probabilities":
        x = rng.random((NUM_CLASSES, 1024)).astype(np.float32)
        x /= x.sum(0, keepdims=True)
    elif kind == "nan":
        x[0, 5] = np.nan
    elif kind == "negative":
        x[:, 3] = 0
        x[0, 3], x[1, 3] = 2.0, -1.0
    elif kind == "zero_column":
        x[:, 7] = 0
    source: Any = x.astype(np.complex64) if kind == "complex" else x.astype(np.int64) if kind == "int" else x
    if draw(st.booleans()) and kind != "complex":
        source = torch.from_numpy(np.asarray(source))
    valid = kind in ("onehot", "probabilities", "int")
    expected = torch.from_numpy(np.asarray(x, np.float32))

    def check(out) -> bool:
        return torch.allclose(out[0].cpu(), expected)

    return Case("encoded_mask", lambda: model.prepare("mask", [source]), "accept" if valid else "refuse", check,
                ("encoded mask",), label=kind)


# ---------------------------------------------------------------- masks as files

def _png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _npy_claiming(shape: tuple[int, ...]) -> bytes:
    header = {"descr": "<u1", "fortran_order": False, "shape": shape}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return b"\x93NUMPY\x01\x00" + buf.getvalue()[8:] + b"\x00" * 16


@st.composite
def mask_file_cases(draw) -> Case:
    from collab.masks import load_mask, save_mask_png

    root = scratch()
    n = unique()
    labels = np.array(draw(st.lists(st.integers(0, NUM_CLASSES - 1), min_size=64, max_size=64)), np.uint8).reshape(8, 8)
    kind = draw(st.sampled_from(["palette", "grey", "rgb", "i16", "npy", "truncated", "bitflip", "bomb", "npy_huge",
                                 "npy_object", "fifo", "device", "directory", "missing", "long", "nul", "garbage"]))
    path: Any = root / f"m{n}.png"
    expect = "accept"
    if kind == "palette":
        save_mask_png(labels, path)
    elif kind == "grey":
        Image.fromarray(labels, "L").save(path)
    elif kind == "rgb":
        Image.fromarray(_PALETTE[labels]).save(path)
    elif kind == "i16":
        Image.fromarray(labels.astype(np.uint16)).save(path)
    elif kind == "npy":
        path = root / f"m{n}.npy"
        np.save(path, labels)
    elif kind in ("truncated", "bitflip"):
        save_mask_png(labels, path)
        data = bytearray(path.read_bytes())
        cut = draw(st.integers(0, len(data) - 1))
        data = data[:cut] if kind == "truncated" else data[:cut] + bytes([data[cut] ^ (1 << draw(st.integers(0, 7)))]) + data[cut + 1:]
        path.write_bytes(bytes(data))
        expect = "either"
    elif kind == "bomb":
        path.write_bytes(_png_with_size(100_000, 100_000))
        expect = "refuse"
    elif kind == "npy_huge":
        path = root / f"m{n}.npy"
        path.write_bytes(_npy_claiming((200_000, 300_000)))
        expect = "refuse"
    elif kind == "npy_object":
        path = root / f"m{n}.npy"
        np.save(path, np.array([[1, "a"]], dtype=object), allow_pickle=True)
        expect = "refuse"
    elif kind == "fifo":
        if not path.exists():
            os.mkfifo(path)
        expect = "refuse"
    else:
        path = {"device": "/dev/null", "directory": root, "missing": root / "nope.png", "long": "x" * 5000 + ".png",
                "nul": "mask\x00.png", "garbage": path}[kind]
        if kind == "garbage":
            path.write_bytes(draw(st.binary(max_size=200)))
        expect = "refuse"

    def check(out) -> bool:
        return np.array_equal(out, labels)

    return Case("mask_file", lambda: load_mask(path), expect, check if expect == "accept" else None,
                ("mask", str(path)[:40], "image", "npy", "pixels", "format"), label=kind)


# ---------------------------------------------------------------- the paint bucket

def _bfs_fill(labels: np.ndarray, y: int, x: int, value: int) -> np.ndarray:
    out, old = labels.copy(), labels[y, x]
    todo, seen = deque([(y, x)]), {(y, x)}
    while todo:
        a, b = todo.popleft()
        out[a, b] = value
        for c, d in ((a + 1, b), (a - 1, b), (a, b + 1), (a, b - 1)):
            if 0 <= c < labels.shape[0] and 0 <= d < labels.shape[1] and (c, d) not in seen and labels[c, d] == old:
                seen.add((c, d))
                todo.append((c, d))
    return out


@st.composite
def fill_cases(draw) -> Case:
    from collab.masks import flood_fill

    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    k = draw(st.integers(1, 4))
    labels = np.array(draw(st.lists(st.integers(0, k - 1), min_size=h * w, max_size=h * w)), np.uint8).reshape(h, w)
    y, x = draw(st.integers(-2, h + 1)), draw(st.integers(-2, w + 1))
    value = draw(st.one_of(st.integers(0, NUM_CLASSES - 1), st.sampled_from([19, -1, 2.5, "skin", None])))
    valid = 0 <= y < h and 0 <= x < w and isinstance(value, int) and 0 <= value < NUM_CLASSES

    def check(out) -> bool:
        return np.array_equal(out, _bfs_fill(labels, y, x, value))

    return Case("fill", lambda: flood_fill(labels, y, x, value), "accept" if valid else "refuse", check,
                ("fill", "value"), label=f"{h}x{w} at ({x}, {y}) value {value!r}")


# ---------------------------------------------------------------- configs

_OPTIONAL = {"vocab", "official_name", "diffuser"}  # fields where null is a valid value


def _leaves(node: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(node, list) and node and isinstance(node[0], dict):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, (*path, i))]
    return [path]


def _wrong_values(value: Any) -> list[Any]:
    if isinstance(value, bool):
        return ["yes", 1, None, [True]]
    if isinstance(value, int):
        return ["abc", None, 1.5, True, [value], {"a": 1}]
    if isinstance(value, float):
        return ["abc", None, float("nan"), float("inf"), True, [value]]
    if isinstance(value, str):
        return [5, None, [value], 1.5]
    if isinstance(value, list):  # ["a"] is a valid list of names (attributes), wrong only for numbers
        return [5, "abc", [1.5], None] + ([["a"]] if value and not isinstance(value[0], str) else [])
    return [5, [5], 1.5]  # a null optional field (vocab, official_name): a string would be valid


@st.composite
def config_cases(draw) -> Case:
    from collab.config import config_to_dict, load_config
    from tests.conftest import tiny_config

    cfg = tiny_config(draw(st.sampled_from([None, {"attributes": "attributes", "mask": "mask_grid"}])))
    data = config_to_dict(cfg)
    path = scratch() / f"c{unique()}.yaml"
    leaves = _leaves(data)
    where = draw(st.sampled_from(leaves))
    parent = data
    for key in where[:-1]:
        parent = parent[key]
    value = parent[where[-1]]
    change = draw(st.sampled_from(["none", "int_as_float", "wrong", "drop", "syntax", "bound"]))
    expect = "refuse"
    if change == "none":
        expect = "accept"
    elif change == "int_as_float" and isinstance(value, int) and not isinstance(value, bool):
        parent[where[-1]] = float(value)
        expect = "accept"
    elif change in ("wrong", "int_as_float"):
        parent[where[-1]] = draw(st.sampled_from(_wrong_values(value)))
        expect = "either" if parent[where[-1]] is None and where[-1] in _OPTIONAL else "refuse"
    elif change == "drop":
        del parent[where[-1]]
        expect = "either"  # a field with a default may go (a null optional field is fine too)
    elif change == "bound":
        key = draw(st.sampled_from(["scale_factor", "timesteps", "latent_size", "linear_start", "default_rule"]))
        data[key] = {"scale_factor": -1.0, "timesteps": 0, "latent_size": 0, "linear_start": 2.0,
                     "default_rule": "softmax"}[key]
        where = (key,)
    text = yaml.safe_dump(data, sort_keys=False)
    if change == "syntax":
        lines = text.splitlines()
        at = draw(st.integers(0, len(lines) - 1))
        lines[at] = lines[at] + draw(st.sampled_from([": [", " {", "\t- x", " : : :", "'"]))
        text = "\n".join(lines)
        expect = "either"  # some edits are still valid YAML of a valid config
    path.write_text(text)

    def check(loaded) -> bool:
        return loaded == cfg

    return Case("config", lambda: load_config(path), expect, check if expect == "accept" else None,
                (str(where[-1]), "yaml", "config", "field"), label=f"{change} {where}")


# ---------------------------------------------------------------- checkpoints

class _RunsCode:
    def __reduce__(self):
        return (Path.touch, (scratch() / "PICKLE_RAN",))


def _model_dir() -> Path:
    from collab.checkpoint import save_pretrained
    from tests.conftest import VOCAB

    target = scratch() / "tiny_model"
    if not target.exists():
        model = tiny()
        model.config = replace(model.config, vocab=str(VOCAB))
        save_pretrained(model, target, layout="flat")  # the cases edit its two files
    return target


@st.composite
def checkpoint_cases(draw) -> Case:
    from safetensors.torch import load_file, save_file

    from collab.checkpoint import load_official, load_pretrained, read_state_dict

    base = _model_dir()
    weights = load_file(base / "model.safetensors")
    kind = draw(st.sampled_from(["valid", "nan", "inf", "pickle_code", "truncated", "garbage", "missing_key"]))
    n = unique()
    key = draw(st.sampled_from(sorted(k for k, v in weights.items() if v.is_floating_point())))
    if kind == "pickle_code":
        path = scratch() / f"k{n}.ckpt"
        torch.save({"state_dict": {"x": torch.zeros(1)}, "evil": _RunsCode()}, path)

        def run():
            try:
                return load_official(path)
            finally:
                assert not (scratch() / "PICKLE_RAN").exists(), "a pickled callable ran"
        return Case("checkpoint", run, "refuse", None, ("pickled", "trust"), label=kind)
    if kind in ("truncated", "garbage"):
        path = scratch() / f"k{n}.ckpt"
        torch.save({"state_dict": weights}, path)
        data = path.read_bytes()
        path.write_bytes(data[: draw(st.integers(0, len(data) - 1))] if kind == "truncated"
                         else draw(st.binary(max_size=300)))
        return Case("checkpoint", lambda: read_state_dict(path), "refuse", None, (str(path)[:30],), label=kind)
    folder = scratch() / f"d{n}"
    folder.mkdir()
    (folder / "config.yaml").write_bytes((base / "config.yaml").read_bytes())
    (folder / "vocab.txt").symlink_to(base / "vocab.txt")
    if kind in ("nan", "inf"):
        weights[key] = weights[key].clone()
        weights[key].view(-1)[draw(st.integers(0, weights[key].numel() - 1))] = float(kind)
    elif kind == "missing_key":
        del weights[key]
    save_file(weights, folder / "model.safetensors")

    def check(model) -> bool:
        return torch.equal(model.state_dict()[key].float().cpu(), weights[key].float())

    return Case("checkpoint", lambda: load_pretrained(folder), "accept" if kind == "valid" else "refuse", check,
                (key,), label=f"{kind} {key}")


# ---------------------------------------------------------------- edit settings

@st.composite
def edit_settings_cases(draw) -> Case:
    from collab.editing import EditSettings
    from tests.fuzz_cases import _ints, _reals

    fields = {"embed_steps": _ints(0, 500, 100_000), "finetune_steps": _ints(0, 500, 100_000),
              "embed_lr": _reals(0.0, 1.0), "finetune_lr": _reals(0.0, 1.0), "seed": _ints(0, 10, 2**63 - 1),
              "trainable": st.sampled_from([("all", True), ("attention", True), ("some", False), (None, False)])}
    kwargs, valid = {}, True
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True)):
        value, ok = draw(fields[name])
        ok = ok and not (name.endswith("_lr") and isinstance(value, (int, float, np.floating)) and value == 0)
        kwargs[name], valid = value, valid and (ok or (name == "seed" and value is None))
    return Case("edit_settings", lambda: EditSettings(**kwargs).validate(), "accept" if valid else "refuse", None,
                tuple(kwargs), label=repr(kwargs)[:200])


# ---------------------------------------------------------------- command line

_FLAGS = {"--steps": [("2", True), ("0", False), ("1001", False), ("2.5", False), ("x", False)],
          "--eta": [("0.5", True), ("nan", False), ("1.5", False), ("-0.1", False), ("inf", False)],
          "--seed": [("7", True), ("-1", False), (str(2**63), False), (str(2**64 - 1), False), ("1.5", False)],
          "--batch-size": [("2", True), ("0", False), ("65", False), ("1000", False)],
          "--device": [("cpu", True), ("tpu", False), ("cuda:x", False)]}


@st.composite
def cli_cases(draw) -> Case:
    from collab.cli import main

    root = scratch()
    n = unique()
    out = root / f"out{n}"
    argv = ["text2image", "--model", str(_model_dir()), "--text", "a man", "--no-progress", "--steps", "1"]
    valid = True
    for flag in draw(st.lists(st.sampled_from(sorted(_FLAGS)), max_size=2, unique=True)):
        value, ok = draw(st.sampled_from(_FLAGS[flag]))
        argv += [flag, value]
        valid = valid and ok
    where = draw(st.sampled_from(["new", "new", "file", "under_file"]))
    if where != "new":
        (root / f"f{n}").write_text("x")
        out = root / f"f{n}" if where == "file" else root / f"f{n}" / "sub"
        valid = False
    argv += ["--out", str(out)]

    def run():
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse
                code = e.code
        leftovers = [p.name for p in root.glob(f"out{n}/*.tmp")] + [p.name for p in root.glob(f"out{n}/.*.tmp")]
        if "Traceback" in err.getvalue() or leftovers:
            raise RuntimeError(f"traceback or temporary files left: {leftovers} {err.getvalue()[-300:]}")
        if code == 2:
            if where == "new" and out.exists():
                raise RuntimeError("a refused command left an output folder")
            raise ValueError(err.getvalue().strip() or "exit 2")
        if code != 0:
            raise RuntimeError(f"exit {code}: {err.getvalue()[-300:]}")
        return out

    def check(folder) -> bool:
        return any(folder.glob("*.png"))

    return Case("cli", run, "accept" if valid else "refuse", check,
                ("--", "argument", "usage", "error"), label=" ".join(argv[7:]))


ALL = {"mask_array": mask_array_cases, "encoded_mask": encoded_mask_cases, "mask_file": mask_file_cases,
       "fill": fill_cases, "config": config_cases, "checkpoint": checkpoint_cases,
       "edit_settings": edit_settings_cases, "cli": cli_cases}
