"""Widget values -> what the package reads: text, the painted or uploaded mask, attributes, a face.

Plain values in and out (numpy arrays, strings, dicts), so tests call these directly. Mistakes raise
`UserError` with a message for the page.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from collab.classes import DISPLAY_NAMES, PALETTE
from collab.conditions import ConditionError
from collab.editing import prepare_image
from collab.masks import MaskError, colorize, flood_fill, load_mask, painted_labels
from collab.config import ModelConfig
from collab.matching import match_conditions

from collab_app import pictures
from collab_app.errors import UserError
from collab_app.limits import MAX_TEXT_CHARS, MAX_UPLOAD_PIXELS

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
FACE_CLASSES = ("skin", "nose", "left eye", "right eye", "mouth", "upper lip", "lower lip")
MIN_FACE_FRACTION = 0.04  # below this share of face pixels the parser sees no face
HOW_TO_GIVE = {"text": "write a description", "mask": "paint / upload a mask", "attributes": "tick attributes"}


def read_text(text: str | None) -> str | None:
    text = (text or "").strip()
    if not text:
        return None
    if len(text) > MAX_TEXT_CHARS:
        raise UserError(f"the text is {len(text)} characters long; keep it under {MAX_TEXT_CHARS} "
                        "(text encoders read only the first 32 to 77 tokens anyway)")
    return text


def read_mask(value: Any) -> np.ndarray | None:
    """The mask painter's value (dict with `composite` or `background`, or an image / path) ->
    labels, or None when nothing was painted (a transparent or all-background canvas). Painted
    pixels snap to the nearest palette class (strokes are anti-aliased)."""
    if value is None:
        return None
    if isinstance(value, dict):  # the editor's value; an example or upload may not be composed yet
        value = value.get("composite") if value.get("composite") is not None else value.get("background")
        if value is None:
            return None
    if isinstance(value, (str, Path)):
        return load_mask(value)
    array = np.asarray(value)
    if array.ndim == 3 and array.shape[2] == 4 and not array[..., 3].any():
        return None  # an untouched, fully transparent canvas
    if array.ndim >= 2 and array.shape[0] * array.shape[1] > MAX_UPLOAD_PIXELS:
        raise UserError(f"the mask is {array.shape[1]}x{array.shape[0]} pixels; at most {MAX_UPLOAD_PIXELS:,}")
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        return load_mask(array)
    labels = painted_labels(array)
    return labels if labels.any() else None  # all background: a blank canvas, no layout to follow


def painter_value(labels: np.ndarray) -> dict:
    rgb = colorize(labels)
    return {"background": rgb, "layers": [], "composite": rgb}


def load_mask_file(path: str | None) -> dict:
    """An uploaded mask file (palette PNG with label values, grey label PNG, colour PNG, .npy) ->
    the painter's value, shown in the official colours. Unknown colours are refused, named; the
    painter keeps its mask when an upload is refused."""
    if not path:
        raise UserError("no file was uploaded")
    try:
        labels = load_mask(path)
    except MaskError as e:  # say "mask.png", not the upload's temporary path
        raise UserError(str(e).replace(str(path), Path(path).name)) from None
    return painter_value(labels)


def blank_mask(size: int = 128) -> dict:
    return painter_value(np.zeros((size, size), np.uint8))


def mask_preview(value: Any) -> np.ndarray | None:
    """The painter's picture snapped to the palette and enlarged: what the model will read, and
    where fills click."""
    labels = read_mask(value)
    return None if labels is None else pictures.mask_preview(labels)


def fill_at(value: Any, class_name: str, x: int, y: int) -> dict:
    """The paint bucket: a click at preview pixel (x, y) fills the region under it with a class."""
    class_index = class_number(class_name)
    labels = read_mask(value)
    if labels is None:
        labels = np.zeros((128, 128), np.uint8)
    at = pictures.preview_to_mask(x, y, labels.shape)
    if at is None:
        raise UserError(f"the click at ({x}, {y}) is outside the {labels.shape[1]}x{labels.shape[0]} mask; "
                        "click on the picture")
    return painter_value(flood_fill(labels, at[1], at[0], class_index))


def class_number(class_name: str) -> int:
    if class_name not in DISPLAY_NAMES:
        raise UserError(f"unknown class {class_name!r}; choose one of {', '.join(DISPLAY_NAMES)}")
    return DISPLAY_NAMES.index(class_name)


def brush_colours() -> list[str]:
    return ["#%02x%02x%02x" % rgb for rgb in PALETTE]


def brush_colour(class_name: str) -> str:
    return brush_colours()[class_number(class_name)]


def read_attributes(ticked: Any) -> list[str] | None:
    """The attribute picker's value -> the names that hold ([] = none of them), or None when the
    page sends no attribute condition (its "condition on attributes" box is off)."""
    if ticked is None:
        return None
    if isinstance(ticked, str):
        ticked = [t for t in ticked.split(",") if t.strip()]
    return [str(t).strip() for t in ticked]


def conditions_from(config: ModelConfig, text: str | None, mask: np.ndarray | None,
                    attributes: list[str] | None = None) -> dict:
    """The raw conditions for a model's modalities, matched by the package (`collab.matching`: a
    joint modality when every one of its parts is given); what the model does not read is warned."""
    given = {"text": text, "mask": mask, "attributes": None if attributes is None else ", ".join(attributes) or "none"}
    try:
        match = match_conditions(config, given, HOW_TO_GIVE)
    except ConditionError as e:
        raise UserError(str(e)) from None
    if match.unread:  # said, not silently dropped
        warnings.warn(match.unread_message())
    return match.conditions


def read_face(image: Any, size: int) -> np.ndarray:
    """An uploaded face (path or array) -> RGB uint8 [size, size, 3]; huge or unreadable files refused."""
    if image is None:
        raise UserError("upload a face image to edit")
    try:
        pixels, note = prepare_image(image, size, MAX_UPLOAD_PIXELS)
    except ValueError as e:
        raise UserError(str(e).replace(str(image), Path(str(image)).name)) from None
    if note:
        warnings.warn(f"input image {note}")
    return np.array(pixels)  # writable (torch refuses read-only buffers)


def check_face(evaluator, image: np.ndarray) -> None:
    """Refuse images in which the evaluator's parser finds no face (when an evaluator is installed)."""
    if evaluator is None:
        return
    labels = evaluator.parse(image[None])[0]
    face = np.isin(labels, [DISPLAY_NAMES.index(c) for c in FACE_CLASSES]).mean()
    if face < MIN_FACE_FRACTION:
        raise UserError(f"no face found in this image (the face parser sees {face:.1%} face pixels); "
                        "upload a frontal, centred face photo")


def example_files(kind: str) -> list[str]:
    d = EXAMPLES_DIR / kind
    return sorted(str(p) for p in d.glob("*.png")) if d.exists() else []


def example_captions() -> list[str]:
    f = EXAMPLES_DIR / "captions.txt"
    if f.exists():
        return [line.strip() for line in f.read_text().splitlines() if line.strip()]
    return ["This man has beard of medium length. He is in his thirties.", "She is in her twenties."]
