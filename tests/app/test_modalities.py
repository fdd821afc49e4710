"""The app with more than two modalities, attribute conditions and the jointly trained baseline."""
import warnings

import numpy as np
import pytest

from collab.checkpoint import save_pretrained
from collab.pipeline import generate
from collab_app import handlers as h
from collab_app.errors import UserError
from collab_app.inputs import conditions_from, read_attributes
from collab_app.state import AppState
from tests.app.conftest import face_mask
from tests.app.test_handlers import TEXT, painter
from tests.conftest import tiny_config, tiny_model

THREE = {"mask": "mask", "text": "text", "attributes": "attributes"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A checkpoints folder holding a tiny three-modality model and a tiny joint baseline."""
    root = tmp_path_factory.mktemp("checkpoints")
    save_pretrained(tiny_model(tiny_config(THREE), seed=1), root / "three")
    save_pretrained(tiny_model(tiny_config({"joint": "joint"}, diffusers=False), seed=2), root / "joint")
    return root


@pytest.fixture()
def state3(checkpoints, monkeypatch, tmp_path):
    monkeypatch.setenv("COLLAB_CHECKPOINTS", str(checkpoints))
    return AppState(default_model=str(checkpoints / "three"), evaluator_dir=tmp_path / "no_evaluator")


def run_generate(state, model="", text="", mask=None, attributes=None, seed=4, steps=3):
    req = h.generate_request(state, model, text, mask, seed, steps, 1.0, "ddim", 1, "", attributes=attributes)
    return list(h.generate_stream(state, req))[-1]


def test_the_picker_offers_the_attributes_of_the_selectable_models(state3):
    assert "joint" in state3.choices()
    names = state3.attribute_names()
    assert "smiling" in names and "eyeglasses" in names
    assert read_attributes(None) is None and read_attributes([]) == []
    assert read_attributes("male, smiling") == ["male", "smiling"]


def test_attributes_alone_and_with_a_mask_match_the_package(state3):
    model = state3.model()
    final = run_generate(state3, attributes=["male", "smiling"])
    ref = generate(model, {"attributes": "male, smiling"}, steps=3, eta=1.0, seed=4)
    assert np.array_equal(final.images[0], ref.images[0]) and "attributes alone" in final.status
    # ticked nothing, box on: "none of them holds" is a condition, not an absent one
    none = run_generate(state3, attributes=[])
    assert np.array_equal(none.images[0], generate(model, {"attributes": "none"}, steps=3, eta=1.0, seed=4).images[0])
    assert not np.array_equal(none.images[0], final.images[0])
    both = run_generate(state3, mask=painter(face_mask()), attributes=["male"])
    assert both.overlay is not None and "mask + attributes" in both.status


def test_unknown_attribute_is_a_readable_error(state3):
    with pytest.raises(Exception, match="unknown attribute 'wings'"):
        run_generate(state3, attributes=["wings"])


def test_a_condition_the_model_does_not_read_is_said_not_dropped(state):
    cfg = state.model().config  # mask + text only
    with pytest.warns(UserWarning, match="does not use the attributes"):
        conds = conditions_from(cfg, TEXT, None, ["male"])
    assert list(conds) == ["text"]
    with pytest.raises(UserError, match="give a condition this model reads .*you gave attributes only"):
        conditions_from(cfg, None, None, ["male"])


def test_influence_without_a_mask_plots_the_whole_image(state3):
    req = h.collaborative_request(state3, "", TEXT, None, 0, 3, "paper", "the influence view", attributes=["smiling"])
    *_, final = h.influence_stream(state3, req)
    assert len(final.run.frames) == 3 and final.run.frames[0].endswith(".png")
    assert len(final.plot.axes) == 2 and "whole image" in final.plot._suptitle.get_text()
    with pytest.raises(UserError, match="needs at least two modalities"):
        h.collaborative_request(state3, "", "", None, 0, 3, "", "the influence view", attributes=["smiling"])


def test_compare_three_modalities_and_the_joint_baseline(state3):
    mask = face_mask()
    req = h.collaborative_request(state3, "", TEXT, painter(mask), 2, 2, "paper", "the comparison",
                                  attributes=["male", "hat"])
    *_, gallery, final = h.compare_stream(state3, req)
    titles = [t for _, t in gallery.gallery]
    assert titles == ["mask only", "text only", "attributes only", "composable", "collaborative (rule paper)",
                      "joint LDM (attributes + mask)"]
    joint = state3.model("joint")
    ref = generate(joint, {"joint": {"attributes": "male, hat", "mask": mask}}, steps=2, eta=1.0, seed=2)
    assert np.array_equal(gallery.gallery[-1][0], ref.images[0])
    # without attributes the baseline cannot run on the same conditions: it is left out
    req = h.collaborative_request(state3, "", TEXT, painter(mask), 2, 2, "paper", "the comparison")
    *_, gallery, final = h.compare_stream(state3, req)
    assert [t for _, t in gallery.gallery][-1] == "collaborative (rule paper)" and len(gallery.gallery) == 4


def test_the_joint_model_alone(state3):
    mask = face_mask()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        final = run_generate(state3, "joint", TEXT, painter(mask), ["bald"], seed=1, steps=2)
    assert any("does not use the text" in str(w.message) for w in caught)
    assert "joint (attributes + mask in one network)" in final.status and "collaborative" not in final.status
    ref = generate(state3.model("joint"), {"joint": {"attributes": "bald", "mask": mask}}, steps=2, eta=1.0, seed=1)
    assert np.array_equal(final.images[0], ref.images[0])
    # a mask alone is not enough for it, and it cannot read text: said exactly
    with pytest.raises(UserError, match=r"one network trained on attributes and mask together: it needs attributes "
                                        r"and mask both, and cannot read text; you gave mask only"):
        run_generate(state3, "joint", "", painter(mask))
    with pytest.raises(UserError, match="no dynamic diffusers"):
        h.collaborative_request(state3, "joint", "", painter(mask), 1, 2, "", "the comparison", attributes=["bald"])
