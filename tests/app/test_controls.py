"""The app's handles on the mix: widgets' values -> strength / window by modality name -> the runs."""
import inspect
import warnings

import numpy as np
import pytest
import torch

from collab.pipeline import generate
from collab_app import controls as C
from collab_app import handlers as h
from tests.app.conftest import face_mask
from tests.app.test_handlers import TEXT, painter

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
    *_, (images, _, status) = h.generate_stream(state, "", TEXT, painter(face_mask()), 2, 4, 1.0, "ddim", 1, "",
                                                controls=c)
    strength = np.where(region, 16.0, 4.0).astype(np.float32)
    direct = generate(state.model(), {"mask": face_mask(), "text": TEXT}, steps=4, seed=2, eta=1.0,
                      strength={"text": strength}, window={"mask": (0.0, 0.5)})
    assert np.array_equal(np.stack(images), direct.images)
    assert "strength text=map 8x8" in status and "window mask=0:0.5" in status
    *_, (plain, _, _) = h.generate_stream(state, "", TEXT, painter(face_mask()), 2, 4, 1.0, "ddim", 1, "",
                                          controls=C.read(*values()))
    assert not np.array_equal(np.stack(plain), direct.images)


def test_influence_shows_the_window_and_states_it(state):
    c = C.read(*values(mask=(1.0, 0.0, 0.5)))
    *_, (run, _, fig) = h.influence_stream(state, "", TEXT, painter(face_mask()), 0, 5, "paper", controls=c)
    assert "handles: window mask=0:0.5" in run.summary
    mask_line = fig.axes[0].lines[0].get_ydata()  # mean mask weight per step, first region
    assert np.all(mask_line[3:] == 0) and np.all(mask_line[:3] > 0)
    *_, (plain, _, _) = h.influence_stream(state, "", TEXT, painter(face_mask()), 0, 5, "paper")
    assert "every strength 1" in plain.summary


def test_compare_adds_the_steered_run_only_when_controls_are_set(state):
    c = C.read(*values(text=(8.0, 0.0, 1.0)))
    final = list(h.compare_stream(state, "", TEXT, painter(face_mask()), 1, 3, "paper", controls=c))[-1]
    titles = [t for _, t in final]
    assert titles[:4] == ["mask only", "text only", "composable (equal weights)", "collaborative"]
    assert titles[4] == "collaborative, steered: strength text=8"
    steered = generate(state.model(), {"mask": face_mask(), "text": TEXT}, steps=3, seed=1, rule="paper",
                       strength={"text": 8.0})
    assert np.array_equal(final[4][0], steered.images[0]) and not np.array_equal(final[4][0], final[3][0])
    default = list(h.compare_stream(state, "", TEXT, painter(face_mask()), 1, 3, "paper",
                                    controls=C.read(*values())))[-1]
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
    marker = object()
    assert list(wrapped("m", "t", True, *values(text=(2.0, 0.0, 1.0)), marker)) == ["done"]
    assert seen["controls"].strength["text"] == 2.0 and seen["progress"] is marker and seen["use"] is True
    assert inspect.isgeneratorfunction(wrapped)


def test_the_page_has_the_controls_and_passes_them(state):
    from collab_app.ui import build_app

    demo = build_app(state)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"ctl-text-strength", "ctl-mask-start", "ctl-mask-end", "ctl-lead-canvas", "gen-controls"} <= ids
    gen = next(fn for fn in demo.fns.values() if fn.api_name == "generate")
    assert len(gen.inputs) == 11 + 12
    assert torch.get_num_threads() == 1
