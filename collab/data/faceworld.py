"""A deterministic procedural face world: stylised frontal faces with pixel-aligned 19-class label maps.

Every face comes from a seed: `render(seed)` gives the RGB image, the label map (CelebAMask-HQ
classes and indices, see `collab.classes`), the attribute record and a caption. Parts are drawn as
signed-distance shapes on a pixel grid: soft edges in the image, hard labels in the map, painted
back to front. Attributes only the text can carry (age, beard) are textures: the beard stays
"skin" in the labels, as in CelebA-HQ.

CelebAMask-HQ names sides from the person's point of view: `l_eye` (the person's left eye) appears
on the image's right. Brows and ears follow the same rule here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from collab.classes import CLASS_INDEX as C

AGES = ("teen", "twenties", "thirties", "forties", "fifties", "elderly")
BEARDS = ("none", "stubble", "short", "medium", "long")
HAIR_STYLES = ("bald", "short", "medium", "long")
HAIR_COLOURS = {"black": (35, 28, 25), "brown": (95, 60, 35), "blond": (200, 165, 100), "red": (150, 65, 35),
                "grey": (150, 150, 150), "white": (225, 225, 220)}
SKIN_TONES = ((250, 218, 190), (236, 192, 160), (214, 165, 125), (178, 125, 88), (135, 90, 62), (95, 62, 45))
BINARY_ATTRIBUTES = ("male", "young", "old", "beard", "smiling", "mouth_open", "bangs", "eyeglasses", "hat",
                     "earrings", "necklace", "bald")


@dataclass(frozen=True)
class FaceAttributes:
    gender: str  # "man" | "woman"
    age: int  # 0..5, see AGES
    beard: int  # 0..4, see BEARDS (always 0 for women)
    smiling: bool
    mouth_open: bool
    bangs: bool
    hair_style: str
    hair_colour: str
    skin_tone: int
    eyeglasses: bool
    hat: bool
    earrings: bool
    necklace: bool
    # geometry and colour jitter (not expressed by captions)
    face_width: float = 0.39
    face_height: float = 0.52
    offset_x: float = 0.0
    offset_y: float = 0.0
    scale: float = 1.0
    eye_colour: tuple[int, int, int] = (70, 100, 140)
    cloth_colour: tuple[int, int, int] = (60, 90, 150)
    background: tuple[int, int, int] = (200, 205, 215)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_binary_vector(self) -> np.ndarray:
        values = {"male": self.gender == "man", "young": self.age <= 1, "old": self.age >= 4,
                  "beard": self.beard >= 1, "smiling": self.smiling, "mouth_open": self.mouth_open,
                  "bangs": self.bangs, "eyeglasses": self.eyeglasses, "hat": self.hat, "earrings": self.earrings,
                  "necklace": self.necklace, "bald": self.hair_style == "bald"}
        return np.array([values[k] for k in BINARY_ATTRIBUTES], dtype=np.float32)


@dataclass
class FaceSample:
    image: np.ndarray  # uint8 [H, W, 3]
    labels: np.ndarray  # uint8 [H, W]
    attributes: FaceAttributes
    caption: str


def _colour(rng: np.random.Generator, base: tuple[int, int, int], spread: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.normal(0, spread), 0, 255)) for c in base)


def sample_attributes(rng: np.random.Generator) -> FaceAttributes:
    man = rng.random() < 0.5
    age = int(rng.integers(0, 6))
    beard = int(rng.choice(5, p=[0.3, 0.175, 0.175, 0.175, 0.175])) if man and age > 0 else 0
    style = rng.choice(HAIR_STYLES, p=[0.12, 0.5, 0.25, 0.13] if man else [0.0, 0.15, 0.35, 0.5])
    if age >= 5:
        colour = rng.choice(["grey", "white"])
    elif age == 4:
        colour = rng.choice(["grey", "black", "brown"], p=[0.6, 0.2, 0.2])
    else:
        colour = rng.choice(["black", "brown", "blond", "red"], p=[0.35, 0.35, 0.2, 0.1])
    smiling = bool(rng.random() < 0.4)
    cloth = tuple(int(v) for v in rng.integers(30, 220, 3))
    bg = tuple(int(v) for v in rng.integers(120, 240, 3))
    return FaceAttributes(
        gender="man" if man else "woman", age=age, beard=beard, smiling=smiling,
        mouth_open=bool(rng.random() < (0.35 if smiling else 0.12)), bangs=bool(style != "bald" and rng.random() < 0.3),
        hair_style=str(style), hair_colour=str(colour), skin_tone=int(rng.integers(0, len(SKIN_TONES))),
        eyeglasses=bool(rng.random() < 0.2), hat=bool(rng.random() < 0.12), earrings=bool(rng.random() < (0.08 if man else 0.3)),
        necklace=bool(rng.random() < (0.05 if man else 0.2)),
        face_width=float(rng.uniform(0.36, 0.42) * (1.04 if man else 1.0)), face_height=float(rng.uniform(0.48, 0.55)),
        offset_x=float(rng.uniform(-0.05, 0.05)), offset_y=float(rng.uniform(-0.04, 0.04)),
        scale=float(rng.uniform(0.9, 1.08)),
        eye_colour=_colour(rng, [(70, 100, 140), (90, 60, 35), (60, 110, 70), (50, 40, 35)][int(rng.integers(0, 4))], 12),
        cloth_colour=cloth, background=bg)


# ---------------------------------------------------------------- drawing primitives


class Canvas:
    """An image, a label map and the pixel grid, in face-centred units (1 = half the image)."""

    def __init__(self, size: int, background: tuple[int, int, int], rng: np.random.Generator) -> None:
        self.size = size
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        self.x = (xs + 0.5) / size * 2 - 1
        self.y = (ys + 0.5) / size * 2 - 1
        self.aa = 2.0 / size  # one pixel, for soft edges
        bg = np.array(background, np.float32)
        shade = 1.0 - 0.18 * (self.y[..., None] + 1) / 2 + 0.04 * self.x[..., None]
        self.image = bg * shade + rng.normal(0, 2.0, (size, size, 1)).astype(np.float32)
        self.labels = np.zeros((size, size), np.uint8)
        self.rng = rng

    def paint(self, sdf: np.ndarray, colour: np.ndarray | tuple, label: int | None) -> np.ndarray:
        """Fill where sdf < 0 (soft edge in the image); returns the coverage in [0, 1]."""
        alpha = np.clip(0.5 - sdf / self.aa, 0.0, 1.0)
        col = np.asarray(colour, np.float32)
        col = col if col.ndim == 3 else col[None, None]
        self.image = self.image * (1 - alpha[..., None]) + col * alpha[..., None]
        if label is not None:
            self.labels[sdf < 0] = label
        return alpha

    def blend(self, weight: np.ndarray, colour: np.ndarray | tuple) -> None:
        """Texture only: mix `colour` in with per-pixel weight (labels unchanged)."""
        col = np.asarray(colour, np.float32)
        col = col if col.ndim == 3 else col[None, None]
        w = np.clip(weight, 0, 1)[..., None]
        self.image = self.image * (1 - w) + col * w


def ellipse(cv: Canvas, cx: float, cy: float, rx: float, ry: float, angle: float = 0.0) -> np.ndarray:
    """Approximate signed distance to an ellipse (negative inside)."""
    dx, dy = cv.x - cx, cv.y - cy
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    r = np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)
    return (r - 1.0) * min(rx, ry)


def box(cv: Canvas, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.maximum.reduce([x0 - cv.x, cv.x - x1, y0 - cv.y, cv.y - y1])


def _noise(cv: Canvas, scale: int, stretch_y: float = 1.0) -> np.ndarray:
    """Smooth value noise in [0, 1] (bilinear upsampling of a coarse random grid)."""
    n = cv.size
    gy, gx = max(2, int(scale * stretch_y)), max(2, scale)
    grid = cv.rng.random((gy + 1, gx + 1)).astype(np.float32)
    yy = np.linspace(0, gy, n, dtype=np.float32)
    xx = np.linspace(0, gx, n, dtype=np.float32)
    y0, x0 = np.minimum(yy.astype(int), gy - 1), np.minimum(xx.astype(int), gx - 1)
    fy, fx = (yy - y0)[:, None], (xx - x0)[None, :]
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


# ---------------------------------------------------------------- the face


@dataclass(frozen=True)
class FaceFrame:
    """Where the face sits on the canvas and its base colours, shared by every feature's drawing."""

    cx: float  # face centre
    cy: float
    fw: float  # half width and half height of the face
    fh: float
    s: float  # overall scale
    skin: np.ndarray  # RGB float32
    hair: np.ndarray
    light: np.ndarray  # [H, W] shading, light from the upper left

    @property
    def top(self) -> float:
        return self.cy - self.fh

    @property
    def chin_y(self) -> float:
        return self.cy + self.fh

    @property
    def eye_y(self) -> float:
        return self.cy - 0.05 * self.fh


def _frame(attrs: FaceAttributes, cv: Canvas) -> FaceFrame:
    s = attrs.scale
    cx, cy = attrs.offset_x, attrs.offset_y - 0.1
    fw, fh = attrs.face_width * s, attrs.face_height * s
    skin = np.array(SKIN_TONES[attrs.skin_tone], np.float32)
    if attrs.age >= 4:  # older skin: a little paler and less saturated
        skin = skin * 0.92 + skin.mean() * 0.08
    hair = np.array(HAIR_COLOURS[attrs.hair_colour], np.float32)
    light = 1.0 + 0.12 * (-(cv.x - cx) / fw * 0.5 - (cv.y - cy) / fh * 0.3)
    return FaceFrame(cx, cy, fw, fh, s, skin, hair, light)


def render_face(attrs: FaceAttributes, rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Draw `attrs` on a new canvas: (image uint8 [H, W, 3], labels uint8 [H, W]).

    Features are painted back to front; the order also fixes the random draws, so it is part of
    every face's bytes."""
    cv = Canvas(size, attrs.background, rng)
    f = _frame(attrs, cv)
    _draw_back_hair(cv, f, attrs)
    _draw_neck_and_cloth(cv, f, attrs)
    _draw_ears(cv, f, attrs)
    face, face_col = _draw_skin(cv, f)
    _draw_wrinkles(cv, f, attrs, face)
    _draw_beard(cv, f, attrs, face)
    _draw_eyes_and_brows(cv, f, attrs)
    _draw_nose(cv, f, face_col)
    _draw_mouth(cv, f, attrs)
    _draw_hair(cv, f, attrs)
    _draw_hat(cv, f, attrs)
    _draw_eyeglasses(cv, f, attrs)
    image = np.clip(cv.image, 0, 255).astype(np.uint8)
    return image, cv.labels


def _draw_back_hair(cv: Canvas, f: FaceFrame, attrs: FaceAttributes) -> None:
    """1. long hair behind the head (under the shoulders, beside the neck)."""
    if attrs.hair_style in ("medium", "long"):
        length = 0.25 if attrs.hair_style == "medium" else 0.6
        back = np.minimum(ellipse(cv, f.cx, f.cy - 0.1 * f.fh, f.fw * 1.35, f.fh * 1.2),
                          box(cv, f.cx - f.fw * 1.3, f.cy, f.cx + f.fw * 1.3, f.chin_y + length * f.s))
        cv.paint(back, f.hair * (0.75 + 0.25 * _noise(cv, 24, 0.3))[..., None], C["hair"])


def _draw_neck_and_cloth(cv: Canvas, f: FaceFrame, attrs: FaceAttributes) -> None:
    """2. cloth and shoulders, neck, necklace."""
    cx, cy, fw, fh, s, chin_y = f.cx, f.cy, f.fw, f.fh, f.s, f.chin_y
    shoulders = ellipse(cv, cx, chin_y + 0.75 * s, 0.85 * s, 0.55 * s)
    folds = 0.85 + 0.15 * _noise(cv, 6, 0.5)
    cv.paint(shoulders, np.array(attrs.cloth_colour, np.float32) * folds[..., None], C["cloth"])
    neck = box(cv, cx - 0.45 * fw, cy + 0.4 * fh, cx + 0.45 * fw, chin_y + 0.32 * s)
    neck_shade = 0.82 + 0.1 * np.clip((cv.y - chin_y) / (0.3 * s), 0, 1)
    cv.paint(neck, f.skin * neck_shade[..., None], C["neck"])
    cv.paint(np.maximum(shoulders, box(cv, cx - 0.45 * fw, -2, cx + 0.45 * fw, 2)), f.skin * 0.85, C["neck"])
    if attrs.necklace:
        ring = np.abs(ellipse(cv, cx, chin_y + 0.08 * s, 0.5 * fw, 0.28 * s)) - 0.012 * s
        ring = np.maximum(ring, cy + fh * 1.05 - cv.y)
        cv.paint(ring, (230, 200, 90), C["neck_l"])


def _draw_ears(cv: Canvas, f: FaceFrame, attrs: FaceAttributes) -> None:
    """3. ears and earrings (l_ear on the image's right)."""
    for side, label in ((1, C["l_ear"]), (-1, C["r_ear"])):
        ex = f.cx + side * f.fw * 0.98
        cv.paint(ellipse(cv, ex, f.cy + 0.05 * f.fh, 0.09 * f.s, 0.16 * f.s), f.skin * 0.9, label)
        if attrs.earrings:
            cv.paint(ellipse(cv, ex + side * 0.01, f.cy + 0.32 * f.fh, 0.025 * f.s, 0.03 * f.s), (235, 205, 80),
                     C["ear_r"])


def _draw_skin(cv: Canvas, f: FaceFrame) -> tuple[np.ndarray, np.ndarray]:
    """4. the face: an egg shape, narrower at the jaw, shaded as a sphere; returns (its sdf, its colour)."""
    cx, cy, fw, fh = f.cx, f.cy, f.fw, f.fh
    dy = (cv.y - cy) / fh
    width = fw * (1.0 - 0.18 * np.clip(dy, 0, 1) ** 2)
    face = (np.sqrt(((cv.x - cx) / width) ** 2 + dy**2) - 1.0) * fw
    depth = np.sqrt(np.clip(1 - ((cv.x - cx) / fw) ** 2 - dy**2 * 0.8, 0.02, 1))
    face_col = f.skin * (0.78 + 0.22 * depth)[..., None] * f.light[..., None]
    cheeks = np.exp(-(((np.abs(cv.x - cx) - 0.55 * fw) / (0.2 * fw)) ** 2 + ((cv.y - cy - 0.25 * fh) / (0.15 * fh)) ** 2))
    face_col = face_col * (1 - 0.08 * cheeks[..., None]) + np.array([220, 90, 90], np.float32) * 0.08 * cheeks[..., None]
    cv.paint(face, face_col, C["skin"])
    return face, face_col


def _draw_wrinkles(cv: Canvas, f: FaceFrame, attrs: FaceAttributes, face: np.ndarray) -> None:
    """5. age: wrinkles on the forehead, around the eyes and from nose to mouth; spots when old."""
    if attrs.age < 2:
        return
    cx, cy, fw, fh, skin = f.cx, f.cy, f.fw, f.fh, f.skin
    strength = [0, 0, 0.12, 0.25, 0.4, 0.55][attrs.age]
    forehead = np.exp(-((cv.y - (cy - 0.55 * fh)) / (0.13 * fh)) ** 2) * (np.abs(cv.x - cx) < 0.6 * fw)
    lines = (np.sin((cv.y - cy) / fh * 70) > 0.82) * forehead
    crow = np.exp(-(((np.abs(cv.x - cx) - 0.82 * fw) / (0.08 * fw)) ** 2 + ((cv.y - cy + 0.05 * fh) / (0.1 * fh)) ** 2))
    crow = crow * (np.sin(np.arctan2(cv.y - cy, np.abs(cv.x - cx) - 0.6 * fw) * 14) > 0.6)
    naso = np.exp(-((np.abs(cv.x - cx) - (0.22 + 0.25 * np.clip((cv.y - cy) / fh - 0.15, 0, 1)) * fw) / (0.025 * fw)) ** 2)
    naso = naso * ((cv.y > cy + 0.15 * fh) & (cv.y < cy + 0.55 * fh))
    cv.blend((lines + crow + naso * 0.8) * strength * (face < 0), skin * 0.55)
    if attrs.age >= 4:  # age spots
        spots = (_noise(cv, 30) > 0.86) * (face < 0) * 0.25
        cv.blend(spots, skin * 0.7)


def _draw_beard(cv: Canvas, f: FaceFrame, attrs: FaceAttributes, face: np.ndarray) -> None:
    """6. beard: texture over the lower face (labels stay skin); a long beard hangs below the chin."""
    if not attrs.beard:
        return
    cx, cy, fw, fh, s = f.cx, f.cy, f.fw, f.fh, f.s
    lower = np.clip((cv.y - (cy + 0.12 * fh)) / (0.25 * fh), 0, 1)
    lower = np.maximum(lower, np.exp(-((cv.y - cy - 0.45 * fh) / (0.06 * fh)) ** 2) * (np.abs(cv.x - cx) < 0.35 * fw))
    region = lower * (face < 0.0)
    beard_col = f.hair * 0.8
    if attrs.beard == 1:  # stubble: fine dark speckle, darker than the hair so it reads on any colour
        speck = (cv.rng.random((cv.size, cv.size)) < 0.45).astype(np.float32)
        cv.blend(region * speck * 0.55, np.minimum(beard_col, f.skin * 0.45))
        return
    density = {2: 0.55, 3: 0.8, 4: 0.95}[attrs.beard]
    strands = 0.6 + 0.4 * _noise(cv, 40, 0.25)
    cover = region
    if attrs.beard == 4:
        hang = ellipse(cv, cx, f.chin_y + 0.05 * s, 0.75 * fw, 0.3 * s)
        cover = np.maximum(cover, np.clip(0.5 - hang / cv.aa, 0, 1) * (cv.y > cy + 0.3 * fh))
    elif attrs.beard == 3:
        hang = ellipse(cv, cx, f.chin_y, 0.7 * fw, 0.12 * s)
        cover = np.maximum(cover, np.clip(0.5 - hang / cv.aa, 0, 1) * (cv.y > cy + 0.3 * fh))
    cv.blend(cover * density, beard_col[None, None] * strands[..., None])


def _draw_eyes_and_brows(cv: Canvas, f: FaceFrame, attrs: FaceAttributes) -> None:
    """7. eyes: white, iris, pupil, lid line; brows, thicker for men (l_eye, l_brow on the image's right)."""
    fw, fh, eye_y = f.fw, f.fh, f.eye_y
    for side, label in ((1, C["l_eye"]), (-1, C["r_eye"])):
        ex = f.cx + side * 0.42 * fw
        white = ellipse(cv, ex, eye_y, 0.13 * fw, 0.065 * fh * (0.7 if attrs.smiling else 1.0))
        cv.paint(white, (245, 245, 240), label)
        iris = np.maximum(ellipse(cv, ex, eye_y, 0.065 * fw, 0.065 * fw), white)
        cv.paint(iris, attrs.eye_colour, None)
        cv.paint(np.maximum(ellipse(cv, ex, eye_y, 0.03 * fw, 0.03 * fw), white), (20, 15, 15), None)
        lid = np.abs(white) - 0.008 * f.s
        cv.paint(np.maximum(lid, cv.y - eye_y), (60, 40, 35), None)
        by = eye_y - 0.17 * fh
        thick = (0.035 if attrs.gender == "man" else 0.025) * fh
        brow = ellipse(cv, ex + side * 0.02 * fw, by, 0.17 * fw, thick, angle=-side * 0.12)
        cv.paint(brow, f.hair * 0.7 if attrs.hair_colour not in ("white",) else (170, 170, 170),
                 C["l_brow"] if side == 1 else C["r_brow"])


def _draw_nose(cv: Canvas, f: FaceFrame, face_col: np.ndarray) -> None:
    """8. nose: a soft wedge with nostrils."""
    cx, cy, fw, fh = f.cx, f.cy, f.fw, f.fh
    nose = np.maximum(ellipse(cv, cx, cy + 0.18 * fh, 0.1 * fw, 0.2 * fh), cy + 0.02 * fh - cv.y)
    nose_col = face_col * np.clip(0.92 + 0.15 * (cv.x - cx) / fw, 0.8, 1.05)[..., None]
    cv.paint(nose, nose_col, C["nose"])
    for side in (1, -1):
        cv.paint(ellipse(cv, cx + side * 0.05 * fw, cy + 0.33 * fh, 0.025 * fw, 0.015 * fh), f.skin * 0.45, None)


def _draw_mouth(cv: Canvas, f: FaceFrame, attrs: FaceAttributes) -> None:
    """9. mouth: lips, and the inside when open."""
    cx, fh = f.cx, f.fh
    my = f.cy + 0.55 * fh
    mw = 0.3 * f.fw * (1.15 if attrs.smiling else 1.0)
    curve = (0.08 * fh if attrs.smiling else 0.0) * ((cv.x - cx) / mw) ** 2
    gap = 0.05 * fh if attrs.mouth_open else 0.0
    lip_col = f.skin * np.array([0.95, 0.62, 0.62], np.float32) * (0.95 if attrs.gender == "woman" else 1.0)
    upper = ellipse(cv, cx, my - gap / 2 - curve, mw, 0.06 * fh)
    upper = np.maximum(upper, cv.y - (my - gap / 2 - curve))
    lower = ellipse(cv, cx, my + gap / 2 - curve, mw * 0.9, 0.07 * fh)
    lower = np.maximum(lower, (my + gap / 2 - curve) - cv.y)
    if attrs.mouth_open:
        inner = ellipse(cv, cx, my - curve, mw * 0.85, gap / 2 + 0.01 * fh)
        cv.paint(inner, (90, 30, 35), C["mouth"])
        teeth = np.maximum(inner, cv.y - (my - curve - gap * 0.05))
        cv.paint(teeth, (235, 230, 220), None)
    cv.paint(upper, lip_col * 0.92, C["u_lip"])
    cv.paint(lower, lip_col, C["l_lip"])


def _draw_hair(cv: Canvas, f: FaceFrame, attrs: FaceAttributes) -> None:
    """10. hair on top, bangs (the hairline covers the top of the face)."""
    if attrs.hair_style == "bald":
        return
    cx, cy, fw, fh = f.cx, f.cy, f.fw, f.fh
    crown = ellipse(cv, cx, cy - 0.2 * fh, fw * 1.12, fh * 1.05)
    hairline = cy - (0.55 if not attrs.bangs else 0.28) * fh
    cap = np.maximum(crown, cv.y - hairline - 0.08 * fh * np.cos((cv.x - cx) / fw * 2.2))
    side_hair = np.maximum(crown, np.abs(cv.x - cx) - fw * (1.12 if attrs.hair_style != "short" else 1.02))
    side_hair = np.maximum(side_hair, fw * 0.86 - np.abs(cv.x - cx))
    side_hair = np.maximum(side_hair, cv.y - (cy + (0.1 if attrs.hair_style == "short" else 0.4) * fh))
    strands = 0.72 + 0.28 * _noise(cv, 48, 0.35)
    shine = 1 + 0.15 * np.exp(-(((cv.x - cx + 0.3 * fw) / (0.3 * fw)) ** 2 + ((cv.y - f.top) / (0.2 * fh)) ** 2))
    cv.paint(np.minimum(cap, side_hair), f.hair * (strands * shine)[..., None], C["hair"])


def _draw_hat(cv: Canvas, f: FaceFrame, attrs: FaceAttributes) -> None:
    """11. hat over the crown."""
    if not attrs.hat:
        return
    cx, cy, fw, fh = f.cx, f.cy, f.fw, f.fh
    brim = ellipse(cv, cx, cy - 0.6 * fh, fw * 1.3, 0.09 * fh)
    crown_hat = np.maximum(ellipse(cv, cx, cy - 0.62 * fh, fw * 1.08, 0.62 * fh), cv.y - (cy - 0.6 * fh))
    hat_col = np.array(attrs.cloth_colour[::-1], np.float32) * (0.85 + 0.15 * _noise(cv, 5))[..., None]
    cv.paint(np.minimum(brim, crown_hat), hat_col, C["hat"])


def _draw_eyeglasses(cv: Canvas, f: FaceFrame, attrs: FaceAttributes) -> None:
    """12. eyeglasses: two rings and a bridge (frame pixels only)."""
    if not attrs.eyeglasses:
        return
    frames = [np.abs(ellipse(cv, f.cx + side * 0.42 * f.fw, f.eye_y, 0.21 * f.fw, 0.14 * f.fh)) - 0.012 * f.s
              for side in (1, -1)]
    bridge = np.maximum(np.abs(cv.y - (f.eye_y - 0.03 * f.fh)) - 0.01 * f.s, np.abs(cv.x - f.cx) - 0.22 * f.fw)
    cv.paint(np.minimum.reduce([*frames, bridge]), (30, 30, 35), C["eye_g"])


def render(seed: int, size: int = 128, caption_split: str = "train") -> FaceSample:
    """The face of `seed`: same seed, same bytes."""
    from collab.data.captions import make_caption

    rng = np.random.default_rng(seed)
    attrs = sample_attributes(rng)
    image, labels = render_face(attrs, rng, size)
    caption = make_caption(attrs, np.random.default_rng([seed, 1]), caption_split)
    return FaceSample(image, labels, attrs, caption)
