"""Handles on the learned mix: per-condition strength and step window, and a painted "lead" region.

The page offers, per condition it takes (text, mask, attributes), a strength slider and the part of
the run in which the condition takes part, plus a brush layer where the user paints where one
condition should lead: those pixels get that condition's strength times a "lead" factor. `read`
turns the widgets' values into `Controls`; `Controls.handles(model, conds)` into the `strength` /
`window` arguments of `collab.pipeline.generate`, by modality name. The learned influence stays
the base: a strength multiplies it (`collab.combination.steer`).

`build` makes the widgets; `taking_controls(fn, widgets)` lets a Gradio event pass their values to
a handler's `controls=` keyword without listing them one by one (as named API parameters whose
defaults leave the learned mix as it is).
"""
from __future__ import annotations

import functools
import inspect
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from collab import kinds
from collab.model import CollaborativeModel

KINDS = ("text", "mask", "attributes")  # the page's conditions, as `handlers.conditions_from` reads them
MAX_STRENGTH = 16.0
LEAD_COLOUR = "#ff2bd6"  # the brush of the lead layer: a colour no mask class uses
CANVAS = 128
# the widgets' values in `read`'s order: their names as API parameters, and their defaults (no handle)
NAMES = tuple(f"{k}_{w}" for k in KINDS for w in ("strength", "start", "end")) + ("lead", "lead_strength",
                                                                                 "lead_region")
DEFAULTS = (1.0, 0.0, 1.0) * len(KINDS) + ("text", 4.0, None)


class ControlError(ValueError):
    """A control value the user can fix; the message is shown as is."""


@dataclass(frozen=True)
class Controls:
    """Values of the control widgets, by condition kind."""

    strength: dict[str, float] = field(default_factory=dict)  # kind -> multiplier (1 = the model's default mix)
    window: dict[str, tuple[float, float]] = field(default_factory=dict)  # kind -> (start, end), run fractions
    lead: str | None = None  # the kind whose painted region gets `lead_strength`
    lead_region: np.ndarray | None = None  # [H, W] bool: painted pixels
    lead_strength: float = 1.0

    @property
    def is_default(self) -> bool:
        painted = self.lead_region is not None and self.lead_strength != 1.0
        return (all(s == 1.0 for s in self.strength.values()) and not painted
                and all(w == (0.0, 1.0) for w in self.window.values()))

    def handles(self, model: CollaborativeModel, conds: dict) -> dict[str, dict]:
        """{"strength": {name: number or map}, "window": {name: (start, end)}} for the modalities of
        `model` in this run (matched by kind); only what differs from the default."""
        strength, window = {}, {}
        for m in model.config.modalities:
            kind = kinds.kind_of(m.encoder).reads  # the page's input it reads (a grid mask: the mask)
            if m.name not in conds or kind not in KINDS:
                continue
            s = self.strength.get(kind, 1.0)
            if kind == self.lead and self.lead_region is not None and self.lead_strength != 1.0:
                s = np.where(self.lead_region, s * self.lead_strength, s).astype(np.float32)
            if not isinstance(s, float) or s != 1.0:  # a slider is a multiple of the model's default strength
                strength[m.name] = s * m.strength
            if self.window.get(kind, (0.0, 1.0)) != (0.0, 1.0):
                window[m.name] = self.window[kind]
        if self.lead and self.lead_region is not None and self.lead_strength != 1.0 and not any(
                kinds.kind_of(m.encoder).reads == self.lead and m.name in conds
                for m in model.config.modalities):
            warnings.warn(f"you painted where the {self.lead} should lead, but this run has no {self.lead} "
                          "condition; the painted region was ignored")
        return {"strength": strength, "window": window}


def _number(value: Any, what: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ControlError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ControlError(f"{what} must be a finite number, got {value!r}")
    return x


def painted_region(value: Any) -> np.ndarray | None:
    """The lead brush layer's value -> [H, W] bool of painted pixels, or None when nothing is painted.

    Strokes live in the editor's layers (alpha > 0); a value without layers (an uploaded image, an
    API call) counts the pixels that differ from its background, or any opaque pixel without one."""
    if value is None:
        return None
    if not isinstance(value, dict):
        arr = np.asarray(value)
        region = arr[..., 3] > 0 if arr.ndim == 3 and arr.shape[2] == 4 else arr.astype(bool)
        return region if region.ndim == 2 and region.any() else None
    layers = [np.asarray(x) for x in value.get("layers") or [] if x is not None]
    if layers:
        region = np.zeros(layers[0].shape[:2], bool)
        for layer in layers:
            if layer.ndim == 3 and layer.shape[2] == 4 and layer.shape[:2] == region.shape:
                region |= layer[..., 3] > 0
        return region if region.any() else None
    composite, background = value.get("composite"), value.get("background")
    if composite is None or background is None:
        return None
    composite, background = np.asarray(composite), np.asarray(background)
    if composite.shape != background.shape:
        return None
    region = (composite != background).any(axis=-1)
    return region if region.any() else None


def read(*values: Any) -> Controls:
    """The widgets' values in `build`'s order: (strength, start, end) per kind of `KINDS`, then the
    lead kind, the lead strength and the brush layer."""
    if len(values) != 3 * len(KINDS) + 3:
        raise ControlError(f"expected {3 * len(KINDS) + 3} control values, got {len(values)}")
    strength, window = {}, {}
    for i, kind in enumerate(KINDS):
        s, a, b = (_number(v, f"the {kind} {w}") for v, w in zip(values[3 * i: 3 * i + 3], ("strength", "start", "end")))
        if not 0.0 <= s <= MAX_STRENGTH:
            raise ControlError(f"the {kind} strength must be between 0 and {MAX_STRENGTH:g}, got {s:g}")
        if not 0.0 <= a <= b <= 1.0:
            raise ControlError(f"the {kind} window must satisfy 0 <= start <= end <= 1 (fractions of the run), "
                               f"got start {a:g}, end {b:g}")
        strength[kind], window[kind] = s, (a, b)
    lead, lead_strength, brush = values[3 * len(KINDS):]
    if lead not in KINDS:
        raise ControlError(f"the painted region must belong to one of {', '.join(KINDS)}, got {lead!r}")
    lead_strength = _number(lead_strength, "the strength inside the painted region")
    if not 0.0 <= lead_strength <= MAX_STRENGTH:
        raise ControlError(f"the strength inside the painted region must be between 0 and {MAX_STRENGTH:g}, "
                           f"got {lead_strength:g}")
    return Controls(strength, window, lead, painted_region(brush), lead_strength)


def describe(settings) -> str:
    """What the page says about the handles a run used (its GenerationSettings)."""
    said = settings.describe_handles().strip(" |").replace(" | ", "; ")
    return said or "learned weights as they are (every strength 1, every window the whole run)"


# ---------------------------------------------------------------- widgets


def blank_canvas(size: int = CANVAS) -> dict:
    """A light grey canvas for the lead brush (strokes go to its layer)."""
    grey = np.full((size, size, 4), (235, 235, 235, 255), np.uint8)
    return {"background": grey, "layers": [], "composite": grey}


def under_mask(labels: np.ndarray | None) -> dict:
    """The lead canvas with the painted mask shown faintly underneath, to paint relative to the layout."""
    if labels is None:
        return blank_canvas()
    from collab.masks import colorize

    rgb = (0.45 * colorize(labels).astype(np.float32) + 0.55 * 235).astype(np.uint8)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1)
    return {"background": rgba, "layers": [], "composite": rgba}


@dataclass
class Widgets:
    components: list  # in `read`'s order
    canvas: Any  # the lead brush layer


def build(kinds: tuple[str, ...] = KINDS, mask_input: Any = None, read_mask: Callable | None = None,
          light: Callable[[Callable], Callable] = lambda fn: fn, events: dict | None = None) -> Widgets:
    """The control widgets (inside the caller's layout). A kind left out of `kinds` gets hidden
    widgets (its values stay the defaults). With `mask_input` and `read_mask`, a button shows the
    current mask under the brush layer. `light` wraps the buttons' handlers (readable errors, images
    as files) and `events` are their event options (the page queues every event)."""
    import gradio as gr

    events = events or {}
    d = dict(zip(NAMES, DEFAULTS))

    comps: list = []
    gr.Markdown("The learned influence stays the base. **Strength** multiplies a condition's weight at every "
                "pixel (then the weights sum to one again; 0 silences it, 4 lets it lead); 1 is the model's own "
                "default, which may already weight a condition up (About lists it). **From / until** is "
                "the part of the run in which it takes part (0 = first, noisiest step; 1 = last). Applies to "
                "Generate, Influence functions and Compare.")
    for kind in KINDS:
        with gr.Row(visible=kind in kinds):
            comps += [gr.Slider(0, MAX_STRENGTH, d[f"{kind}_strength"], step=0.05, label=f"{kind}: strength",
                                elem_id=f"ctl-{kind}-strength"),
                      gr.Slider(0, 1, d[f"{kind}_start"], step=0.05, label=f"{kind}: from",
                                elem_id=f"ctl-{kind}-start"),
                      gr.Slider(0, 1, d[f"{kind}_end"], step=0.05, label=f"{kind}: until", elem_id=f"ctl-{kind}-end")]
    with gr.Row():
        lead = gr.Radio([k for k in KINDS if k in kinds], value=d["lead"], label="Paint where this condition should "
                        "lead", elem_id="ctl-lead")
        lead_strength = gr.Slider(0, MAX_STRENGTH, d["lead_strength"], step=0.25, label="strength inside the painted "
                                  "region (times its slider)", elem_id="ctl-lead-strength")
    canvas = gr.ImageEditor(value=blank_canvas(), label="Where this condition should lead (paint; erase to undo)",
                            type="numpy", image_mode="RGBA", format="png", sources=(), layers=False, transforms=(),
                            brush=gr.Brush(colors=[LEAD_COLOUR], default_color=LEAD_COLOUR, color_mode="fixed",
                                           default_size=10),
                            eraser=gr.Eraser(default_size=12), height=300, elem_id="ctl-lead-canvas")
    with gr.Row():
        if mask_input is not None and read_mask is not None:
            show = gr.Button("Show the mask underneath", size="sm")
            show.click(light(lambda m: under_mask(read_mask(m))), mask_input, canvas, **events)
        clear = gr.Button("Clear the painted region", size="sm")
        clear.click(light(lambda: blank_canvas()), None, canvas, **events)
    comps += [lead, lead_strength, canvas]
    return Widgets(comps, canvas)


def taking_controls(fn: Callable, widgets: Widgets) -> Callable:
    """`fn(<inputs>, controls=None, progress=gr.Progress())` -> what Gradio calls with the control
    widgets' values after <inputs>: they are read into `controls=` (Gradio inserts special
    parameters such as a `gr.Request` or `progress` by their position in the signature, so the
    signature says where the values go). The values are named parameters (`NAMES`) defaulting to
    the widgets' defaults, so an API call that leaves them out gets the learned mix as it is."""
    if len(widgets.components) != len(NAMES):
        raise ValueError(f"expected {len(NAMES)} control widgets, got {len(widgets.components)}")
    sig = inspect.signature(fn)
    own = [p for p in sig.parameters.values() if p.name not in ("controls", "progress")]
    extra = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default)
             for name, default in zip(NAMES, DEFAULTS)]
    tail = [sig.parameters["progress"]] if "progress" in sig.parameters else []
    taking = sig.replace(parameters=own + extra + tail)

    def split(args, kwargs) -> dict:
        bound = taking.bind(*args, **kwargs)
        bound.apply_defaults()
        named = dict(bound.arguments)
        return named | {"controls": read(*(named.pop(name) for name in NAMES))}

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            yield from fn(**split(args, kwargs))
    else:
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            return fn(**split(args, kwargs))
    wrapped.__signature__ = taking
    return wrapped
