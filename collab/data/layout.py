"""The official training layout, written for the face world and read for it and for CelebA-HQ.

    root/images/<i>.png        (CelebA-HQ: image_256_downsampled_from_hq_1024/<i>.jpg)
    root/captions.json         {"<i>.png": {"Beard_and_Age": caption}, ...}  key order = split order
    root/masks/<i>.pt          one-hot float [19, 1024] (32x32 NEAREST), torch.save
    root/labels/<i>.png        our extension: full-resolution palette label maps
    root/attributes.json       our extension: attribute record and a held-out caption per image
    root/attributes.txt        binary attributes in CelebA's annotation format (CelebAMask-HQ ships
                               the same format as CelebAMask-HQ-attribute-anno.txt, with 40 names)

The official reader takes the LAST `test_size` caption keys as the test split; so do we.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from collab.data.captions import make_caption
from collab.data.faceworld import BINARY_ATTRIBUTES, FaceAttributes, render
from collab.masks import labels_to_onehot, save_mask_png


@dataclass(frozen=True)
class LayoutPaths:
    root: Path

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def captions(self) -> Path:
        return self.root / "captions.json"

    @property
    def masks(self) -> Path:
        return self.root / "masks"

    @property
    def labels(self) -> Path:
        return self.root / "labels"

    @property
    def attributes(self) -> Path:
        return self.root / "attributes.json"

    @property
    def attribute_table(self) -> Path:
        return self.root / "attributes.txt"


def face_seed(seed: int, index: int) -> int:
    """The render seed of face `index` of a world seeded with `seed` (any face regenerates alone)."""
    return int(np.random.default_rng([seed, index]).integers(0, 2**62))


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def write_official_layout(root: str | Path, num_images: int, seed: int = 0, size: int = 128,
                          image_format: str = "png") -> LayoutPaths:
    """Render `num_images` faces into the official layout (resumable: existing files are kept)."""
    paths = LayoutPaths(Path(root))
    for d in (paths.images, paths.masks, paths.labels):
        d.mkdir(parents=True, exist_ok=True)
    captions, attributes = {}, {}
    for i in range(num_images):
        name = f"{i}.{image_format}"
        sample = render(face_seed(seed, i), size)
        if not (paths.masks / f"{i}.pt").exists():
            sample_path = paths.images / name
            Image.fromarray(sample.image).save(sample_path.with_name(name + ".tmp"), format=image_format.upper()
                                              if image_format != "jpg" else "JPEG")
            os.replace(sample_path.with_name(name + ".tmp"), sample_path)
            save_mask_png(sample.labels, paths.labels / f"{i}.png")
            torch.save(labels_to_onehot(sample.labels), paths.masks / f"{i}.pt")
        captions[name] = {"Beard_and_Age": sample.caption}
        held = make_caption(sample.attributes, np.random.default_rng([face_seed(seed, i), 2]), "heldout")
        attributes[name] = {**sample.attributes.to_dict(), "caption_heldout": held}
    _write_json(paths.captions, captions)
    _write_json(paths.attributes, attributes)
    vectors = {name: _binary(attributes[name]) for name in captions}
    write_attribute_table(paths.attribute_table, BINARY_ATTRIBUTES, vectors)
    return paths


def _binary(record: dict) -> np.ndarray:
    fields = {f: record[f] for f in FaceAttributes.__dataclass_fields__ if f in record}
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    return FaceAttributes(**fields).to_binary_vector()


def write_attribute_table(path: str | Path, names: tuple[str, ...], vectors: dict[str, np.ndarray]) -> None:
    """CelebA's attribute annotation format: a count line, a line of names, then `file v1 v2 ...` with
    1 / -1 per attribute."""
    lines = [str(len(vectors)), " ".join(names)]
    lines += [f"{file} " + " ".join("1" if v >= 0.5 else "-1" for v in vec) for file, vec in vectors.items()]
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def read_attribute_table(path: str | Path) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    """(names, {file: 0/1 float32 vector}) from a CelebA-format attribute annotation file."""
    path = Path(path)
    try:
        lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise DataError(f"{path}: cannot read the attribute table ({e})") from e
    if len(lines) < 2 or len(lines[0]) != 1 or not lines[0][0].isdigit():
        raise DataError(f"{path}: not a CelebA attribute table (first line must be the image count)")
    names = tuple(n.lower() for n in lines[1])
    table = {}
    for row_no, row in enumerate(lines[2:], start=3):
        if len(row) != len(names) + 1 or any(v not in ("1", "-1", "0") for v in row[1:]):
            raise DataError(f"{path}, line {row_no}: expected a file name and {len(names)} values of 1 / -1")
        table[row[0]] = np.array([v == "1" for v in row[1:]], dtype=np.float32)
    if len(table) != int(lines[0][0]):
        raise DataError(f"{path}: header says {lines[0][0]} images, found {len(table)} rows")
    return names, table


class DataError(ValueError):
    """A training sample that cannot be used; the message names the file."""


class OfficialLayoutDataset(torch.utils.data.Dataset):
    """Images, captions and one-hot masks from the official layout (this world's or CelebA-HQ's).

    Items: {"image": [3, H, W] in [-1, 1], "caption": str, "mask": [19, 1024], "name": str}, plus
    "attributes" (0/1 [K], names in `attribute_names`) when an attribute table is given.
    on_error="raise" stops at a bad sample with its file named; "skip" warns once and takes the
    next good one, so a run never trains on garbage silently.
    """

    def __init__(self, image_folder: str | Path, caption_file: str | Path, mask_folder: str | Path | None = None,
                 phase: str = "train", test_size: int = 3000, size: int | None = None, on_error: str = "raise",
                 need_caption: bool = True, attribute_file: str | Path | None = None) -> None:
        if phase not in ("train", "test", "all"):
            raise ValueError(f"phase must be train, test or all, got {phase!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be raise or skip, got {on_error!r}")
        self.image_folder, self.mask_folder = Path(image_folder), Path(mask_folder) if mask_folder else None
        try:
            self.captions = json.loads(Path(caption_file).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{caption_file}: cannot read the captions JSON ({e})") from e
        names = list(self.captions)
        if phase != "all":
            names = names[:-test_size] if phase == "train" else names[-test_size:]
        self.names, self.size, self.on_error, self.need_caption = names, size, on_error, need_caption
        self.attribute_names: tuple[str, ...] = ()
        self.attribute_table: dict[str, np.ndarray] | None = None
        if attribute_file is not None:
            self.attribute_names, self.attribute_table = read_attribute_table(attribute_file)
        self._warned: set[str] = set()

    @classmethod
    def from_root(cls, root: str | Path, **kwargs) -> OfficialLayoutDataset:
        p = LayoutPaths(Path(root))
        if p.attribute_table.exists():
            kwargs.setdefault("attribute_file", p.attribute_table)
        return cls(p.images, p.captions, p.masks, **kwargs)

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> dict:
        name = self.names[index]
        path = self.image_folder / name
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if self.size and im.size != (self.size, self.size):
                    w, h = im.size
                    s = min(w, h)
                    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
                    im = im.resize((self.size, self.size), Image.BICUBIC)
                pixels = np.asarray(im, dtype=np.float32)
        except FileNotFoundError as e:
            raise DataError(f"{path}: image missing") from e
        except Exception as e:
            raise DataError(f"{path}: corrupt or unreadable image ({e})") from e
        item = {"image": torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1.0, "name": name}
        entry = self.captions.get(name)
        caption = entry.get("Beard_and_Age") if isinstance(entry, dict) else None
        if self.need_caption and (not isinstance(caption, str) or not caption.strip()):
            raise DataError(f"{name}: caption entry has no 'Beard_and_Age' text")
        item["caption"] = (caption or "").lower()
        if self.mask_folder is not None:
            mpath = self.mask_folder / f"{Path(name).stem}.pt"
            try:
                mask = torch.load(mpath, weights_only=True)
            except FileNotFoundError as e:
                raise DataError(f"{mpath}: mask missing") from e
            except Exception as e:
                raise DataError(f"{mpath}: unreadable mask ({e})") from e
            if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (19, 1024):
                shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
                raise DataError(f"{mpath}: mask must be one-hot [19, 1024], found {shape}")
            if not torch.all(mask.sum(0) == 1):
                raise DataError(f"{mpath}: mask is not one-hot (every pixel must have exactly one class)")
            item["mask"] = mask.float()
        if self.attribute_table is not None:
            if name not in self.attribute_table:
                raise DataError(f"{name}: no row in the attribute table")
            item["attributes"] = torch.from_numpy(self.attribute_table[name])
        return item

    def __getitem__(self, index: int) -> dict:
        if self.on_error == "raise":
            return self.load(index)
        for k in range(len(self)):
            i = (index + k) % len(self)
            try:
                return self.load(i)
            except DataError as e:
                if self.names[i] not in self._warned:
                    self._warned.add(self.names[i])
                    warnings.warn(f"skipping bad sample: {e}", stacklevel=2)
        raise DataError("every sample of the dataset is unusable")
