"""Pictures the page shows: enlarged results, the mask preview the fill tool clicks on, the mask
overlay, and the influence frames (titled panels over a colour bar). numpy + PIL only."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from collab.masks import colorize, overlay
from collab.visualize import heatmap, upscale

PREVIEW_SIZE = 512  # the preview is served at least this large: the browser only ever shrinks it
OVERLAY_ALPHA = 0.3  # light enough to see the face under the mask
PANEL = 256  # influence panel size in the frames and the GIF
TITLE_PX = 20


def for_display(image: np.ndarray, min_size: int = 256) -> np.ndarray:
    """Nearest-neighbour upscale by a whole factor so small images are not shown as thumbnails."""
    k = max(1, -(-min_size // image.shape[0]))
    return image if k == 1 else np.repeat(np.repeat(image, k, axis=0), k, axis=1)


def preview_scale(shape: tuple[int, ...]) -> int:
    """The whole factor a mask of `shape` is enlarged by in its preview (>= PREVIEW_SIZE pixels).

    Gradio maps a click on an image to the image's own pixels assuming the browser shrinks it to
    fit; an image shown larger than its pixels gets its clicks mapped wrongly or dropped, so the
    preview is never smaller than its box."""
    return max(1, -(-PREVIEW_SIZE // max(shape[:2])))


def mask_preview(labels: np.ndarray) -> np.ndarray:
    """The labels in the palette's colours, enlarged by `preview_scale`."""
    k = preview_scale(labels.shape)
    return np.repeat(np.repeat(colorize(labels), k, axis=0), k, axis=1)


def preview_to_mask(x: int, y: int, shape: tuple[int, ...]) -> tuple[int, int] | None:
    """A click at preview pixel (x, y) -> the mask pixel under it, or None outside the picture."""
    k = preview_scale(shape)
    mx, my = int(x) // k, int(y) // k
    return (mx, my) if 0 <= mx < shape[1] and 0 <= my < shape[0] else None


def mask_overlay(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return for_display(overlay(image, labels, alpha=OVERLAY_ALPHA))


def _font(size: int = TITLE_PX) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def titled(image: np.ndarray, title: str, size: int = PANEL) -> np.ndarray:
    """An image enlarged (nearest) to `size`, under a readable title strip."""
    strip = Image.new("RGB", (size, TITLE_PX + 10), (24, 24, 24))
    ImageDraw.Draw(strip).text((6, 4), title, fill=(240, 240, 240), font=_font())
    return np.concatenate([np.asarray(strip), upscale(image, size)], axis=0)


def colour_bar(width: int, height: int = 18) -> np.ndarray:
    """The influence colour map from 0 to 1 with its ends and middle labelled."""
    ramp = heatmap(np.tile(np.linspace(0, 1, width - 80)[None], (height, 1)))
    canvas = Image.new("RGB", (width, height + TITLE_PX + 8), (255, 255, 255))
    canvas.paste(Image.fromarray(ramp), (40, 2))
    draw = ImageDraw.Draw(canvas)
    font = _font(TITLE_PX - 4)
    draw.text((4, 0), "0", fill=(0, 0, 0), font=font)
    draw.text((width - 34, 0), "1", fill=(0, 0, 0), font=font)
    draw.text((40, height + 4), "weight of the modality at each pixel: 0 (dark blue) to 1 (yellow); "
              "the weights sum to 1", fill=(0, 0, 0), font=_font(TITLE_PX - 6))
    return np.asarray(canvas)


def influence_frame(maps: dict[str, np.ndarray], x_t: np.ndarray | None, x0: np.ndarray, t: int) -> np.ndarray:
    """One step: each modality's map [h, w], then x_t (when given) and the predicted x0, titled,
    above a colour bar."""
    panels = [titled(heatmap(m), f"{name} weight") for name, m in maps.items()]
    if x_t is not None:
        panels.append(titled(x_t, f"noisy x_t, t={t}"))
    panels.append(titled(x0, "predicted x0"))
    row = np.concatenate(panels, axis=1)
    return np.concatenate([row, colour_bar(row.shape[1])], axis=0)
