"""The app with more than two modalities, attribute conditions and the jointly trained baseline."""
import warnings

import numpy as np
import pytest

from collab.checkpoint import save_pretrained
from collab.pipeline import generate
from collab_app import handlers as h
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


def test_the_picker_offers_the_attributes_of_the_selectable_models(state3):
    assert "joint" in state3.choices()
    names = state3.attribute_names()
    assert "smiling" in names and "eyeglasses" in names
    assert h.read_attributes(None) is None and h.read_attributes([]) == []
    assert h.read_attributes("male, smiling") == ["male", "smiling"]


def test_attributes_alone_and_with_a_mask_match_the_package(state3):
    model = state3.model()
    *_, (images, _, status) = h.generate_stream(state3, "", "", None, 4, 3, 1.0, "ddim", 1, "",
                                                 attributes=["male", "smiling"])
    ref = generate(model, {"attributes": "male, smiling"}, steps=3, eta=1.0, seed=4)
    assert np.array_equal(images[0], ref.images[0]) and "attributes" in status
    # ticked nothing, box on: "none of them holds" is a condition, not an absent one
    *_, (none, _, _) = h.generate_stream(state3, "", "", None, 4, 3, 1.0, "ddim", 1, "", attributes=[])
    assert np.array_equal(none[0], generate(model, {"attributes": "none"}, steps=3, eta=1.0, seed=4).images[0])
    assert not np.array_equal(none[0], images[0])
    *_, (both, over, status) = h.generate_stream(state3, "", "", painter(face_mask()), 4, 3, 1.0, "ddim", 1, "",
                                                 attributes=["male"])
    assert over is not None and "mask" in status and "attributes" in status


def test_unknown_attribute_is_a_readable_error(state3):
    with pytest.raises(Exception, match="unknown attribute 'wings'"):
        list(h.generate_stream(state3, "", "", None, 0, 2, 1.0, "ddim", 1, "", attributes=["wings"]))


def test_a_condition_the_model_does_not_read_is_said_not_dropped(state):
    model = state.model()  # mask + text only
    with pytest.warns(UserWarning, match="does not use the attributes"):
        conds = h.conditions_from(model, TEXT, None, ["male"])
    assert list(conds) == ["text"]
    with pytest.raises(h.UserError, match="give a condition this model reads"):
        h.conditions_from(model, None, None, ["male"])


def test_influence_without_a_mask_plots_the_whole_image(state3):
    *_, (run, image, fig) = h.influence_stream(state3, "", TEXT, None, 0, 3, "paper", attributes=["smiling"])
    assert len(run.frames) == 3 and run.frames[0].shape[1] == 4 * 192  # text and attribute maps, x_t, x0
    assert len(fig.axes) == 2 and "whole image" in fig._suptitle.get_text()
    with pytest.raises(h.UserError, match="needs at least two modalities"):
        list(h.influence_stream(state3, "", "", None, 0, 3, "", attributes=["smiling"]))


def test_compare_three_modalities_and_the_joint_baseline(state3):
    mask = face_mask()
    *_, final = h.compare_stream(state3, "", TEXT, painter(mask), 2, 2, "paper", attributes=["male", "hat"])
    titles = [t for _, t in final]
    assert titles == ["mask only", "text only", "attributes only", "composable (equal weights)", "collaborative",
                      "joint LDM (attributes + mask)"]
    joint = state3.model("joint")
    ref = generate(joint, {"joint": {"attributes": "male, hat", "mask": mask}}, steps=2, eta=1.0, seed=2)
    assert np.array_equal(final[-1][0], ref.images[0])
    # without attributes the baseline cannot run on the same conditions: it is left out
    *_, final = h.compare_stream(state3, "", TEXT, painter(mask), 2, 2, "paper")
    assert [t for _, t in final][-1] == "collaborative" and len(final) == 4


def test_the_joint_model_alone(state3):
    mask = face_mask()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        *_, (images, _, _) = h.generate_stream(state3, "joint", TEXT, painter(mask), 1, 2, 1.0, "ddim", 1, "",
                                               attributes=["bald"])
    assert any("does not use the text" in str(w.message) for w in caught)
    ref = generate(state3.model("joint"), {"joint": {"attributes": "bald", "mask": mask}}, steps=2, eta=1.0, seed=1)
    assert np.array_equal(images[0], ref.images[0])
    with pytest.raises(h.UserError, match="give a condition"):  # a mask alone is not enough for it
        list(h.generate_stream(state3, "joint", "", painter(mask), 1, 2, 1.0, "ddim", 1, ""))
    with pytest.raises(h.UserError, match="no dynamic diffusers"):
        list(h.compare_stream(state3, "joint", "", painter(mask), 1, 2, "", attributes=["bald"]))
