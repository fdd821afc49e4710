"""The app's handles on the mix: widgets' values -> strength / window by modality name -> the runs."""
import inspect
import json
import warnings

import numpy as np
import pytest
import torch

from collab.pipeline import generate
from collab_app import controls as C
from collab_app import handlers as h
from tests.app.conftest import face_mask
from tests.app.test_handlers import TEXT, gen_request, mixed_request, painter

DEFAULT = (1.0, 0.0, 1.0) * 3


def values(text=(1.0, 0.0, 1.0), mask=(1.0, 0.0, 1.0), lead="text", lead_strength=4.0, brush=None):
    return (*text, *mask, 1.0, 0.0, 1.0, lead, lead_strength, brush)


def brush(region):
    layer = np.zeros(region.shape + (4,), np.uint8)
    layer[region] = (255, 43, 214, 255)
    value = C.blank_canvas(region.shape[0])
    value["layers"] = [layer]
    return value


def test_defaults_are_the_learned_mix_and_give_no_handles(state):
    c = C.read(*values())
    assert c.is_default and c.lead_region is None
    assert c.handles(state.model(), {"mask": face_mask(), "text": TEXT}) == {"strength": {}, "window": {}}


def test_values_become_handles_by_modality_name(state):
    region = np.zeros((16, 16), bool)
    region[4:8, 4:12] = True
    c = C.read(*values(text=(2.0, 0.25, 1.0), mask=(1.0, 0.0, 0.6), lead="text", lead_strength=3.0,
                       brush=brush(region)))
    got = c.handles(state.model(), {"mask": face_mask(), "text": TEXT})
    assert got["window"] == {"mask": (0.0, 0.6), "text": (0.25, 1.0)}
    text_map = got["strength"]["text"]
    assert text_map.shape == (16, 16) and np.all(text_map[region] == 6.0) and np.all(text_map[~region] == 2.0)
    assert "mask" not in got["strength"]
    # a condition not in the run takes no part, and painting for it is said, not silently dropped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        only_mask = c.handles(state.model(), {"mask": face_mask()})
    assert only_mask == {"strength": {}, "window": {"mask": (0.0, 0.6)}}
    assert any("no text condition" in str(w.message) for w in caught)


def test_a_slider_multiplies_the_models_default_strength(state):
    from dataclasses import replace
    from types import SimpleNamespace

    cfg = state.model().config
    model = SimpleNamespace(config=replace(cfg, modalities=tuple(replace(m, strength=2.0) if m.name == "text" else m
                                                                 for m in cfg.modalities)))
    conds = {"mask": face_mask(), "text": TEXT}
    # 1 leaves the default to the pipeline (text x2 there); any other value is that multiple of it
    assert C.read(*values()).handles(model, conds)["strength"] == {}
    assert C.read(*values(text=(1.5, 0.0, 1.0), mask=(0.5, 0.0, 1.0))).handles(model, conds)["strength"] == {
        "text": 3.0, "mask": 0.5}


def test_painted_region_from_layers_from_a_plain_value_and_nothing():
    region = np.zeros((8, 8), bool)
    region[2:4, 1:6] = True
    assert np.array_equal(C.painted_region(brush(region)), region)
    assert C.painted_region(C.blank_canvas()) is None and C.painted_region(None) is None
    plain = C.blank_canvas(8)
    plain["composite"] = plain["composite"].copy()
    plain["composite"][region] = (255, 43, 214, 255)
    assert np.array_equal(C.painted_region(plain), region)


@pytest.mark.parametrize("bad, message", [
    (values(text=(20.0, 0, 1)), "text strength must be between 0 and 16"),
    (values(mask=(1.0, 0.8, 0.2)), "mask window must satisfy 0 <= start <= end <= 1"),
    (values(text=("lots", 0, 1)), "text strength must be a number"),
    (values(lead="sketch"), "must belong to one of text, mask, attributes"),
    (values(lead_strength=float("nan")), "finite"),
    (DEFAULT, "expected 12 control values"),
])
def test_bad_control_values_are_named(bad, message):
    with pytest.raises(C.ControlError, match=message):
        C.read(*bad)


def test_generate_with_controls_is_the_package_call_and_says_so(state):
    region = np.zeros((32, 32), bool)
    region[8:16] = True
    c = C.read(*values(text=(4.0, 0.0, 1.0), mask=(1.0, 0.0, 0.5), brush=brush(region)))
    req = gen_request(state, mask=painter(face_mask()), seed=2, steps=4)
    *_, final = h.generate_stream(state, req, controls=c)
    strength = np.where(region, 16.0, 4.0).astype(np.float32)
    direct = generate(state.model(), {"mask": face_mask(), "text": TEXT}, steps=4, seed=2, eta=1.0,
                      strength={"text": strength}, window={"mask": (0.0, 0.5)})
    assert np.array_equal(np.stack(final.images), direct.images)
    assert "strength text=map 8x8" in final.status and "window mask=0:0.5" in final.status
    settings = json.loads(final.settings)  # the result's settings carry the handles too
    assert settings["strength"]["text"].startswith("map 8x8") and settings["window"]["mask"] == [0.0, 0.5]
    *_, plain = h.generate_stream(state, req, controls=C.read(*values()))
    assert not np.array_equal(np.stack(plain.images), direct.images)


def test_influence_shows_the_window_and_states_it(state):
    c = C.read(*values(mask=(1.0, 0.0, 0.5)))
    req = mixed_request(state, mask=painter(face_mask()), seed=0, steps=5, rule="paper")
    *_, final = h.influence_stream(state, req, controls=c)
    assert "handles: window mask=0:0.5" in final.run.summary and "window mask=0:0.5" in final.status
    mask_line = final.plot.axes[0].lines[0].get_ydata()  # mean mask weight per step, first region
    assert np.all(mask_line[3:] == 0) and np.all(mask_line[:3] > 0)
    *_, plain = h.influence_stream(state, req)
    assert "every strength 1" in plain.run.summary


def test_compare_adds_the_steered_run_only_when_controls_are_set(state):
    c = C.read(*values(text=(8.0, 0.0, 1.0)))
    req = mixed_request(state, mask=painter(face_mask()), seed=1, steps=3, rule="paper", what="the comparison")
    final = list(h.compare_stream(state, req, controls=c))[-1].gallery
    titles = [t for _, t in final]
    assert titles[:4] == ["mask only", "text only", "composable", "collaborative (rule paper)"]
    assert titles[4] == "collaborative, steered (rule paper): strength text=8"
    steered = generate(state.model(), {"mask": face_mask(), "text": TEXT}, steps=3, seed=1, rule="paper",
                       strength={"text": 8.0})
    assert np.array_equal(final[4][0], steered.images[0]) and not np.array_equal(final[4][0], final[3][0])
    default = list(h.compare_stream(state, req, controls=C.read(*values())))[-1].gallery
    assert len(default) == 4


def test_taking_controls_puts_the_widgets_values_before_progress():
    import gradio as gr

    seen = {}

    def run(model, text, use=False, controls=None, progress=gr.Progress()):
        seen.update(model=model, text=text, use=use, controls=controls, progress=progress)
        yield "done"

    widgets = C.Widgets(components=[None] * 12, canvas=None)
    wrapped = C.taking_controls(run, widgets)
    params = list(inspect.signature(wrapped).parameters)
    assert params[:3] == ["model", "text", "use"] and params[-1] == "progress" and len(params) == 16
    assert params[3:6] == ["text_strength", "text_start", "text_end"] and params[-4:-1] == list(C.NAMES[-3:])
    marker = object()
    assert list(wrapped("m", "t", True, *values(text=(2.0, 0.0, 1.0)), marker)) == ["done"]
    assert seen["controls"].strength["text"] == 2.0 and seen["progress"] is marker and seen["use"] is True
    assert inspect.isgeneratorfunction(wrapped)
    # controls left out (an API call naming only some parameters) are the defaults: the learned mix
    assert list(wrapped("m", "t", mask_end=0.5)) == ["done"]
    assert seen["controls"].window["mask"] == (0.0, 0.5) and seen["controls"].strength["text"] == 1.0
    assert list(wrapped("m", "t")) == ["done"] and seen["controls"].is_default
    with pytest.raises(C.ControlError, match="text strength must be between 0 and 16"):
        list(wrapped("m", "t", text_strength=99))


def test_the_page_has_the_controls_and_passes_them(state):
    from collab_app.ui import build_app

    demo = build_app(state)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"ctl-text-strength", "ctl-mask-start", "ctl-mask-end", "ctl-lead-canvas", "gen-controls"} <= ids
    for name in ("generate", "influence", "compare"):  # the three jobs take the same controls
        job = next(fn for fn in demo.fns.values() if fn.api_name == name)
        assert [b._id for b in job.inputs[-12:]] == [b._id for b in gen_inputs(demo)[-12:]]
    api = demo.get_api_info()["named_endpoints"]["/generate"]["parameters"]
    assert [p["parameter_name"] for p in api[-12:]] == list(C.NAMES)
    assert all(fn.queue for fn in demo.fns.values() if fn.fn is not None and fn.name != "load_example")
    assert torch.get_num_threads() == 1


def gen_inputs(demo):
    return next(fn for fn in demo.fns.values() if fn.api_name == "generate").inputs


def test_a_bad_control_is_refused_before_the_job_runs(state):
    """The page's check step reads the controls: a bad value is a message, and no job starts."""
    import gradio as gr

    from collab_app.ui import build_app

    demo = build_app(state)
    gen = next(fn for fn in demo.fns.values() if fn.api_name == "generate")
    check = next(fn for fn in demo.fns.values() if fn.inputs == gen.inputs and fn.api_name != "generate")
    values_ = [state.default_model, TEXT, None, 0, False, 2, 1.0, "ddim", 1, "", False, []]
    with pytest.raises(gr.Error, match="mask window must satisfy"):
        check.fn(*values_, *values(mask=(1.0, 0.9, 0.1)), None)
    assert check.fn(*values_, *values(), None) is None
