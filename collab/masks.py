"""Segmentation-mask conditions: label maps of the 19 face classes and their one-hot encoding."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image

from collab import validate
from collab.classes import CLASS_NAMES, NUM_CLASSES, PALETTE

MASK_GRID = 32  # the official mask encoder sees a 32x32 label grid (1024 tokens per class)


def downsample_labels(labels: np.ndarray, size: int = MASK_GRID) -> np.ndarray:
    """Resize an [H, W] label map to [size, size] with PIL NEAREST, as the official preprocessing."""
    if labels.shape == (size, size):
        return labels.astype(np.uint8, copy=False)
    return np.asarray(Image.fromarray(labels.astype(np.uint8), mode="L").resize((size, size), Image.NEAREST))


def labels_to_onehot(labels: np.ndarray | torch.Tensor, size: int = MASK_GRID) -> torch.Tensor:
    """[H, W] integer labels -> one-hot [19, size*size] float32 (class-major, row-major pixels)."""
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if labels.ndim != 2:
        raise ValueError(f"a label map must be 2-D [H, W], got shape {tuple(labels.shape)}")
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise ValueError(f"label values must be 0..{NUM_CLASSES - 1}, found {int(labels.max())}")
    small = torch.from_numpy(downsample_labels(labels, size).astype(np.int64)).reshape(-1)
    return torch.nn.functional.one_hot(small, NUM_CLASSES).T.float().contiguous()


# --- user mask input ---------------------------------------------------------------------------
# Everything below turns what a user brings (palette PNG, colour PNG/JPEG, grayscale label PNG,
# array) into an [H, W] uint8 label map, with errors that say what is wrong with the file.

MAX_MASK_PIXELS = 4096 * 4096
_PALETTE = np.array(PALETTE, dtype=np.uint8)  # [19, 3]
# Full 256-entry palette for saved PNGs: the 19 class colours, then a grey ramp as the official files.
_PNG_PALETTE = [v for rgb in PALETTE for v in rgb] + [v for i in range(NUM_CLASSES, 256) for v in (i, i, i)]
_LOSSY_FORMATS = {"JPEG", "MPO", "WEBP", "JPEG2000"}
# Rows map RGB to (luma, blue-difference, red-difference) chroma (ITU-R BT.601).
_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.1687, -0.3313, 0.5], [0.5, -0.4187, -0.0813]])


class MaskError(ValueError):
    """A mask the user gave cannot be read as a face label map; the message says why."""


@dataclass(frozen=True)
class ColourMatch:
    """How closely a colour mask must follow the official palette."""

    tolerance: int = 8  # max per-channel distance still counted as a palette colour
    max_unknown: float = 0.005  # fraction of pixels allowed beyond it (snapped to the nearest)
    luma_weight: float | None = None  # None: RGB distance; else YCbCr with luma scaled by this


EXACT_COLOURS = ColourMatch()
# JPEG keeps luma at full resolution but averages chroma over 2x2 blocks, so boundary pixels take
# mixed hues: trust brightness more and accept more off-palette pixels.
LOSSY_COLOURS = ColourMatch(tolerance=48, max_unknown=0.15, luma_weight=8.0)


def _class_list() -> str:
    return ", ".join(f"{i} {name} {rgb}" for i, (name, rgb) in enumerate(zip(CLASS_NAMES, PALETTE)))


def _format_values(values: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f" (and {len(values) - limit} more)" if len(values) > limit else "")


def _numeric(array: np.ndarray, what: str) -> np.ndarray:
    """Refuse complex, object, string and structured arrays before any arithmetic on them."""
    try:
        return validate.numeric_array(what, array, finite=False)
    except TypeError as e:
        raise MaskError(str(e)) from None


def check_label_values(labels: np.ndarray) -> np.ndarray:
    """[H, W] integer labels -> uint8, or MaskError naming the values outside 0..18."""
    labels = _numeric(np.asarray(labels), "a label map")
    if labels.ndim != 2:
        raise MaskError(f"a label map must be 2-D [H, W], got shape {labels.shape}")
    if labels.size == 0:
        raise MaskError(f"the mask is empty (shape {labels.shape})")
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise MaskError(f"label values must be whole numbers 0..{NUM_CLASSES - 1}, got {labels.dtype} "
                            "values with fractions")
        labels = labels.astype(np.int64)
    if labels.min() >= 0 and labels.max() < NUM_CLASSES:
        return labels.astype(np.uint8, copy=False)
    values = np.unique(labels)
    bad = values[(values < 0) | (values >= NUM_CLASSES)]
    if len(bad) and set(values.tolist()) <= {0, 255}:
        raise MaskError("this is a binary black/white (0/255) image, but a mask must be a label map: one "
                        f"class per pixel, as values 0..{NUM_CLASSES - 1} or the official palette colours "
                        f"({_class_list()})")
    if len(bad):
        raise MaskError(f"label values must be 0..{NUM_CLASSES - 1} (the {NUM_CLASSES} face classes), found "
                        f"{_format_values(bad)}; classes: {_class_list()}")
    return labels.astype(np.uint8)


# --- colours -> labels

def _nearest_palette(colours: np.ndarray, luma_weight: float | None) -> tuple[np.ndarray, np.ndarray]:
    """[N, 3] colours -> (nearest class [N], max channel distance to its colour [N])."""
    space = np.eye(3) if luma_weight is None else np.diag([luma_weight, 1.0, 1.0]) @ _YCBCR
    palette = _PALETTE.astype(np.float64) @ space.T  # [19, 3]
    nearest = np.empty(len(colours), dtype=np.uint8)
    for start in range(0, len(colours), 1 << 16):  # chunks bound the [n, 19, 3] temporary
        chunk = colours[start:start + (1 << 16)].astype(np.float64) @ space.T
        nearest[start:start + len(chunk)] = ((chunk[:, None] - palette[None]) ** 2).sum(-1).argmin(1)
    distance = np.abs(colours.astype(np.int16) - _PALETTE[nearest].astype(np.int16)).max(1)
    return nearest, distance


def _unique_colours(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[H, W, 3] uint8 -> (distinct colours [U, 3], pixel -> colour index [H*W], counts [U])."""
    flat = rgb.reshape(-1, 3).astype(np.uint32)
    keys, inverse, counts = np.unique(flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2],
                                      return_inverse=True, return_counts=True)
    colours = np.stack([keys >> 16, keys >> 8 & 255, keys & 255], 1).astype(np.uint8)
    return colours, inverse.reshape(-1), counts


def _check_rgb(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """[H, W, 3|4] 0..255 -> (uint8 RGB, alpha or None)."""
    rgb = _numeric(np.asarray(rgb), "a colour mask")
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise MaskError(f"a colour mask must be [H, W, 3] (or RGBA [H, W, 4]), got shape {rgb.shape}")
    if rgb.size == 0:
        raise MaskError(f"the mask is empty (shape {rgb.shape})")
    if rgb.dtype != np.uint8:
        if not np.issubdtype(rgb.dtype, np.integer) or rgb.min() < 0 or rgb.max() > 255:
            raise MaskError(f"colour mask values must be integers 0..255 (uint8), got {rgb.dtype} "
                            f"in [{rgb.min()}, {rgb.max()}]")
        rgb = rgb.astype(np.uint8)
    return np.ascontiguousarray(rgb[..., :3]), (rgb[..., 3] if rgb.shape[2] == 4 else None)


def snap_to_palette(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3|4] colours -> [H, W, 3] uint8, every pixel the nearest official palette colour
    (fully transparent pixels become background). Never fails; for hand-painted, anti-aliased masks."""
    rgb, alpha = _check_rgb(rgb)
    colours, inverse, _ = _unique_colours(rgb)
    labels = _nearest_palette(colours, None)[0][inverse].reshape(rgb.shape[:2])
    if alpha is not None:
        labels[alpha == 0] = 0
    return _PALETTE[labels]


def _unknown_colours_message(colours: np.ndarray, counts: np.ndarray, fraction: float, match: ColourMatch) -> str:
    order = np.argsort(-counts)[:5]
    listed = ", ".join(f"{tuple(int(v) for v in colours[i])} x {int(counts[i])} px" for i in order)
    return (f"{fraction:.1%} of the mask's pixels are not official palette colours (more than "
            f"{match.tolerance} from every one; at most {match.max_unknown:.1%} may be): unknown colours "
            f"{listed}. Paint with the palette ({_class_list()}), or pass the pixels through "
            "snap_to_palette() to force the nearest colour.")


def _match_colours(rgb: np.ndarray, match: ColourMatch) -> tuple[np.ndarray, float]:
    """[H, W, 3|4] colours -> ([H, W] labels, fraction of pixels that were off the palette)."""
    rgb, alpha = _check_rgb(rgb)
    if alpha is None and np.all(rgb == rgb[..., :1]) and rgb.max() < NUM_CLASSES:
        return rgb[..., 0].copy(), 0.0  # a grey label map (values 0..18) saved as RGB
    colours, inverse, _ = _unique_colours(rgb)
    nearest, distance = _nearest_palette(colours, match.luma_weight)
    far = distance[inverse] > match.tolerance  # [H*W]
    if alpha is not None:  # transparent pixels are background whatever their colour
        far &= alpha.reshape(-1) > 0
    fraction = float(far.mean())
    if fraction > match.max_unknown:
        counts = np.bincount(inverse[far], minlength=len(colours))
        unknown = np.flatnonzero(counts)
        raise MaskError(_unknown_colours_message(colours[unknown], counts[unknown], fraction, match))
    labels = nearest[inverse].reshape(rgb.shape[:2])
    if alpha is not None:
        labels[alpha == 0] = 0
    return labels, fraction


def rgb_to_labels(rgb: np.ndarray, match: ColourMatch = EXACT_COLOURS) -> np.ndarray:
    """[H, W, 3|4] palette colours -> [H, W] uint8 labels. Near colours snap to the nearest class;
    MaskError, naming the most frequent unknown colours, when too many pixels match none."""
    labels, fraction = _match_colours(rgb, match)
    if fraction > 0:
        warnings.warn(f"{fraction:.2%} of the mask's pixels matched no palette colour and were snapped to "
                      "the nearest class", stacklevel=2)
    return labels


# --- images and arrays -> labels

def _labels_from_palette_image(image: Image.Image) -> np.ndarray:
    """"P" images: the pixel value is the label (the official format)."""
    indices = np.asarray(image)[..., 0] if image.mode == "PA" else np.asarray(image)
    palette = np.array((image.getpalette() or []) + [0] * 768, dtype=np.uint8)[:768].reshape(256, 3)
    used = np.unique(indices)
    if used.size and used.max() >= NUM_CLASSES:
        try:  # an editor may re-index a correctly coloured mask: read it by colour then
            labels = rgb_to_labels(np.asarray(image.convert("RGB")))
        except MaskError:
            raise MaskError(f"palette mask has pixel values {_format_values(used[used >= NUM_CLASSES])} "
                            f"outside 0..{NUM_CLASSES - 1}; in official mask PNGs the pixel value is the "
                            f"label ({_class_list()})") from None
        warnings.warn("palette mask has pixel values above 18 but official palette colours: read it by colour",
                      stacklevel=4)
        return labels
    # Warn only for a genuinely re-ordered official palette: distinct official colours, other indices.
    shown = [PALETTE.index(tuple(palette[i])) if tuple(palette[i]) in PALETTE else -1 for i in used.tolist()]
    if min(shown) >= 0 and len(set(shown)) == len(shown) and shown != used.tolist():
        warnings.warn("the PNG palette draws some labels in another class's official colour; the pixel values "
                      "are used as labels (as in official mask PNGs), so the model sees other classes than the "
                      "picture shows", stacklevel=4)
    return indices.astype(np.uint8)


def _labels_from_image(image: Image.Image, lossy: bool = False) -> np.ndarray:
    if image.width == 0 or image.height == 0:
        raise MaskError(f"the mask image is empty ({image.width}x{image.height})")
    if image.mode in ("P", "PA"):
        return _labels_from_palette_image(image)
    if image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
        grey = image.getchannel(0) if image.mode == "LA" else image
        return check_label_values(np.asarray(grey.convert("L") if image.mode == "1" else grey))
    rgb = np.asarray(image if image.mode in ("RGB", "RGBA") else image.convert("RGB"))
    if not lossy:
        return rgb_to_labels(rgb)
    labels, fraction = _match_colours(rgb, LOSSY_COLOURS)
    warnings.warn(f"the mask is a lossy (JPEG-like) image, whose compression blurs class boundaries: "
                  f"{fraction:.1%} of its pixels were off the palette and snapped to the nearest class; "
                  "save masks as PNG for exact labels", stacklevel=4)
    return labels


def _labels_from_array(array: np.ndarray) -> np.ndarray:
    _numeric(array, "a mask array")
    if array.size == 0:
        raise MaskError(f"the mask array is empty (shape {array.shape})")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        return check_label_values(array)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return rgb_to_labels(array)
    hint = " (channels first? use [H, W, 3])" if array.ndim == 3 and array.shape[0] in (3, 4) else ""
    raise MaskError(f"a mask array must be [H, W] labels or [H, W, 3] RGB colours, got shape {array.shape}{hint}")


def _check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    if width * height > max_pixels:
        raise MaskError(f"{what} is {width}x{height} = {width * height:,} pixels, above the limit of "
                        f"{max_pixels:,} (max_pixels); a mask is resized to {MASK_GRID}x{MASK_GRID} anyway, "
                        "so downscale it (nearest) first")


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a .npy file claims, from its header alone: nothing is allocated, so a
    caller refuses a huge or unusable array before `np.load` would build it."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"unsupported .npy format version {version}; save with numpy.save")
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    return shape, dtype


def _check_npy_header(path: Path, max_pixels: int) -> None:
    """Refuse a mask .npy whose dtype or shape we cannot use before anything is allocated."""
    try:
        shape, dtype = npy_header(path)
    except ValueError as e:
        raise MaskError(str(e)) from None
    if dtype.kind not in "biuf":
        raise MaskError(f"a mask array must hold numbers (bool, integer or real), got dtype {dtype}")
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3, 4)):
        raise MaskError(f"a mask array must be [H, W] labels or [H, W, 3] RGB colours, got shape {shape}")
    _check_pixels(shape[1], shape[0], max_pixels, "the mask array")


def _labels_from_file(path: Path, max_pixels: int) -> np.ndarray:
    try:
        path = validate.file_path("mask", path, "mask file")
    except (TypeError, ValueError) as e:  # a FIFO, a device, a name too long, ...
        raise MaskError(str(e)) from None
    try:
        if path.suffix.lower() == ".npy":
            _check_npy_header(path, max_pixels)
            return _labels_from_array(np.load(path, allow_pickle=False))
        with warnings.catch_warnings():  # our own limit decides, before PIL's bomb heuristics
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_pixels(image.width, image.height, max_pixels, "the image")  # before decoding
                image.load()
                return _labels_from_image(image, lossy=image.format in _LOSSY_FORMATS)
    except MaskError as e:
        raise MaskError(f"{path}: {e}") from None
    except Image.DecompressionBombError as e:  # too large even to open
        raise MaskError(f"{path}: the image is far above the limit of {max_pixels:,} pixels ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise MaskError(f"cannot read mask file {path}: {e}") from e


MaskSource = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]


def load_mask(source: MaskSource, size: int | None = None, *, max_pixels: int = MAX_MASK_PIXELS) -> np.ndarray:
    """A user mask -> [H, W] uint8 labels 0..18 (or [size, size], resized nearest).

    Sources: a file path (palette PNG as the official masks, grayscale label PNG, colour PNG/JPEG in
    the official palette, .npy), a PIL image, or an array ([H, W] labels or [H, W, 3] colours).
    """
    size = None if size is None else validate.integer("size", size, 1, 4096)
    if isinstance(source, (str, os.PathLike)):
        labels = _labels_from_file(Path(source), max_pixels)
    elif isinstance(source, Image.Image):
        _check_pixels(source.width, source.height, max_pixels, "the mask image")
        labels = _labels_from_image(source, lossy=source.format in _LOSSY_FORMATS)
    elif isinstance(source, (np.ndarray, torch.Tensor)):
        array = _numeric(source, "a mask array")
        if isinstance(array, torch.Tensor):  # numpy has no bfloat16
            array = (array.float() if array.dtype == torch.bfloat16 else array).detach().cpu().numpy()
        if array.ndim >= 2:
            _check_pixels(array.shape[1], array.shape[0], max_pixels, "the mask array")
        labels = _labels_from_array(array)
    else:
        raise TypeError("a mask must be a file path, a PIL image or an array ([H, W] labels or [H, W, 3] "
                        f"colours), got {type(source).__name__}")
    h, w = labels.shape
    if h != w:
        side = size or MASK_GRID
        warnings.warn(f"the mask is {w}x{h} (width x height), not square; it is resized to {side}x{side}, "
                      "which stretches the face: crop or pad it to a square to keep proportions", stacklevel=2)
    return labels if size is None else downsample_labels(labels, size)


def mask_to_condition(source: MaskSource) -> torch.Tensor:
    """A user mask -> the mask encoder's input, one-hot [19, 1024]."""
    return labels_to_onehot(load_mask(source))


# --- labels -> pictures

def colorize(labels: np.ndarray) -> np.ndarray:
    """[H, W] labels -> [H, W, 3] uint8 in the official palette."""
    return _PALETTE[check_label_values(labels)]


def save_mask_png(labels: np.ndarray, path: str | os.PathLike) -> Path:
    """Write labels as an official-format palette PNG (pixel value = label); load_mask reads it back."""
    image = Image.fromarray(check_label_values(labels))
    image.putpalette(_PNG_PALETTE)  # "L" + palette -> "P"
    path = Path(path)
    image.save(path, format="PNG")
    return path


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the coloured mask over an [H, W, 3] uint8 image (labels resized nearest to fit),
    to judge how well a generated face follows its mask."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (0: image only, 1: mask only), got {alpha}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise ValueError(f"image must be [H, W, 3] uint8, got shape {image.shape} {image.dtype}")
    labels = check_label_values(labels)
    h, w = image.shape[:2]
    if labels.shape != (h, w):
        labels = np.asarray(Image.fromarray(labels).resize((w, h), Image.NEAREST))
    blend = (1.0 - alpha) * image[..., :3].astype(np.float32) + alpha * _PALETTE[labels].astype(np.float32)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


# --- editing label maps (used by mask painters)

def painted_labels(rgba: np.ndarray) -> np.ndarray:
    """A hand-painted mask (anti-aliased, maybe lossy, RGBA or RGB) -> [H, W] labels: every pixel
    takes the nearest palette class, transparent pixels are background."""
    return rgb_to_labels(snap_to_palette(rgba))


def flood_fill(labels: np.ndarray, y: int, x: int, value: int) -> np.ndarray:
    """The 4-connected region of the label at (y, x) set to `value` (a copy; the paint-bucket tool)."""
    labels = check_label_values(labels)
    try:
        value = validate.integer("value", value, 0, NUM_CLASSES - 1)
        y, x = validate.integer("y", y), validate.integer("x", x)
    except (TypeError, ValueError) as e:
        raise MaskError(f"fill: {e}") from None
    h, w = labels.shape
    if not (0 <= y < h and 0 <= x < w):
        raise MaskError(f"fill point ({x}, {y}) is outside the {w}x{h} mask")
    out = labels.copy()
    if labels[y, x] != value:
        same = labels == labels[y, x]
        run_id, comp = _run_components(same)
        out[same & (comp[run_id] == comp[run_id[y, x]])] = value
    return out


def _run_components(same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the True pixels of [H, W], over horizontal runs: (run id per pixel,
    valid where `same`; component of each run).

    Vectorised Shiloach-Vishkin: every round hooks each component's root onto the smallest root it
    touches, then pointer jumping flattens the trees. Each round at least halves the components that
    still touch another, so a 4096x4096 mask takes a few whole-array passes per round and a handful of
    rounds (at most log2 of the runs), never a pass per pixel of the region's diameter."""
    h, w = same.shape
    starts = same.copy()
    starts[:, 1:] &= ~same[:, :-1]  # first pixel of each run
    run_id = np.cumsum(starts.reshape(-1), dtype=np.int32).reshape(h, w) - 1
    both = same[:-1] & same[1:]  # a run and the run below share this column
    first = both.copy()
    first[:, 1:] &= ~both[:, :-1]  # one edge per pair of touching runs
    rows, cols = np.nonzero(first)
    u, v = run_id[rows, cols], run_id[rows + 1, cols]
    comp = np.arange(int(starts.sum()), dtype=np.int32)
    while len(u):
        cu, cv = comp[u], comp[v]
        lo, hi = np.minimum(cu, cv), np.maximum(cu, cv)
        apart = lo != hi
        u, v, lo, hi = u[apart], v[apart], lo[apart], hi[apart]
        np.minimum.at(comp, hi, lo)  # roots only point to smaller roots: no cycles
        while True:
            jumped = comp[comp]
            if np.array_equal(jumped, comp):
                break
            comp = jumped
    return run_id, comp
