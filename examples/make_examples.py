"""Regenerate the example faces, masks and captions shipped for the app (face-world renders).

    python examples/make_examples.py

Seeds come from the held-out world (seed 1), never seen by the demo model in training.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from collab.data.faceworld import render
from collab.data.layout import face_seed
from collab.masks import save_mask_png

HERE = Path(__file__).resolve().parent
PICKS = (0, 3, 5, 8, 13, 21)  # a spread of genders, ages, beards and accessories


def main() -> None:
    (HERE / "faces").mkdir(exist_ok=True)
    (HERE / "masks").mkdir(exist_ok=True)
    captions = []
    for i in PICKS:
        face = render(face_seed(1, 1000 + i), 128)
        Image.fromarray(face.image).save(HERE / "faces" / f"face_{i:02d}.png")
        save_mask_png(face.labels, HERE / "masks" / f"mask_{i:02d}.png")
        captions.append(face.caption)
    (HERE / "captions.txt").write_text("\n".join(captions) + "\n")
    print(f"wrote {len(PICKS)} faces, masks and captions into {HERE}")


if __name__ == "__main__":
    main()
