import numpy as np
import pytest
import torch

from collab.conditions import AttributeInput, ConditionError, JointInput, MaskInput, TextInput, input_for
from collab.masks import labels_to_onehot


def test_text_is_lower_cased_and_long_text_truncated_with_a_warning(tokenizer):
    text = TextInput(tokenizer)
    ids = text.prepare(["This Man Has Beard."])
    assert ids[0, :7].tolist() == [101, 2023, 2158, 2038, 10154, 1012, 102]
    with pytest.warns(UserWarning, match="truncated"):
        long_ids = text.prepare(["a face " * 60])
    assert long_ids.shape == (1, 77) and long_ids[0, -1] == 102


def test_text_errors(tokenizer):
    with pytest.raises(ConditionError, match="empty"):
        TextInput(tokenizer).prepare(["   "])
    with pytest.raises(ConditionError, match="string"):
        TextInput(tokenizer).prepare([3])
    assert TextInput(tokenizer, allow_empty=True).prepare([""])[0, :3].tolist() == [101, 102, 0]


def test_mask_input_accepts_labels_and_onehots():
    labels = np.zeros((40, 40), np.uint8)
    labels[10:30, 10:30] = 1
    onehot = labels_to_onehot(labels)
    batch = MaskInput().prepare([labels, onehot])
    assert batch.shape == (2, 19, 1024) and torch.equal(batch[0], batch[1])


def test_unknown_kind():
    with pytest.raises(ValueError, match="text, mask"):
        input_for("sketchy", None)


NAMES = ("male", "young", "smiling", "mouth_open")


def test_attribute_input_reads_names_dicts_and_vectors():
    a = AttributeInput(NAMES)
    batch = a.prepare(["Male, mouth open", {"smiling": True, "male": 0}, [0, 1, 0, 0], "none", ""])
    assert batch.tolist() == [[1, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert a.prepare([np.eye(4, dtype=np.float32)[:2]]).tolist() == [[1, 0, 0, 0], [0, 1, 0, 0]]
    assert a.describe(batch[0]) == "male, mouth_open" and a.describe(batch[3]) == "none"


def test_attribute_input_errors_name_the_problem():
    a = AttributeInput(NAMES)
    with pytest.raises(ConditionError, match="unknown attribute 'bearded'; known: male, young"):
        a.prepare(["male, bearded"])
    with pytest.raises(ConditionError, match="needs 4 entries"):
        a.prepare([[1, 0, 1]])
    with pytest.raises(ConditionError, match="only 0 and 1"):
        a.prepare([[1, 0, 2, 0]])
    with pytest.raises(ConditionError, match="single number"):
        a.prepare([1, 0, 0, 0])


def test_joint_input_needs_every_part():
    j = JointInput({"attributes": AttributeInput(NAMES), "mask": MaskInput()})
    labels = np.zeros((32, 32), np.uint8)
    out = j.prepare([{"attributes": "male", "mask": labels}])
    assert out["attributes"].shape == (1, 4) and out["mask"].shape == (1, 19, 1024)
    with pytest.raises(ConditionError, match="missing mask"):
        j.prepare([{"attributes": "male"}])
    with pytest.raises(ConditionError, match="unknown parts text"):
        j.prepare([{"attributes": "male", "mask": labels, "text": "hi"}])


# --- matching raw conditions to a model's modalities (collab.matching)


def test_conditions_match_by_modality_name_or_by_the_input_they_read():
    from dataclasses import replace

    from collab.matching import match_conditions
    from tests.conftest import tiny_config

    cfg = tiny_config({"seg": "mask_grid", "text": "text"})
    labels = np.zeros((8, 8), np.uint8)
    match = match_conditions(cfg, {"mask": labels, "text": "a man", "attributes": None})
    assert set(match.conditions) == {"seg", "text"} and match.conditions["seg"] is labels and match.unread == ()
    assert list(match_conditions(cfg, {"seg": labels}).conditions) == ["seg"]  # by its own name
    extra = match_conditions(cfg, {"text": "a man", "attributes": "male"})
    assert extra.unread == ("attributes",) and "does not use the attributes you gave (it reads text)" in \
        extra.unread_message()
    with pytest.raises(ConditionError, match=r"reads \(mask or text\): paint it; you gave attributes only"):
        match_conditions(cfg, {"attributes": "male"}, {"mask": "paint it"})
    joint = tiny_config({"joint": "joint"})
    both = match_conditions(joint, {"mask": labels, "attributes": "male"}).conditions
    assert both == {"joint": {"attributes": "male", "mask": labels}}
    with pytest.raises(ConditionError, match="one network trained on attributes and mask together: it needs "
                                             "attributes and mask both, and cannot read text; you gave mask only"):
        match_conditions(joint, {"mask": labels}, {"text": "", "mask": "", "attributes": ""})
    two = replace(cfg, modalities=(*cfg.modalities, replace(cfg.modality("text"), name="caption")))
    assert set(match_conditions(two, {"text": "a man"}).conditions) == {"text", "caption"}  # every text modality
