import numpy as np
import torch

from collab.evaluator import (ATTRIBUTE_HEADS, AttributeClassifier, ClassifierConfig, Evaluator, FaceParser, ParserConfig, confusion,
                              diversity, frechet_distance, miou, pixel_accuracy)


def test_confusion_miou_and_accuracy():
    target = np.array([[0, 0, 1, 1], [2, 2, 2, 2]])
    assert miou(confusion(target, target)) == 1.0 and pixel_accuracy(confusion(target, target)) == 1.0
    pred = target.copy()
    pred[0, 0] = 1  # one background pixel called skin
    conf = confusion(pred, target)
    assert conf[0, 1] == 1 and pixel_accuracy(conf) == 7 / 8
    assert np.isclose(miou(conf), np.mean([1 / 2, 2 / 3, 1.0]))


def test_frechet_distance_properties():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 4))
    assert abs(frechet_distance(a, a)) < 1e-6
    shifted = frechet_distance(a, a + 3.0)
    assert abs(shifted - 4 * 9.0) < 0.5  # ||mu difference||^2 dominates
    scaled = frechet_distance(a, 2 * rng.normal(size=(2000, 4)))
    assert abs(scaled - 4 * (1 + 4 - 2 * 2)) < 0.5  # per dim (s1 - s2)^2 = 1


def test_diversity():
    assert diversity(np.zeros((5, 3))) == 0.0
    assert np.isclose(diversity(np.array([[0.0, 0.0], [3.0, 4.0]])), 5.0)


def test_networks_shapes_and_save_load(tmp_path):
    ev = Evaluator(FaceParser(ParserConfig(widths=(8, 16), image_size=32)),
                   AttributeClassifier(ClassifierConfig(widths=(8, 16), image_size=32)))
    images = (np.random.default_rng(0).random((2, 64, 64, 3)) * 255).astype(np.uint8)
    labels = ev.parse(images)
    assert labels.shape == (2, 64, 64) and labels.dtype == np.uint8 and labels.max() < 19
    attrs = ev.attributes(images)
    assert set(attrs) == set(ATTRIBUTE_HEADS) and {"gender", "age", "beard", "smiling"} <= set(attrs)
    assert attrs["age"].shape == (2,)
    ev.save(tmp_path)
    again = Evaluator.load(tmp_path)
    assert np.array_equal(again.parse(images), labels)
    assert np.allclose(again.features(images), ev.features(images))
