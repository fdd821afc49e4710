import json

import numpy as np
import pytest
import torch
from PIL import Image

from collab.data.faceworld import BINARY_ATTRIBUTES, render
from collab.data.layout import (DataError, OfficialLayoutDataset, face_seed, read_attribute_table,
                                write_attribute_table, write_official_layout)
from collab.masks import labels_to_onehot, load_mask


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return write_official_layout(tmp_path_factory.mktemp("world"), 8, seed=3, size=64)


def test_written_layout_round_trips(world):
    captions = json.loads(world.captions.read_text())
    assert list(captions) == [f"{i}.png" for i in range(8)]
    ds = OfficialLayoutDataset.from_root(world.root, phase="train", test_size=3)
    assert len(ds) == 5 and OfficialLayoutDataset.from_root(world.root, phase="test", test_size=3).names[0] == "5.png"
    item = ds[2]
    assert item["image"].shape == (3, 64, 64) and -1 <= item["image"].min() and item["image"].max() <= 1
    assert torch.equal(item["mask"], labels_to_onehot(load_mask(world.labels / "2.png")))
    attrs = json.loads(world.attributes.read_text())["2.png"]
    assert {"gender", "age", "beard", "caption_heldout"} <= set(attrs)
    assert ds.attribute_names == BINARY_ATTRIBUTES
    assert item["attributes"].tolist() == render(face_seed(3, 2), 64).attributes.to_binary_vector().tolist()


def test_attribute_table_in_celeba_format(tmp_path):
    path = tmp_path / "CelebAMask-HQ-attribute-anno.txt"
    names = ("5_o_Clock_Shadow", "Male", "Smiling")
    write_attribute_table(path, names, {"0.jpg": np.array([0, 1, 1]), "1.jpg": np.array([1, 0, 0])})
    assert path.read_text().splitlines() == ["2", "5_o_Clock_Shadow Male Smiling", "0.jpg -1 1 1", "1.jpg 1 -1 -1"]
    read_names, table = read_attribute_table(path)
    assert read_names == ("5_o_clock_shadow", "male", "smiling") and table["0.jpg"].tolist() == [0, 1, 1]
    path.write_text("2\nMale Smiling\n0.jpg 1 -1\n1.jpg 1\n")
    with pytest.raises(DataError, match="line 4: expected a file name and 2 values"):
        read_attribute_table(path)
    path.write_text("Male Smiling\n0.jpg 1 -1\n")
    with pytest.raises(DataError, match="image count"):
        read_attribute_table(path)


def test_celeba_style_tree(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    caps = {}
    for i in range(3):
        Image.fromarray(np.full((80, 60, 3), 40 * i, np.uint8)).save(tmp_path / "img" / f"{i}.jpg")
        torch.save(labels_to_onehot(np.full((32, 32), i, np.uint8)), tmp_path / "mask" / f"{i}.pt")
        caps[f"{i}.jpg"] = {"Beard_and_Age": "This Man has no beard."}
    (tmp_path / "caps.json").write_text(json.dumps(caps))
    ds = OfficialLayoutDataset(tmp_path / "img", tmp_path / "caps.json", tmp_path / "mask", phase="all", size=32)
    assert ds[1]["image"].shape == (3, 32, 32) and ds[1]["caption"] == "this man has no beard."


def _broken_world(tmp_path, world, kind):
    import shutil

    root = tmp_path / kind
    shutil.copytree(world.root, root)
    if kind == "image":
        (root / "images" / "1.png").write_bytes(b"garbage")
    elif kind == "caption":
        caps = json.loads((root / "captions.json").read_text())
        caps["1.png"] = {"Other": "x"}
        (root / "captions.json").write_text(json.dumps(caps))
    elif kind == "mask":
        torch.save(torch.zeros(19, 256), root / "masks" / "1.pt")
    return OfficialLayoutDataset.from_root(root, phase="all")


@pytest.mark.parametrize("kind,message", [("image", "1.png: corrupt"), ("caption", "1.png: caption"),
                                          ("mask", "1.pt: mask must be one-hot")])
def test_bad_data_is_named_or_skipped(tmp_path, world, kind, message):
    ds = _broken_world(tmp_path, world, kind)
    with pytest.raises(DataError, match=message):
        ds[1]
    ds.on_error = "skip"
    with pytest.warns(UserWarning, match="skipping"):
        assert ds[1]["name"] == "2.png"
