import numpy as np
import pytest
import torch

from collab.conditions import ConditionError, MaskInput, TextInput, make_input
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
        make_input("sketchy")
