"""The app's handlers called directly, as the page calls them."""
import inspect
import warnings

import numpy as np
import pytest
from PIL import Image

from collab.masks import colorize, save_mask_png
from collab.pipeline import generate
from collab_app import handlers as h
from tests.app.conftest import face_mask

TEXT = "This man has beard of medium length. He is in his thirties."


def painter(labels):
    rgb = colorize(labels)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1)
    return {"background": rgba, "layers": [], "composite": rgba}


class Recorder:
    """Stands in for gr.Progress."""

    def __init__(self):
        self.calls = []

    def __call__(self, value, desc=None, **kwargs):
        self.calls.append((value, desc))


def test_generate_streams_previews_then_the_seeded_result(state):
    progress = Recorder()
    outs = list(h.generate_stream(state, state.default_model, TEXT, painter(face_mask()), 3, 5, 1.0, "ddim", 2, "",
                                  preview_every=2, progress=progress))
    previews, final = outs[:-1], outs[-1]
    assert [p[2].split(":")[0] for p in previews] == ["step 1/5", "step 3/5"]
    images, over, status = final
    assert len(images) == 2 and images[0].shape == (16, 16, 3) and over.shape == (256, 256, 3)
    assert "seed=3" in status and "mode=collaborative" in status
    assert [v for v, _ in progress.calls] == [(i, 5) for i in range(1, 6)]
    # the same request through the package gives the same pixels
    direct = generate(state.model(), {"text": TEXT, "mask": face_mask()}, steps=5, eta=1.0, seed=3, batch_size=2)
    assert np.array_equal(np.stack(images), direct.images)


def test_text_only_and_mask_only_requests(state):
    *_, (images, over, status) = h.generate_stream(state, "", TEXT, None, 0, 2, 0.0, "dpmpp_2m", 1, "")
    assert over is None and status.startswith("done: text |")
    *_, (images, over, status) = h.generate_stream(state, "", "", painter(face_mask()), 0, 2, 1.0, "ddim", 1, "")
    assert over is not None and status.startswith("done: mask |")


def test_painted_strokes_are_snapped_and_blank_canvas_means_no_mask():
    labels = face_mask()
    value = painter(labels)
    value["composite"][0, 0, :3] = (200, 3, 4)  # an anti-aliased skin-ish pixel
    got = h.read_mask(value)
    assert got[0, 0] == 1 and np.array_equal(got[1:], labels[1:])
    assert h.read_mask({"background": None, "layers": [], "composite": np.zeros((8, 8, 4), np.uint8)}) is None
    assert h.read_mask(None) is None
    assert h.read_mask(h.blank_mask()) is None  # all background: nothing painted
    assert np.array_equal(h.mask_preview(value)[0, 0], (204, 0, 0))


@pytest.mark.parametrize("text, steps, seed, message", [
    ("", 4, 0, "give a condition this model reads"),
    ("x" * 2000, 4, 0, "2000 characters long"),
    (TEXT, 0, 0, "steps must be between 1 and 200"),
    (TEXT, None, 0, "must be numbers"),
    (TEXT, 4, "abc", "the seed must be a whole number"),
    (TEXT, 4, -1, "the seed must be between"),
])
def test_bad_generation_inputs_have_readable_messages(state, text, steps, seed, message):
    with pytest.raises(h.UserError, match=message):
        list(h.generate_stream(state, state.default_model, text, None, seed, steps, 1.0, "ddim", 1, ""))


def test_unknown_model_is_named(state):
    with pytest.raises(ValueError, match="'no_such_model' is not available here; choose one of"):
        list(h.generate_stream(state, "no_such_model", TEXT, None, 0, 2, 1.0, "ddim", 1, ""))


def test_friendly_turns_errors_into_gradio_errors_and_warnings_into_toasts(state, monkeypatch):
    import gradio as gr

    shown = []
    monkeypatch.setattr(gr, "Warning", lambda msg: shown.append(msg))

    def run(*a, progress=gr.Progress()):
        yield from h.generate_stream(state, *a, progress=progress)

    wrapped = h.friendly(run)
    # gradio finds the progress tracker through the wrapper
    assert isinstance(inspect.signature(wrapped).parameters["progress"].default, gr.Progress)
    with pytest.raises(gr.Error, match="give a"):
        list(wrapped(state.default_model, "", None, 0, 4, 1.0, "ddim", 1, ""))
    with pytest.raises(gr.Error, match=r"Something went wrong \(ZeroDivisionError"):
        h.friendly(lambda: 1 / 0)()
    with pytest.raises(gr.Error, match="unknown sampler 'euler'"):
        list(wrapped(state.default_model, TEXT, None, 0, 2, 1.0, "euler", 1, ""))
    h.friendly(lambda: warnings.warn("the mask is not square"))()
    assert shown == ["the mask is not square"]


def test_mask_upload_formats_and_bad_files(tmp_path):
    labels = face_mask()
    save_mask_png(labels, tmp_path / "palette.png")
    assert np.array_equal(h.read_mask(h.load_mask_file(str(tmp_path / "palette.png"))), labels)
    Image.fromarray(colorize(labels)).save(tmp_path / "colour.png")
    assert np.array_equal(h.read_mask(h.load_mask_file(str(tmp_path / "colour.png"))), labels)
    bad = np.zeros((16, 16, 3), np.uint8)
    bad[:] = (123, 45, 67)  # no class has this colour
    Image.fromarray(bad).save(tmp_path / "bad.png")
    with pytest.raises(h.UserError, match=r"^bad.png: .*not official palette colours"):
        h.load_mask_file(str(tmp_path / "bad.png"))
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(h.UserError, match="cannot read mask file notes.png"):
        h.load_mask_file(str(tmp_path / "notes.png"))
    Image.new("L", (5000, 4000)).save(tmp_path / "huge.png")  # 20 Mpx of zeros: a small file
    with pytest.raises(h.UserError, match="huge.png"):
        h.load_mask_file(str(tmp_path / "huge.png"))
    with pytest.raises(h.UserError, match="at most"):
        h.read_mask(np.zeros((5000, 4000, 4), np.uint8) + 255)


def test_fill_tool_and_class_colours():
    value = painter(face_mask())
    filled = h.fill_at(value, "hat", 0, 0)  # click on the background corner
    labels = h.read_mask(filled)
    assert (labels[face_mask() == 0] == 14).all() and (labels[face_mask() == 1] == 1).all()
    assert h.brush_colour("skin") == "#cc0000" and len(h.brush_colours()) == 19
    with pytest.raises(h.UserError, match="unknown class 'fur'"):
        h.fill_at(value, "fur", 0, 0)


def test_influence_frames_gif_and_plot(state):
    progress = Recorder()
    *statuses, (run, image, fig) = h.influence_stream(state, state.default_model, TEXT, painter(face_mask()), 0, 5,
                                                      "official", progress=progress)
    assert all(isinstance(s, str) for s in statuses) and len(statuses) == 2
    assert len(run.frames) == 5 and run.rule == "official" and "official" in run.summary
    # frame = one heatmap per modality, x_t and x0, each with a caption strip
    assert run.frames[0].shape == (192 + 12, 4 * 192, 3)
    frame, where = h.influence_frame(run, 99)
    assert where.endswith("step 5/5, t = 1") and np.array_equal(np.asarray(Image.open(frame)), run.frames[-1])
    assert Image.open(run.gif).n_frames >= 5
    assert len(fig.axes) == 2 and "rule: official" in fig._suptitle.get_text()
    assert (5, 5) in [v for v, _ in progress.calls]
    *_, (paper, _, _) = h.influence_stream(state, state.default_model, TEXT, painter(face_mask()), 0, 3, "paper")
    assert paper.rule == "paper" and not np.array_equal(paper.frames[0], run.frames[0])
    with pytest.raises(h.UserError, match="needs at least two modalities"):
        list(h.influence_stream(state, state.default_model, TEXT, None, 0, 5, ""))
    assert h.influence_frame(run, 1)[0] == h.influence_frame(run, 0)[0] == run.files[0]
    assert h.influence_frame(None, 1) == (None, "record a generation first")


def test_compare_four_ways_same_seed(state):
    outs = list(h.compare_stream(state, state.default_model, TEXT, painter(face_mask()), 1, 3, "paper"))
    assert [len(o) for o in outs] == [1, 2, 3, 4]  # the gallery fills as each run finishes
    final = outs[-1]
    assert [c for _, c in final] == ["mask only", "text only", "composable (equal weights)", "collaborative"]
    model = state.model()
    expected = generate(model, {"mask": face_mask(), "text": TEXT}, mode="composable", steps=3, seed=1, rule="paper")
    assert np.array_equal(final[2][0], expected.images[0])
    assert not np.array_equal(final[2][0], final[3][0])  # learned weights differ from equal weights


def test_compare_with_an_evaluator_adds_metrics(state, tmp_path):
    from collab.evaluator import AttributeClassifier, ClassifierConfig, Evaluator, FaceParser, ParserConfig

    Evaluator(FaceParser(ParserConfig(widths=(8, 16), image_size=16)),
              AttributeClassifier(ClassifierConfig(widths=(8, 16), image_size=16))).save(tmp_path / "ev")
    state.evaluator_dir = tmp_path / "ev"
    assert state.has_evaluator()
    *_, final = h.compare_stream(state, state.default_model, TEXT, painter(face_mask()), 1, 2, "")
    assert all("mask mIoU" in c and "reads as" in c for _, c in final)
    # and the parser starts the edit mask from a face
    value = h.parse_to_mask(state, state.default_model, np.zeros((40, 40, 3), np.uint8))
    assert value["composite"].shape == (16, 16, 3)


def test_edit_streams_stages_and_returns_a_strip(state, monkeypatch, tmp_path):
    from collab.editing import EditSettings

    monkeypatch.setattr(EditSettings, "fast", classmethod(lambda cls: cls(embed_steps=3, finetune_steps=3,
                                                                          trainable="attention")))
    face = (np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)  # not square: cropped
    Image.fromarray(face).save(tmp_path / "face.png")
    progress = Recorder()
    with pytest.warns(UserWarning, match="centre-cropped from 30x40"):
        outs = list(h.edit_stream(state, state.default_model, str(tmp_path / "face.png"), TEXT, None, 1.0, "fast", 0,
                                  steps=3, strip=(0.0, 1.0), progress=progress))
    stages = [o[0] for o in outs]
    assert "text: embedding: 3/3 (loss" in stages[0] and any("text: fine-tuning: 3/3" in s for s in stages)
    assert ((3, 3), "text: embedding") in progress.calls
    status, edited, strip = outs[-1]
    assert status.startswith("done (fast preset") and edited.shape == (256, 256, 3)  # shown enlarged
    assert [c for _, c in strip] == ["input", "alpha 0.0", "alpha 1.0"]


def test_edit_bad_inputs(state, tmp_path):
    face = np.zeros((16, 16, 3), np.uint8)
    cases = [(None, TEXT, 1.0, "faithful", "upload a face"), (face, TEXT, 9.0, "fast", "alpha must be between"),
             (face, "", 1.0, "fast", "give a"), (face, TEXT, 1.0, "slow", "unknown preset 'slow'")]
    for image, text, alpha, preset, message in cases:
        with pytest.raises(h.UserError, match=message):
            list(h.edit_stream(state, state.default_model, image, text, None, alpha, preset, 0))
    (tmp_path / "cat.png").write_bytes(b"GIF89a not really")
    with pytest.raises(h.UserError, match="cannot read the input image"):
        list(h.edit_stream(state, state.default_model, str(tmp_path / "cat.png"), TEXT, None, 1.0, "fast", 0))
    Image.new("RGB", (5000, 4000)).save(tmp_path / "huge.png")
    with pytest.raises(h.UserError, match="5000x4000 pixels, more than"):
        list(h.edit_stream(state, state.default_model, str(tmp_path / "huge.png"), TEXT, None, 1.0, "fast", 0))
    with pytest.raises(h.UserError, match="no face parser is installed"):
        h.parse_to_mask(state, state.default_model, face)


def test_non_face_photo_is_refused_when_a_parser_is_installed(state, monkeypatch):
    class NoFace:
        def parse(self, images):
            return np.zeros(images.shape[:3], np.uint8)  # all background

    monkeypatch.setattr(state, "get_evaluator", lambda: NoFace())
    with pytest.raises(h.UserError, match="no face found"):
        list(h.edit_stream(state, state.default_model, np.zeros((16, 16, 3), np.uint8), TEXT, None, 1.0, "fast", 0))


def test_closing_a_stream_stops_the_worker_and_frees_the_model(state):
    gen = h.generate_stream(state, state.default_model, TEXT, painter(face_mask()), 0, 200, 1.0, "ddim", 1, "",
                            preview_every=1)
    first = next(gen)
    assert first[2].startswith("step 1/")
    gen.close()  # what the Stop button does to a streaming handler
    lock = state.busy()
    assert lock.acquire(timeout=10)  # the worker stopped and let go of the model
    lock.release()


def test_models_load_once_and_about(state):
    assert state.model() is state.model(state.default_model)
    md = h.about_markdown(state)
    assert "Responsible use" in md and "cpu" in md and "impersonat" in md
    table = state.models_markdown()
    assert "official_256" in table and "missing" in table and "checkpoints/" in table


def test_the_page_builds_with_named_endpoints(state):
    from collab_app.ui import build_app

    demo = build_app(state)
    names = {fn.api_name for fn in demo.fns.values()}
    assert {"generate", "edit", "influence", "compare"} <= names


def test_overlapping_jobs_get_their_own_warnings_every_time(monkeypatch):
    """Warnings reach the page of the request that raised them, from its worker thread too, and a
    repeated warning is shown again (no process-wide 'once')."""
    import threading

    import gradio as gr

    shown = []
    monkeypatch.setattr(gr, "Warning", lambda msg: shown.append((threading.current_thread().name, msg)))
    barrier = threading.Barrier(2)

    def job(name):
        barrier.wait()  # both jobs are inside their handler at once
        for _ in range(20):
            warnings.warn(f"from {name}")
        barrier.wait()

    threads = [threading.Thread(target=h.friendly(job), args=(n,), name=n) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(shown) == [("a", "from a"), ("b", "from b")]

    def streaming():
        for kind, payload in h._Stream(lambda report, cancelled: warnings.warn("inside the worker")):
            yield kind

    shown.clear()
    for _ in range(2):
        assert list(h.friendly(streaming)()) == ["result"]
    assert [m for _, m in shown] == ["inside the worker", "inside the worker"]
