import numpy as np
import pytest

from collab.data.captions import caption_attributes, make_caption, templates
from collab.data.faceworld import sample_attributes


def test_splits_share_no_template():
    assert not templates("train") & templates("heldout")


def test_captions_state_the_attributes():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = sample_attributes(rng)
        for split in ("train", "heldout"):
            text = make_caption(a, rng, split)
            assert text[0].isupper() and text.endswith(".") and "{" not in text
            if a.gender == "woman":
                assert "beard" not in text and " he " not in f" {text.lower()} "
    assert caption_attributes(a) == {"gender": a.gender, "age": a.age, "beard": a.beard}


def test_known_phrasing_and_bad_split():
    from collab.data.faceworld import FaceAttributes

    a = FaceAttributes("man", 2, 3, False, False, False, "short", "brown", 1, False, False, False, False)
    texts = {make_caption(a, np.random.default_rng(i)) for i in range(80)}
    assert "This man has beard of medium length. He is in his thirties." in texts
    with pytest.raises(ValueError, match="split"):
        make_caption(a, np.random.default_rng(0), "dev")
