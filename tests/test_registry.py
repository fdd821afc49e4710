"""The embedded model sets: they load through the registry strictly and do what they claim."""
import numpy as np
import pytest

from collab.evaluator import Evaluator, confusion, miou
from collab.pipeline import generate
from collab.registry import MODELS, checkpoints_dir, load_model


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def evaluator():
    return Evaluator.load(checkpoints_dir() / "evaluator")


@pytest.fixture(scope="module")
def held_out():
    from collab.eval import held_out_pairs

    return held_out_pairs(4, 128)


def test_embedded_sets_are_available_and_official_ones_are_named_missing():
    assert MODELS["demo"].available() and MODELS["joint"].available()
    assert not MODELS["official_256"].available()
    with pytest.raises(FileNotFoundError, match="256_codiff_mask_text.ckpt"):
        load_model("official_256")


def test_demo_follows_masks_better_than_text_alone(evaluator, held_out):
    """The mask collaborator's layout is the parser's reading of its samples, far more than text's."""
    model = load_model("demo")
    assert model.names == ("mask", "text", "attributes") and set(model.diffusers) == set(model.names)

    def score(conds_of):
        images = np.concatenate([generate(model, conds_of(i), steps=20, eta=1.0, seed=i).images for i in range(4)])
        return miou(confusion(evaluator.parse(images), held_out.labels))

    mask_only = score(lambda i: {"mask": held_out.labels[i]})
    text_only = score(lambda i: {"text": held_out.captions[i]})
    assert mask_only > text_only + 0.1, (mask_only, text_only)


def test_joint_baseline_samples_from_attributes_and_a_mask(held_out):
    joint = load_model("joint")
    assert joint.names == ("joint",) and not joint.diffusers
    res = generate(joint, {"joint": {"attributes": held_out.flags[0], "mask": held_out.labels[0]}}, steps=4, seed=0)
    assert res.images.shape == (1, 128, 128, 3) and res.images.std() > 5


def test_evaluator_reads_renders(evaluator, held_out):
    """The shipped parser reads held-out renders well (the gate it was trained to: mIoU >= 0.85)."""
    assert miou(confusion(evaluator.parse(held_out.images), held_out.labels)) >= 0.85
