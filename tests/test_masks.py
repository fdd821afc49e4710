import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from collab.classes import NUM_CLASSES, PALETTE
from collab.masks import (
    MaskError, colorize, downsample_labels, labels_to_onehot, load_mask, mask_to_condition, overlay,
    rgb_to_labels, save_mask_png, snap_to_palette,
)
from tests.conftest import REFERENCE

MASK_PNG = REFERENCE / "mask_29980.png"


@pytest.fixture(scope="module")
def golden_onehot() -> torch.Tensor:
    return load_file(REFERENCE / "compose_tiny_io.safetensors")["mask_onehot"][0]  # [19, 1024]


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return np.asarray(Image.open(MASK_PNG))  # the official palette PNG: pixel = label


def test_official_palette_png_gives_the_golden_condition(golden_onehot):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cond = mask_to_condition(MASK_PNG)
    assert cond.shape == (19, 1024) and cond.dtype == torch.float32
    assert torch.equal(cond, golden_onehot)


def test_path_pil_and_array_sources_agree(labels):
    assert load_mask(str(MASK_PNG)).dtype == np.uint8
    assert np.array_equal(load_mask(MASK_PNG), labels)
    assert np.array_equal(load_mask(Image.open(MASK_PNG)), labels)
    assert np.array_equal(load_mask(labels.astype(np.int64)), labels)
    assert np.array_equal(load_mask(torch.from_numpy(labels.astype(np.int64))), labels)


def test_rgb_png_rendering_gives_the_same_labels(tmp_path, labels, golden_onehot):
    Image.fromarray(colorize(labels)).save(tmp_path / "mask_rgb.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(load_mask(tmp_path / "mask_rgb.png"), labels)
        assert torch.equal(mask_to_condition(tmp_path / "mask_rgb.png"), golden_onehot)
    rgba = np.dstack([colorize(labels), np.full(labels.shape, 255, np.uint8)])
    assert np.array_equal(load_mask(rgba), labels)


def test_jpeg_rendering_snaps_to_nearly_the_same_labels(tmp_path, labels):
    Image.fromarray(colorize(labels)).save(tmp_path / "mask.jpg", quality=95)
    with pytest.warns(UserWarning, match="lossy"):
        got = load_mask(tmp_path / "mask.jpg")
    # JPEG averages chroma over 2x2 blocks: only pixels on class boundaries may change.
    assert (got == labels).mean() > 0.97
    assert (downsample_labels(got) == downsample_labels(labels)).mean() > 0.97
    jpeg = np.asarray(Image.open(tmp_path / "mask.jpg"))
    snapped = snap_to_palette(jpeg)
    assert {tuple(c) for c in np.unique(snapped.reshape(-1, 3), axis=0).tolist()} <= set(PALETTE)
    assert (load_mask(snapped) == labels).mean() > 0.95


def test_unknown_colours_are_named_with_pixel_counts(labels):
    rgb = colorize(labels).copy()
    rgb[:50, :100] = (12, 240, 7)  # 5000 px
    rgb[200:210, :30] = (128, 128, 128)  # 300 px
    with pytest.raises(MaskError) as info:
        load_mask(rgb)
    message = str(info.value)
    assert "(12, 240, 7) x 5000 px" in message and "(128, 128, 128) x 300 px" in message
    assert message.index("(12, 240, 7)") < message.index("(128, 128, 128)")  # most frequent first
    assert "skin (204, 0, 0)" in message and "snap_to_palette" in message


def test_few_off_palette_pixels_snap_with_a_warning(labels):
    rgb = colorize(labels).copy()
    rgb[labels == 1] += np.array([5, 3, 0], np.uint8)  # near skin: within tolerance, silent
    rgb[0, :20] = (120, 10, 200)  # 20 px far from everything: < 0.5%, snapped
    with pytest.warns(UserWarning, match="snapped"):
        got = load_mask(rgb)
    assert np.array_equal(got[1:], labels[1:])


def test_label_values_above_18_are_named(tmp_path):
    grey = np.zeros((16, 16), np.uint8)
    grey[0, 0], grey[1, 1], grey[2, 2] = 19, 200, 5
    Image.fromarray(grey).save(tmp_path / "grey.png")
    with pytest.raises(MaskError, match=r"found 19, 200") as info:
        load_mask(tmp_path / "grey.png")
    assert "grey.png" in str(info.value)
    with pytest.raises(MaskError, match="found -1"):
        load_mask(np.full((4, 4), -1))
    palette = Image.fromarray(grey)
    palette.putpalette([v for i in range(256) for v in (255 - i, i, 7)])  # no official colours
    with pytest.raises(MaskError, match=r"pixel values 19, 200 outside 0..18"):
        load_mask(palette)


def test_grey_label_png_is_read_as_labels(tmp_path, labels):
    Image.fromarray(labels).save(tmp_path / "labels_L.png")
    assert np.array_equal(load_mask(tmp_path / "labels_L.png"), labels)
    grey_rgb = np.repeat(labels[..., None], 3, axis=2)  # label map saved as grey RGB
    assert np.array_equal(load_mask(grey_rgb), labels)


def test_binary_matte_is_explained(tmp_path):
    matte = np.zeros((32, 32), np.uint8)
    matte[8:24, 8:24] = 255
    Image.fromarray(matte).save(tmp_path / "matte.png")
    with pytest.raises(MaskError, match="binary"):
        load_mask(tmp_path / "matte.png")
    with pytest.raises(MaskError, match="binary"):
        load_mask(Image.fromarray(matte).convert("1"))


def test_reindexed_palette_png_is_read_by_colour(labels):
    # An editor may store the official colours at other indices (here 100 + label).
    image = Image.fromarray((labels + 100).astype(np.uint8))
    image.putpalette([0, 0, 0] * 100 + [v for rgb in PALETTE for v in rgb] + [0, 0, 0] * (256 - 119))
    with pytest.warns(UserWarning, match="by colour"):
        assert np.array_equal(load_mask(image), labels)


def test_palette_with_swapped_colours_keeps_pixel_values_and_warns(labels):
    image = Image.fromarray(labels)
    swapped = list(PALETTE)
    swapped[1], swapped[13] = swapped[13], swapped[1]  # skin drawn as hair and vice versa
    image.putpalette([v for rgb in swapped for v in rgb])
    with pytest.warns(UserWarning, match="pixel values are used"):
        assert np.array_equal(load_mask(image), labels)


def test_non_square_mask_warns_and_works(labels):
    wide = labels[:, :200]
    with pytest.warns(UserWarning, match="200x256.*not square"):
        cond = mask_to_condition(wide)
    assert cond.shape == (19, 1024)
    assert torch.equal(cond, labels_to_onehot(wide))
    with pytest.warns(UserWarning, match="not square"):
        small = load_mask(wide, size=64)
    assert small.shape == (64, 64) and np.array_equal(small, downsample_labels(wide, 64))


def test_odd_sizes_are_fine(labels):
    odd = np.asarray(Image.fromarray(labels).resize((37, 37), Image.NEAREST))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_mask(odd).shape == (37, 37)
        assert load_mask(labels, size=37).shape == (37, 37)
        assert mask_to_condition(odd).sum(0).eq(1).all()
    with pytest.raises(ValueError, match=r"size must be in \[1, 4096\]"):
        load_mask(labels, size=0)


def test_save_mask_png_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, NUM_CLASSES, size=(45, 37)).astype(np.uint8)
    path = save_mask_png(labels, tmp_path / "saved.png")
    image = Image.open(path)
    assert image.mode == "P"
    assert image.getpalette()[: 3 * NUM_CLASSES] == [v for rgb in PALETTE for v in rgb]
    assert np.array_equal(np.asarray(image), labels)  # pixel value = label, as the official PNGs
    with pytest.warns(UserWarning, match="not square"):
        assert np.array_equal(load_mask(path), labels)


def _png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims another size (so only a lazy size check can refuse it cheaply)."""
    import io
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_huge_image_is_refused_before_decoding(tmp_path, labels):
    (tmp_path / "huge.png").write_bytes(_png_claiming_size(5000, 5000))
    with pytest.raises(MaskError, match=r"5000x5000 = 25,000,000 pixels, above the limit"):
        load_mask(tmp_path / "huge.png")
    (tmp_path / "bomb.png").write_bytes(_png_claiming_size(100_000, 100_000))
    with pytest.raises(MaskError, match="above the limit"):
        load_mask(tmp_path / "bomb.png")
    with pytest.raises(MaskError, match="above the limit of 1,000"):
        load_mask(labels, max_pixels=1000)


def test_corrupt_and_missing_files(tmp_path):
    (tmp_path / "garbage.png").write_bytes(b"this is not an image")
    with pytest.raises(MaskError, match="garbage.png"):
        load_mask(tmp_path / "garbage.png")
    data = MASK_PNG.read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(MaskError, match="truncated.png"):
        load_mask(tmp_path / "truncated.png")
    with pytest.raises(FileNotFoundError, match="nothing_here.png"):
        load_mask(tmp_path / "nothing_here.png")
    with pytest.raises(MaskError, match="directory"):
        load_mask(tmp_path)


def test_bad_arrays_and_types():
    with pytest.raises(MaskError, match="empty"):
        load_mask(np.zeros((0, 5), np.uint8))
    with pytest.raises(MaskError, match="channels first"):
        load_mask(np.zeros((3, 16, 16), np.uint8))
    with pytest.raises(MaskError, match="whole numbers"):
        load_mask(np.full((4, 4), 0.5))
    with pytest.raises(TypeError, match="file path, a PIL image or an array"):
        load_mask(42)


def test_npy_file(tmp_path, labels):
    np.save(tmp_path / "labels.npy", labels)
    assert np.array_equal(load_mask(tmp_path / "labels.npy"), labels)


def test_snap_to_palette_picks_the_nearest_colour():
    skin, hair = np.array(PALETTE[1]), np.array(PALETTE[13])
    mostly_skin = np.rint(0.9 * skin + 0.1 * hair).astype(np.uint8)  # an anti-aliased stroke edge
    mostly_hair = np.rint(0.1 * skin + 0.9 * hair).astype(np.uint8)
    rgba = np.array([[[*mostly_skin, 255], [*mostly_hair, 255], [61, 0, 143, 255], [9, 9, 9, 0]]], np.uint8)
    snapped = snap_to_palette(rgba)
    # (61, 0, 143) is nearest to l_lip (0, 0, 153); transparent pixels become background
    assert snapped.tolist() == [[list(PALETTE[1]), list(PALETTE[13]), list(PALETTE[12]), list(PALETTE[0])]]
    assert rgb_to_labels(snapped).tolist() == [[1, 13, 12, 0]]


def test_colorize_uses_the_official_palette():
    assert colorize(np.arange(NUM_CLASSES).reshape(1, -1)).tolist() == [[list(c) for c in PALETTE]]
    with pytest.raises(MaskError, match="found 19"):
        colorize(np.array([[19]]))


def test_overlay_blends_the_resized_mask(labels):
    image = np.full((64, 48, 3), 200, np.uint8)
    assert np.array_equal(overlay(image, labels, alpha=0.0), image)
    resized = np.asarray(Image.fromarray(labels).resize((48, 64), Image.NEAREST))
    assert np.array_equal(overlay(image, labels, alpha=1.0), colorize(resized))
    half = overlay(image, labels)
    assert half.shape == (64, 48, 3) and half.dtype == np.uint8
    expected = np.rint(0.5 * 200 + 0.5 * colorize(resized).astype(np.float32)).astype(np.uint8)
    assert np.array_equal(half, expected)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        overlay(image, labels, alpha=1.5)
    with pytest.raises(ValueError, match="uint8"):
        overlay(image.astype(np.float32), labels)


def test_painted_labels_snap_antialiased_strokes_and_transparency():
    from collab.masks import painted_labels

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:2, :, :3] = (200, 5, 3)  # near skin (204, 0, 0)
    rgba[3, 3, 3] = 0  # transparent -> background
    rgba[3, 3, :3] = (0, 0, 204)
    labels = painted_labels(rgba)
    assert (labels[:2] == 1).all() and (labels[2:] == 0).all()


def test_flood_fill_stays_inside_the_connected_region():
    from collab.masks import MaskError, flood_fill

    labels = np.zeros((5, 5), np.uint8)
    labels[:, 2] = 13  # a hair wall splits background in two
    out = flood_fill(labels, 0, 0, 1)
    assert (out[:, :2] == 1).all() and (out[:, 2] == 13).all() and (out[:, 3:] == 0).all()
    assert (labels[:, :2] == 0).all()  # input untouched
    assert np.array_equal(flood_fill(labels, 0, 0, 0), labels)
    with pytest.raises(MaskError):
        flood_fill(labels, 9, 0, 1)
    with pytest.raises(MaskError):
        flood_fill(labels, 0, 0, 19)
