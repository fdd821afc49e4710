"""The app's handlers called directly, as the page calls them."""
import numpy as np
import pytest
import torch
from PIL import Image

from collab.classes import PALETTE
from collab.masks import colorize, save_mask_png
from collab.pipeline import generate
from collab_app import handlers as h
from tests.app.conftest import face_mask

TEXT = "This man has beard of medium length. He is in his thirties."


def painter(labels):
    rgb = colorize(labels)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1)
    return {"background": rgba, "layers": [], "composite": rgba}


def run(gen):
    return list(gen)


def test_generate_streams_previews_then_the_seeded_result(state):
    outs = run(h.generate_stream(state, state.default_model, TEXT, painter(face_mask()), 3, 6, 1.0, "ddim", 2, "",
                                 preview_every=2))
    previews, final = outs[:-1], outs[-1]
    assert len(previews) == 3 and all(p[2].startswith("step") for p in previews)
    images, over, status = final
    assert len(images) == 2 and images[0].shape == (16, 16, 3) and over.shape == (256, 256, 3)
    assert "seed=3" in status and "mode=collaborative" in status
    # the same request through the package gives the same pixels
    direct = generate(state.model(), {"text": TEXT, "mask": face_mask()}, steps=6, eta=1.0, seed=3, batch_size=2)
    assert np.array_equal(np.stack(images), direct.images)


def test_painted_strokes_are_snapped_and_blank_canvas_means_no_mask():
    labels = face_mask()
    value = painter(labels)
    value["composite"][0, 0, :3] = (200, 3, 4)  # an anti-aliased skin-ish pixel
    got = h.read_mask(value)
    assert got[0, 0] == 1 and np.array_equal(got[1:], labels[1:])
    assert h.read_mask({"background": None, "layers": [], "composite": np.zeros((8, 8, 4), np.uint8)}) is None
    assert h.read_mask(None) is None


@pytest.mark.parametrize("text, mask, message", [
    ("", None, "give a"),
    ("x" * 2000, None, "characters long"),
])
def test_bad_generation_inputs_have_readable_messages(state, text, mask, message):
    with pytest.raises(h.UserError, match=message):
        run(h.generate_stream(state, state.default_model, text, mask, 0, 4, 1.0, "ddim", 1, ""))


def test_bad_numbers_and_unknown_model(state):
    with pytest.raises(h.UserError, match="steps"):
        run(h.generate_stream(state, state.default_model, TEXT, None, 0, 0, 1.0, "ddim", 1, ""))
    with pytest.raises(h.UserError, match="seed"):
        run(h.generate_stream(state, state.default_model, TEXT, None, "abc", 4, 1.0, "ddim", 1, ""))
    with pytest.raises(ValueError, match="not available"):
        state.model("no_such_model")


def test_friendly_turns_errors_into_gradio_errors_and_warnings_into_toasts(state, monkeypatch):
    import gradio as gr

    shown = []
    monkeypatch.setattr(gr, "Warning", lambda msg: shown.append(msg))
    wrapped = h.friendly(lambda *a: (yield from h.generate_stream(state, *a)))
    with pytest.raises(gr.Error, match="give a"):
        list(wrapped(state.default_model, "", None, 0, 4, 1.0, "ddim", 1, ""))
    boom = h.friendly(lambda: 1 / 0)
    with pytest.raises(gr.Error, match="Something went wrong"):
        boom()
    all_background = painter(np.zeros((16, 16), np.uint8))
    list(wrapped(state.default_model, TEXT, all_background, 0, 2, 1.0, "ddim", 1, ""))
    assert any("all background" in s for s in shown)


def test_mask_upload_formats_and_unknown_colours(tmp_path):
    labels = face_mask()
    save_mask_png(labels, tmp_path / "palette.png")
    value = h.load_mask_file(str(tmp_path / "palette.png"))
    assert np.array_equal(h.read_mask(value), labels)
    bad = np.zeros((16, 16, 3), np.uint8)
    bad[:] = (123, 45, 67)  # no class has this colour
    Image.fromarray(bad).save(tmp_path / "bad.png")
    with pytest.raises(h.MaskError, match="not official palette colours"):
        h.load_mask_file(str(tmp_path / "bad.png"))
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(Exception):
        h.load_mask_file(str(tmp_path / "notes.png"))


def test_fill_tool(tmp_path):
    value = painter(face_mask())
    filled = h.fill_at(value, "hat", 0, 0)  # click on the background corner
    labels = h.read_mask(filled)
    assert (labels[face_mask() == 0] == 14).all() and (labels[face_mask() == 1] == 1).all()


def test_influence_run_frames_gif_and_plot(state):
    run, image, fig = h.influence_run(state, state.default_model, TEXT, painter(face_mask()), 0, 5, "official")
    assert len(run.frames) == 5 and run.rule == "official" and "official" in run.summary
    # frame = one heatmap per modality, x_t and x0, each with a caption strip
    assert run.frames[0].shape == (192 + 12, 4 * 192, 3)
    frame, where = h.influence_frame(run, 99)
    assert where.startswith("step 5/5") and np.array_equal(frame, run.frames[-1])
    assert Image.open(run.gif).n_frames >= 5
    assert len(fig.axes) == 2
    with pytest.raises(h.UserError, match="needs every modality"):
        h.influence_run(state, state.default_model, TEXT, None, 0, 5, "")


def test_compare_four_ways_same_seed(state):
    out = h.compare_run(state, state.default_model, TEXT, painter(face_mask()), 1, 3, "paper")
    assert [c for _, c in out] == ["mask only", "text only", "composable (equal weights)", "collaborative"]
    assert not np.array_equal(out[2][0], out[3][0])  # learned weights differ from equal weights


def test_compare_with_an_evaluator_adds_metrics(state, tmp_path):
    from collab.evaluator import AttributeClassifier, ClassifierConfig, Evaluator, FaceParser, ParserConfig

    Evaluator(FaceParser(ParserConfig(widths=(8, 16), image_size=16)),
              AttributeClassifier(ClassifierConfig(widths=(8, 16), image_size=16))).save(tmp_path / "ev")
    state.evaluator_dir = tmp_path / "ev"
    out = h.compare_run(state, state.default_model, TEXT, painter(face_mask()), 1, 2, "")
    assert all("mask mIoU" in c and "reads as" in c for _, c in out)


def test_edit_streams_stages_and_returns_a_strip(state, monkeypatch):
    from collab.editing import EditSettings

    monkeypatch.setattr(EditSettings, "fast", classmethod(lambda cls: cls(embed_steps=3, finetune_steps=3,
                                                                          trainable="attention")))
    face = (np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)  # not square: cropped
    outs = run(h.edit_stream(state, state.default_model, face, TEXT, None, 1.0, "fast", 0, steps=3,
                             strip=(0.0, 1.0)))
    stages = [o[0] for o in outs]
    assert any("embedding" in s for s in stages) and any("fine-tuning" in s for s in stages)
    status, edited, strip = outs[-1]
    assert status.startswith("done") and edited.shape == (16, 16, 3)
    assert [c for _, c in strip] == ["input", "alpha 0.0", "alpha 1.0"]


def test_edit_bad_inputs(state):
    with pytest.raises(h.UserError, match="upload a face"):
        run(h.edit_stream(state, state.default_model, None, TEXT, None, 1.0, "fast", 0))
    face = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(h.UserError, match="alpha"):
        run(h.edit_stream(state, state.default_model, face, TEXT, None, 9.0, "fast", 0))
    with pytest.raises(h.UserError, match="give a"):
        run(h.edit_stream(state, state.default_model, face, "", None, 1.0, "fast", 0))
    with pytest.raises(h.UserError, match="face parser"):
        h.parse_to_mask(state, state.default_model, face)


def test_non_face_photo_is_refused_when_a_parser_is_installed(state, tmp_path, monkeypatch):
    class NoFace:
        def parse(self, images):
            return np.zeros(images.shape[:3], np.uint8)  # all background

    monkeypatch.setattr(state, "get_evaluator", lambda: NoFace())
    with pytest.raises(h.UserError, match="no face found"):
        run(h.edit_stream(state, state.default_model, np.zeros((16, 16, 3), np.uint8), TEXT, None, 1.0, "fast", 0))


def test_cancelling_a_stream_stops_the_worker(state):
    gen = h.generate_stream(state, state.default_model, TEXT, painter(face_mask()), 0, 200, 1.0, "ddim", 1, "",
                            preview_every=1)
    first = next(gen)
    assert first[2].startswith("step 1/")
    gen.close()  # what the Stop button does to a streaming handler


def test_about_and_models_table(state):
    md = h.about_markdown(state)
    assert "Responsible use" in md and "cpu" in md
    table = state.models_markdown()
    assert "official_256" in table and "missing" in table and "checkpoints/" in table
