"""The Edit job and the About tab, called directly."""
import json

import numpy as np
import pytest
from PIL import Image

from collab_app import about
from collab_app import edit_job as e
from collab_app.errors import UserError
from tests.app.test_handlers import TEXT, Recorder, painter


def request(state, image, text=TEXT, alpha=1.0, preset="fast", seed=0, steps=3, mask=None):
    return e.edit_request(state, state.default_model, image, text, mask, alpha, preset, seed, steps)


def test_edit_streams_stages_and_returns_a_strip(state, monkeypatch, tmp_path):
    from collab.editing import EditSettings

    monkeypatch.setattr(EditSettings, "fast", classmethod(lambda cls: cls(embed_steps=3, finetune_steps=3,
                                                                          trainable="attention")))
    face = (np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)  # not square: cropped
    Image.fromarray(face).save(tmp_path / "face.png")
    progress = Recorder()
    with pytest.warns(UserWarning, match="centre-cropped from 30x40"):
        req = request(state, str(tmp_path / "face.png"))
    first, *middle, final = e.edit_stream(state, req, strip=(0.0, 1.0), progress=progress)
    assert (first.seed, first.steps, first.alpha) == (0, 3, 1.0)
    stages = [v.status for v in middle]
    assert "text: embedding: 3/3 (loss" in stages[0] and any("text: fine-tuning: 3/3" in s for s in stages)
    assert ((3, 3), "text: embedding") in progress.calls
    assert final.status.startswith("done (fast preset") and final.edited.shape == (256, 256, 3)  # shown enlarged
    assert [c for _, c in final.strip] == ["input", "alpha 0.0", "alpha 1.0"]
    assert json.loads(final.settings)["preset"] == "fast"


def test_edit_keeps_the_layout_and_weights_the_text_against_it_over_the_models_default(state, monkeypatch):
    from dataclasses import replace

    from collab.editing import EditSession, EditSettings
    from tests.app.conftest import face_mask

    monkeypatch.setattr(EditSettings, "fast", classmethod(lambda cls: cls(embed_steps=2, finetune_steps=2,
                                                                          trainable="attention")))
    model = state.model()
    monkeypatch.setattr(model, "config", replace(model.config, modalities=tuple(
        replace(m, strength=1.5) if m.name == "text" else m for m in model.config.modalities)))

    class Parser:
        def parse(self, images):
            return np.stack([face_mask(images.shape[1])] * len(images))

    monkeypatch.setattr(state, "get_evaluator", lambda: Parser())
    seen = []
    real = EditSession.sample
    monkeypatch.setattr(EditSession, "sample", lambda self, *a, **k: seen.append((sorted(self.edits), self.edited,
                                                                                   k["strength"])) or real(self, *a, **k))
    face = (np.random.default_rng(1).random((16, 16, 3)) * 255).astype(np.uint8)
    req = e.edit_request(state, state.default_model, face, TEXT, None, 1.0, "fast", 0, 2, strength=2.0,
                         keep_layout=True)
    assert req.keep_layout == "mask"
    *_, final = e.edit_stream(state, req, strip=(0.0,))
    # the parsed mask takes part, tuned but not edited; the text gets 2 x the model's default 1.5
    assert seen == [(["mask", "text"], ["text"], {"text": 3.0})] * 2
    assert "mask kept from the face, strength x2" in final.status
    assert json.loads(final.settings)["strength"] == 2.0 and json.loads(final.settings)["kept"] == "mask"
    seen.clear()
    *_, plain = e.edit_stream(state, replace(req, strength=1.0), strip=())
    assert seen == [(["mask", "text"], ["text"], None)] and "strength" not in plain.status  # 1: the default mix
    with pytest.warns(UserWarning, match="edit strength 9 is outside 0.25..4: using 4"):
        assert e.edit_request(state, state.default_model, face, TEXT, None, 1.0, "fast", 0, 2, strength=9,
                              keep_layout=True).strength == 4
    # without a kept condition a strength cannot act, and the page says so; a target mask replaces the layout
    with pytest.warns(UserWarning, match="changes nothing here"):
        e.edit_request(state, state.default_model, face, TEXT, None, 1.0, "fast", 0, 2, strength=2.0)
    with pytest.warns(UserWarning, match="face's own layout is not kept"):
        assert e.edit_request(state, state.default_model, face, TEXT, painter(face_mask()), 1.0, "fast", 0, 2,
                              keep_layout=True).keep_layout is None
    monkeypatch.setattr(state, "get_evaluator", lambda: None)
    with pytest.raises(UserError, match="needs the face parser"):
        e.edit_request(state, state.default_model, face, TEXT, None, 1.0, "fast", 0, 2, keep_layout=True)


def test_edit_bad_inputs(state, tmp_path):
    face = np.zeros((16, 16, 3), np.uint8)
    cases = [(None, TEXT, 1.0, "faithful", "upload a face"), (face, "", 1.0, "fast", "give a"),
             (face, TEXT, 1.0, "slow", "unknown preset 'slow'")]
    for image, text, alpha, preset, message in cases:
        with pytest.raises(UserError, match=message):
            request(state, image, text, alpha, preset)
    with pytest.warns(UserWarning, match="alpha 9 is outside 0..3: using 3"):
        assert request(state, face, alpha=9.0).alpha == 3.0
    (tmp_path / "cat.png").write_bytes(b"GIF89a not really")
    with pytest.raises(UserError, match="cannot read the input image"):
        request(state, str(tmp_path / "cat.png"))
    Image.new("RGB", (5000, 4000)).save(tmp_path / "huge.png")
    with pytest.raises(UserError, match="5000x4000 pixels, more than"):
        request(state, str(tmp_path / "huge.png"))
    with pytest.raises(UserError, match="no face parser is installed"):
        e.parse_to_mask(state, state.default_model, face)


def test_non_face_photo_is_refused_when_a_parser_is_installed(state, monkeypatch):
    class NoFace:
        def parse(self, images):
            return np.zeros(images.shape[:3], np.uint8)  # all background

    monkeypatch.setattr(state, "get_evaluator", lambda: NoFace())
    with pytest.raises(UserError, match="no face found"):
        request(state, np.zeros((16, 16, 3), np.uint8))


def test_about_says_the_load_state_the_output_size_and_links(state):
    md = about.about_markdown(state)
    assert "not loaded yet" in md and about.PAPER in md and about.OFFICIAL_CODE in md
    assert "Output: 16x16 pixel RGB images" in md  # read from the config, before loading
    state.model()
    md = about.about_markdown(state)
    assert "**loaded**" in md and "Responsible use" in md and "cpu" in md and "impersonat" in md
    table = state.models_markdown()
    assert "official_256" in table and "missing" in table and "checkpoints/" in table


def test_about_names_a_models_default_strengths(state, monkeypatch):
    from dataclasses import replace

    model = state.model()
    assert "default strengths" not in about.about_markdown(state)
    monkeypatch.setattr(model, "config", replace(model.config, modalities=tuple(
        replace(m, strength=1.5) if m.name == "text" else m for m in model.config.modalities)))
    assert "default strengths: text x1.5 (chosen on validation conditions)" in about.about_markdown(state)


def test_about_measures_what_the_learned_weights_do(state):
    text = about.measure_weights(state, state.default_model)
    rows = [line for line in text.splitlines() if line.startswith("| mask") or line.startswith("| text")]
    assert len(rows) == 2
    means = [float(r.split("|")[5]) for r in rows]
    assert abs(sum(means) - 1.0) < 0.02  # the weights of the modalities sum to one at every pixel
    assert "lean most on" in text


def test_a_failed_load_is_said(state, tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.yaml").write_text("not: a model\n")
    state.default_model = str(tmp_path / "broken")
    with pytest.raises(Exception):
        state.model()
    assert state.load_state().startswith("failed to load")
