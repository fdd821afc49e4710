"""The examples of issue 18, each through the entry point where it used to go wrong."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from collab import validate
from collab.conditions import ConditionError
from collab.masks import MaskError, flood_fill, load_mask
from collab.pipeline import generate
from tests.conftest import tiny_config, tiny_model

MASK = np.zeros((32, 32), np.uint8)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize("text", ["\x00\x00", "\u200b\u200d\ufeff", "\x01\x07 \t", "\u00ad"])
def test_texts_without_a_readable_word_are_refused(model, text):
    with pytest.raises(ConditionError, match="text"):
        generate(model, {"text": text}, steps=1)


def test_attribute_values_must_be_booleans():
    m = tiny_model(tiny_config({"attributes": "attributes"}))
    with pytest.raises(ConditionError, match=r"attribute 'male' must be True/False \(or 1/0\), got 'no'"):
        m.prepare("attributes", [{"male": "no"}])
    on = m.prepare("attributes", [{"male": np.bool_(True), "young": 0, "old": np.int64(1)}])[0]
    names = m.config.modality("attributes").encoder.names
    assert on[names.index("male")] == 1 and on[names.index("young")] == 0 and on[names.index("old")] == 1
    with pytest.raises(ConditionError, match="complex"):
        m.prepare("attributes", [np.ones(len(names), np.complex64)])


def test_encoded_masks_are_checked(model):
    onehot = torch.nn.functional.one_hot(torch.zeros(1024, dtype=torch.int64), 19).T.float()
    assert model.prepare("mask", [onehot]).shape == (1, 19, 1024)
    bad = onehot.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ConditionError, match="NaN"):
        generate(model, {"mask": bad}, steps=1)
    with pytest.raises(ConditionError, match="summing to 1"):
        model.prepare("mask", [onehot * 2])


@pytest.mark.parametrize("kwargs, message", [
    ({"eta": float("nan")}, "eta must be a finite number"),
    ({"eta": 1.5}, r"eta must be in \[0.0, 1.0\]"),
    ({"seed": -1}, r"seed must be in \[0, 9223372036854775807\], got -1"),
    ({"seed": 2**64 - 1}, "seed must be in"),
    ({"seed": 1.5}, "seed must be a whole number"),
    ({"steps": 2.5}, "steps must be a whole number"),
    ({"batch_size": 1000}, r"batch_size must be in \[1, 64\]"),
    ({"batch_size": 1.5}, "batch_size must be a whole number"),
    ({"generator": "abc"}, "generator must be a torch.Generator"),
    ({"x_T": torch.zeros(1, 3, 4, 4)}, r"x_T must have shape \[1, 3, 8, 8\]"),
    ({"steps": True}, "steps must be an integer"),
])
def test_generate_refuses_bad_options_by_name(model, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        generate(model, {"mask": MASK}, **kwargs)


def test_numpy_scalars_and_integral_floats_are_accepted(model):
    a = generate(model, {"mask": MASK}, steps=np.int64(2), seed=np.int64(5), eta=np.float32(0.5), decode=False)
    b = generate(model, {"mask": MASK}, steps=2.0, seed=5, eta=0.5, decode=False)
    assert a.settings.seed == 5 and a.settings.steps == 2 and torch.equal(a.latents, b.latents)


def test_conditions_must_be_a_mapping(model):
    with pytest.raises(TypeError, match="conditions must be a mapping"):
        generate(model, None)
    with pytest.raises(ValueError, match=r"conditions\['text'\] is None"):
        generate(model, {"text": None})


@pytest.mark.parametrize("dtype", [np.complex64, object, "<U2"])
def test_non_numeric_mask_arrays_are_refused(dtype):
    with pytest.raises(MaskError, match="must hold numbers"):
        load_mask(np.zeros((8, 8)).astype(dtype))


def test_npy_header_claiming_a_huge_shape_is_refused_before_allocating(tmp_path):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<u1", "fortran_order": False, "shape": (300_000, 300_000)})
    (tmp_path / "huge.npy").write_bytes(b"\x93NUMPY\x01\x00" + buf.getvalue()[8:] + b"\x00" * 8)
    with pytest.raises(MaskError, match="above the limit"):
        load_mask(tmp_path / "huge.npy")


def test_special_files_and_long_paths_are_refused(tmp_path):
    os.mkfifo(tmp_path / "fifo.png")
    with pytest.raises(MaskError, match="FIFO"):
        load_mask(tmp_path / "fifo.png")
    with pytest.raises(MaskError, match="device"):
        load_mask("/dev/zero")
    with pytest.raises(MaskError, match="characters long"):
        load_mask("a" * 5000)
    with pytest.raises(MaskError, match="cannot access"):
        load_mask(tmp_path / ("b" * 300 + ".png"))  # one name above the file system's 255


def test_fill_is_fast_on_a_serpentine():
    # one corridor winding through the whole canvas: the old fill grew it one pixel per round
    n = 1024
    labels = np.ones((n, n), np.uint8)
    labels[::2] = 0
    labels[1::4, -1] = 0
    labels[3::4, 0] = 0
    start = time.perf_counter()
    out = flood_fill(labels, 0, 0, 5)
    assert (out == 5).sum() == (labels == 0).sum() and time.perf_counter() - start < 10


def test_first_non_finite_names_the_key():
    tensors = {"a": torch.ones(3), "b": torch.tensor([1.0, float("inf")]), "c": torch.tensor([3e38, 3e38])}
    assert validate.first_non_finite(tensors) == "b"
    assert validate.first_non_finite({"c": tensors["c"], "i": torch.arange(3)}) is None  # overflowing sum, finite
