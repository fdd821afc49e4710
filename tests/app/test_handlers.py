"""The app's jobs and widget readers called directly, as the page calls them."""
import inspect
import json
import threading
import warnings

import numpy as np
import pytest
from PIL import Image

from collab.masks import colorize, save_mask_png
from collab.pipeline import generate
from collab_app import controls as C
from collab_app import handlers as h
from collab_app import inputs as ui_in
from collab_app import pictures
from collab_app.errors import UserError, friendly
from collab_app.limits import read_seed
from tests.app.conftest import face_mask

TEXT = "This man has beard of medium length. He is in his thirties."


def painter(labels):
    rgb = colorize(labels)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1)
    return {"background": rgba, "layers": [], "composite": rgba}


def gen_request(state, text=TEXT, mask=None, seed=0, steps=2, eta=1.0, sampler="ddim", batch=1, rule="", **kw):
    return h.generate_request(state, state.default_model, text, mask, seed, steps, eta, sampler, batch, rule, **kw)


def mixed_request(state, text=TEXT, mask=None, seed=0, steps=3, rule="", what="the influence view", **kw):
    return h.collaborative_request(state, state.default_model, text, mask, seed, steps, rule, what, **kw)


class Recorder:
    """Stands in for gr.Progress."""

    def __init__(self):
        self.calls = []

    def __call__(self, value, desc=None, **kwargs):
        self.calls.append((value, desc))


def test_generate_streams_previews_then_the_seeded_result(state):
    progress = Recorder()
    req = gen_request(state, mask=painter(face_mask()), seed=3, steps=5, batch=2)
    first, *previews, final = h.generate_stream(state, req, preview_every=2, progress=progress)
    assert (first.seed, first.steps, first.images) == (3, 5, h.KEEP)  # the values used go back to the page first
    assert [p.status.split(":")[0] for p in previews] == ["step 1/5", "step 3/5"]
    assert len(final.images) == 2 and final.images[0].shape == (16, 16, 3) and final.overlay.shape == (256, 256, 3)
    assert "seed 3" in final.status and "collaborative, rule paper" in final.status
    settings = json.loads(final.settings)
    assert (settings["seed"], settings["steps"], settings["modalities"], settings["text"]) == (3, 5, ["mask", "text"],
                                                                                               TEXT)
    assert [v for v, _ in progress.calls] == [(i, 5) for i in range(1, 6)]
    # the same request through the package gives the same pixels
    direct = generate(state.model(), {"text": TEXT, "mask": face_mask()}, steps=5, eta=1.0, seed=3, batch_size=2)
    assert np.array_equal(np.stack(final.images), direct.images)


def test_text_only_and_mask_only_requests(state):
    *_, final = h.generate_stream(state, gen_request(state, sampler="dpmpp_2m", eta=0.0))
    assert final.overlay is None and final.status.startswith("done: text | text alone")
    *_, final = h.generate_stream(state, gen_request(state, text="", mask=painter(face_mask())))
    assert final.overlay is not None and final.status.startswith("done: mask | mask alone")


def test_the_overlay_is_light(state):
    image = np.full((16, 16, 3), 200, np.uint8)
    over = pictures.mask_overlay(image, np.ones((16, 16), np.uint8))  # skin is (204, 0, 0)
    assert over.shape == (256, 256, 3) and over[0, 0, 1] == round(0.7 * 200)  # 70% of the face shows through


def test_randomized_seeds_are_used_and_returned(state):
    seeds = {gen_request(state, randomize=True, seed=5).seed for _ in range(5)}
    assert len(seeds) > 1 and all(0 <= s < 2**31 for s in seeds)
    req = gen_request(state, randomize=True)
    first, *_, final = h.generate_stream(state, req)
    assert first.seed == req.seed and json.loads(final.settings)["seed"] == req.seed


def test_numbers_are_corrected_to_one_set_of_bounds_and_said(state):
    with pytest.warns(UserWarning) as caught:
        req = gen_request(state, steps=0, seed=3.7, batch=99, eta=1.5)
    assert (req.steps, req.seed, req.batch, req.eta) == (1, 4, 8, 1.0)
    messages = " | ".join(str(w.message) for w in caught)
    assert "steps 0 is outside 1..200" in messages and "seed 3.7 is not a whole number: using 4" in messages
    with pytest.warns(UserWarning, match="steps 5000 is outside 1..200: using 200"):
        assert mixed_request(state, mask=painter(face_mask()), steps=5000).steps == 200


@pytest.mark.parametrize("text, steps, seed, message", [
    ("", 4, 0, "give a condition this model reads .*you gave none"),
    ("x" * 2000, 4, 0, "2000 characters long"),
    (TEXT, None, 0, "steps must be a number between 1 and 200"),
    (TEXT, float("nan"), 0, "steps must be a finite number"),
    (TEXT, 4, "abc", "the seed must be a whole number"),
    (TEXT, 4, -1, "the seed must be between"),
])
def test_bad_generation_inputs_have_readable_messages(state, text, steps, seed, message):
    with pytest.raises(UserError, match=message):
        gen_request(state, text=text, steps=steps, seed=seed)


def test_unknown_model_is_named(state):
    with pytest.raises(ValueError, match="'no_such_model' is not available here; choose one of"):
        h.generate_request(state, "no_such_model", TEXT, None, 0, 2, 1.0, "ddim", 1, "")


def test_friendly_turns_errors_into_gradio_errors_and_warnings_into_toasts(state, monkeypatch):
    import gradio as gr

    shown = []
    monkeypatch.setattr(gr, "Warning", lambda msg: shown.append(msg))

    def run(text, sampler, progress=gr.Progress()):
        yield from h.generate_stream(state, gen_request(state, text=text, sampler=sampler), progress=progress)

    wrapped = friendly(run)
    # gradio finds the progress tracker through the wrapper
    assert isinstance(inspect.signature(wrapped).parameters["progress"].default, gr.Progress)
    with pytest.raises(gr.Error, match="give a"):
        list(wrapped("", "ddim"))
    with pytest.raises(gr.Error, match=r"Something went wrong \(ZeroDivisionError"):
        friendly(lambda: 1 / 0)()
    with pytest.raises(gr.Error, match="unknown sampler 'euler'"):
        list(wrapped(TEXT, "euler"))
    friendly(lambda: warnings.warn("the mask is not square"))()
    assert shown == ["the mask is not square"]


def test_painted_strokes_are_snapped_and_blank_canvas_means_no_mask():
    labels = face_mask()
    value = painter(labels)
    value["composite"][0, 0, :3] = (200, 3, 4)  # an anti-aliased skin-ish pixel
    got = ui_in.read_mask(value)
    assert got[0, 0] == 1 and np.array_equal(got[1:], labels[1:])
    assert ui_in.read_mask({"background": None, "layers": [], "composite": np.zeros((8, 8, 4), np.uint8)}) is None
    assert ui_in.read_mask(None) is None
    assert ui_in.read_mask(ui_in.blank_mask()) is None  # all background: nothing painted
    # an example or upload the browser has not composed yet: the background is the mask
    assert np.array_equal(ui_in.read_mask({"background": colorize(labels), "layers": [], "composite": None}), labels)
    preview = ui_in.mask_preview(value)
    assert preview.shape == (512, 512, 3) and np.array_equal(preview[15, 15], (204, 0, 0))  # 32 px -> 16x


def test_mask_upload_formats_and_bad_files(tmp_path):
    labels = face_mask()
    save_mask_png(labels, tmp_path / "palette.png")
    assert np.array_equal(ui_in.read_mask(ui_in.load_mask_file(str(tmp_path / "palette.png"))), labels)
    Image.fromarray(colorize(labels)).save(tmp_path / "colour.png")
    assert np.array_equal(ui_in.read_mask(ui_in.load_mask_file(str(tmp_path / "colour.png"))), labels)
    bad = np.zeros((16, 16, 3), np.uint8)
    bad[:] = (123, 45, 67)  # no class has this colour
    Image.fromarray(bad).save(tmp_path / "bad.png")
    with pytest.raises(UserError, match=r"^bad.png: .*not official palette colours"):
        ui_in.load_mask_file(str(tmp_path / "bad.png"))
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(UserError, match="cannot read mask file notes.png"):
        ui_in.load_mask_file(str(tmp_path / "notes.png"))
    Image.new("L", (5000, 4000)).save(tmp_path / "huge.png")  # 20 Mpx of zeros: a small file
    with pytest.raises(UserError, match="huge.png"):
        ui_in.load_mask_file(str(tmp_path / "huge.png"))
    with pytest.raises(UserError, match="at most"):
        ui_in.read_mask(np.zeros((5000, 4000, 4), np.uint8) + 255)
    with pytest.raises(UserError, match="no file was uploaded"):  # never a None that would wipe the painter
        ui_in.load_mask_file(None)


def test_fill_clicks_map_from_the_enlarged_preview_to_the_mask():
    value = painter(face_mask())  # 32x32, previewed 16x larger
    labels = ui_in.read_mask(ui_in.fill_at(value, "hat", 3, 5))  # a click on the background corner
    assert (labels[face_mask() == 0] == 14).all() and (labels[face_mask() == 1] == 1).all()
    # a click on preview pixel (16 * 16 + 3, 16 * 16 + 9) lands on mask pixel (16, 16): the skin square
    labels = ui_in.read_mask(ui_in.fill_at(value, "nose", 16 * 16 + 3, 16 * 16 + 9))
    assert (labels[face_mask() == 1] == 2).all() and (labels[face_mask() == 0] == 0).all()
    with pytest.raises(UserError, match=r"the click at \(512, 3\) is outside the 32x32 mask"):
        ui_in.fill_at(value, "hat", 512, 3)
    assert ui_in.brush_colour("skin") == "#cc0000" and len(ui_in.brush_colours()) == 19
    with pytest.raises(UserError, match="unknown class 'fur'"):
        ui_in.fill_at(value, "fur", 0, 0)


def test_influence_previews_frames_gif_and_plot(state):
    progress = Recorder()
    req = mixed_request(state, mask=painter(face_mask()), steps=5, rule="official")
    first, *middle, final = h.influence_stream(state, req, preview_every=2, progress=progress)
    assert first.seed == 0 and first.steps == 5
    previews = [v for v in middle if v.frame is not h.KEEP]
    assert [v.status for v in previews] == ["recording: step 1/5", "recording: step 3/5"]
    assert previews[0].frame.shape[1] == 3 * pictures.PANEL  # two maps and the predicted x0 while recording
    run = final.run
    assert len(run.frames) == 5 and run.rule == "official" and "official" in run.summary and final.slider == 5
    # a frame: one titled heatmap per modality, x_t and x0, over a colour bar
    frame = np.asarray(Image.open(run.frames[0]))
    assert frame.shape[1] == 4 * pictures.PANEL and frame.shape[0] > pictures.PANEL + pictures.TITLE_PX
    path, where = h.influence_caption(run, 99)
    assert where.endswith("step 5/5, t = 1") and path == run.frames[-1]
    assert Image.open(run.gif).n_frames >= 5
    assert len(final.plot.axes) == 2 and "rule official" in final.plot._suptitle.get_text()
    assert (5, 5) in [v for v, _ in progress.calls]
    *_, paper = h.influence_stream(state, mixed_request(state, mask=painter(face_mask()), rule="paper"))
    assert paper.run.rule == "paper"
    with pytest.raises(UserError, match="needs at least two modalities"):
        mixed_request(state)
    assert h.influence_caption(run, 1)[0] == h.influence_caption(run, 0)[0] == run.frames[0]
    assert h.influence_caption(None, 1) == (None, "record a generation first")


def test_compare_runs_the_evaluations_methods_from_one_seed(state):
    req = mixed_request(state, mask=painter(face_mask()), seed=1, rule="paper", what="the comparison")
    first, *outs, final = h.compare_stream(state, req)
    assert [len(o.gallery) for o in outs] == [1, 2, 3, 4]  # the gallery fills as each run finishes
    gallery = outs[-1].gallery
    assert [c for _, c in gallery] == ["mask only", "text only", "composable", "collaborative (rule paper)"]
    expected = generate(state.model(), {"mask": face_mask(), "text": TEXT}, mode="composable", steps=3, seed=1,
                        rule="paper")
    assert np.array_equal(gallery[2][0], expected.images[0])
    assert not np.array_equal(gallery[2][0], gallery[3][0])  # learned weights differ from equal weights
    assert final.status.startswith("done: 4 runs from seed 1")


def test_compare_with_an_evaluator_adds_metrics(state, tmp_path):
    from collab.evaluator import AttributeClassifier, ClassifierConfig, Evaluator, FaceParser, ParserConfig
    from collab_app.edit_job import parse_to_mask

    Evaluator(FaceParser(ParserConfig(widths=(8, 16), image_size=16)),
              AttributeClassifier(ClassifierConfig(widths=(8, 16), image_size=16))).save(tmp_path / "ev")
    state.evaluator_dir = tmp_path / "ev"
    assert state.has_evaluator()
    req = mixed_request(state, mask=painter(face_mask()), seed=1, steps=2, what="the comparison")
    *_, outs, final = h.compare_stream(state, req)
    assert all("mask mIoU" in c and "reads as" in c for _, c in outs.gallery)
    # and the parser starts the edit mask from a face
    value = parse_to_mask(state, state.default_model, np.zeros((40, 40, 3), np.uint8))
    assert value["composite"].shape == (16, 16, 3)


def test_stop_ends_a_job_with_what_it_has_and_frees_the_model(state):
    stop = threading.Event()
    req = gen_request(state, mask=painter(face_mask()), steps=200)
    views = h.generate_stream(state, req, preview_every=1, stop=stop)
    next(views)
    assert next(views).status.startswith("step 1/200")
    stop.set()  # what the Stop button does
    rest = list(views)
    assert rest[-1].status.startswith("stopped") and rest[-1].images is h.KEEP  # the last previews stay
    with state.turn(state.default_model):  # the worker let go of the model
        pass


def test_closing_a_stream_stops_the_worker_and_frees_the_model(state):
    views = h.generate_stream(state, gen_request(state, mask=painter(face_mask()), steps=200), preview_every=1)
    next(views)
    assert next(views).status.startswith("step 1/")
    views.close()  # a closed page
    done = threading.Event()
    threading.Thread(target=lambda: (state.turn().__enter__(), done.set()), daemon=True).start()
    assert done.wait(timeout=10)


def test_a_waiting_job_says_how_many_are_ahead(state):
    started, release = threading.Event(), threading.Event()
    state.model()

    def holder():
        with state.turn():
            started.set()
            release.wait(timeout=30)

    threading.Thread(target=holder, daemon=True).start()
    assert started.wait(timeout=10)
    assert h.waiting_note(state, state.default_model) == f"waiting for model `{state.default_model}`: 1 job(s) ahead"
    views = h.generate_stream(state, gen_request(state))
    assert "1 job(s) ahead" in next(views).status
    assert next(views).status == "waiting: 1 job(s) ahead"  # said from the line itself, while it waits
    release.set()
    assert list(views)[-1].status.startswith("done")


def test_seed_reading():
    assert read_seed(7) == 7 and read_seed(2**63 - 1) == 2**63 - 1
    with pytest.raises(UserError, match="between 0 and 2"):
        read_seed(2**63)


def test_the_page_builds_with_exactly_four_public_endpoints(state):
    from collab_app.ui import PUBLIC_ENDPOINTS, build_app

    demo = build_app(state)
    info = demo.get_api_info()
    assert sorted(info["named_endpoints"]) == sorted(f"/{n}" for n in PUBLIC_ENDPOINTS)
    assert not info["unnamed_endpoints"]
    generate_api = info["named_endpoints"]["/generate"]
    assert [p["parameter_name"] for p in generate_api["parameters"]] == [
        "model", "text", "mask", "seed", "randomize_seed", "steps", "eta", "sampler", "batch_size", "rule",
        "use_attributes", "attributes", *C.NAMES]
    edit_api = info["named_endpoints"]["/edit"]
    assert [p["parameter_name"] for p in edit_api["parameters"]][-3:] == ["attributes", "keep_layout", "strength"]
    assert all(p["parameter_has_default"] for p in edit_api["parameters"][-2:])  # left out: the default mix
    assert all(not r["label"].startswith("value_") for e in info["named_endpoints"].values() for r in e["returns"])
    # every event is queued: an error in an unqueued one reaches the page as a bare "Error" badge
    assert all(fn.queue for fn in demo.fns.values() if fn.fn is not None and fn.name != "load_example")


def test_overlapping_jobs_get_their_own_warnings_every_time(monkeypatch):
    """Warnings reach the page of the request that raised them, from its worker thread too, and a
    repeated warning is shown again (no process-wide 'once')."""
    import gradio as gr

    from collab_app.streaming import run_in_thread

    shown = []
    monkeypatch.setattr(gr, "Warning", lambda msg: shown.append((threading.current_thread().name, msg)))
    barrier = threading.Barrier(2)

    def job(name):
        barrier.wait()  # both jobs are inside their handler at once
        for _ in range(20):
            warnings.warn(f"from {name}")
        barrier.wait()

    threads = [threading.Thread(target=friendly(job), args=(n,), name=n) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(shown) == [("a", "from a"), ("b", "from b")]

    def streaming():
        for kind, payload in run_in_thread(lambda report, cancelled: warnings.warn("inside the worker")):
            yield kind

    shown.clear()
    for _ in range(2):
        assert list(friendly(streaming)()) == ["result"]
    assert [m for _, m in shown] == ["inside the worker", "inside the worker"]
