"""The 19 face-parsing classes of CelebAMask-HQ, in the official label order and palette."""
from __future__ import annotations

# (name, RGB colour of the official palette PNGs); the list index is the label value.
FACE_CLASSES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("background", (0, 0, 0)),
    ("skin", (204, 0, 0)),
    ("nose", (76, 153, 0)),
    ("eye_g", (204, 204, 0)),
    ("l_eye", (51, 51, 255)),
    ("r_eye", (204, 0, 204)),
    ("l_brow", (0, 255, 255)),
    ("r_brow", (255, 204, 204)),
    ("l_ear", (102, 51, 0)),
    ("r_ear", (255, 0, 0)),
    ("mouth", (102, 204, 0)),
    ("u_lip", (255, 255, 0)),
    ("l_lip", (0, 0, 153)),
    ("hair", (0, 0, 204)),
    ("hat", (255, 51, 153)),
    ("ear_r", (0, 204, 204)),
    ("neck_l", (0, 51, 0)),
    ("neck", (255, 153, 51)),
    ("cloth", (0, 204, 0)),
)

NUM_CLASSES = len(FACE_CLASSES)
CLASS_NAMES: tuple[str, ...] = tuple(name for name, _ in FACE_CLASSES)
PALETTE: tuple[tuple[int, int, int], ...] = tuple(rgb for _, rgb in FACE_CLASSES)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}

# Human-readable names for UIs and reports (eye_g is eyeglasses, ear_r earring, neck_l necklace).
DISPLAY_NAMES: tuple[str, ...] = (
    "background", "skin", "nose", "eyeglasses", "left eye", "right eye", "left brow",
    "right brow", "left ear", "right ear", "mouth", "upper lip", "lower lip", "hair", "hat",
    "earring", "necklace", "neck", "cloth",
)
