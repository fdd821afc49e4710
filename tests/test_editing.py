import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from collab.editing import EditCancelled, EditSession, EditSettings, edit, prepare_image
from tests.conftest import tiny_model

FAST = EditSettings(embed_steps=6, embed_lr=1e-2, finetune_steps=6, finetune_lr=1e-3, trainable="attention", seed=1)
IMAGE = (np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8)  # not square, not model size
MASK = np.ones((16, 16), np.uint8)


def test_prepare_image_crops_resizes_and_says_so():
    img, note = prepare_image(IMAGE, 16)
    assert img.shape == (16, 16, 3) and "centre-cropped from 24x20" in note and "resized" in note
    same, none = prepare_image(img, 16)
    assert none is None and np.array_equal(same, img)
    with pytest.raises(ValueError, match="cannot read"):
        prepare_image(__file__, 16)


def test_edit_changes_only_copies_and_samples(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = []
    session = edit(model, IMAGE, {"text": "this man has a long beard."}, settings=FAST,
                   keep={"mask": MASK}, progress=lambda *a: steps.append(a))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the shared model is untouched
    e = session.edits["text"]
    assert not torch.equal(e.optimized, e.target)  # stage 1 moved the embedding
    assert all(".transformer_blocks." in k for k in e.params) and e.params
    changed = [k for k, v in e.params.items() if not torch.equal(v, dict(model.collaborators["text"].named_parameters())[k])]
    assert changed  # stage 2 moved the fine-tuned tensors
    assert [s[0] for s in steps].count("text: embedding") == 6 and steps[-1][1:3] == (6, 6)
    strip = session.alpha_strip(model, [0.0, 1.0, 2.0], steps=3, seed=0)
    assert len(strip) == 3 and not np.array_equal(strip[0].images, strip[2].images)
    assert strip[1].extras["alpha"] == {"text": 1.0, "mask": 1.0} and strip[1].settings.modalities == ("mask", "text")


def test_kept_modalities_are_tuned_on_the_image_as_algorithm_3_does(tmp_path, model):
    session = edit(model, IMAGE, {"text": "this man has a long beard."}, settings=FAST, keep={"mask": MASK})
    m = session.edits["mask"]
    assert m.kept and not session.edits["text"].kept and not session.kept
    assert torch.equal(m.target, model.encode_condition("mask", [MASK]).float())  # c_tgt: its own condition
    assert not torch.equal(m.optimized, m.target) and m.params  # stages 1-2 ran for it
    # a mapping names the edited modalities only; the kept one follows them
    assert session.sample(model, {"text": 0.5}, steps=2).extras["alpha"] == {"text": 0.5, "mask": 0.5}
    again = EditSession.load(session.save(tmp_path / "e.safetensors"))
    assert again.edits["mask"].kept and not again.edits["text"].kept
    both = edit(model, IMAGE, {"text": "an old man."}, settings=FAST, keep={"text": "a girl.", "mask": MASK})
    assert not both.edits["text"].kept  # a modality named as a target and a keep is edited towards the target
    assert torch.equal(both.edits["text"].target, model.encode_condition("text", ["an old man."]).float())
    untuned = edit(model, IMAGE, {"text": "an old man."}, settings=replace(FAST, tune_kept=False), keep={"mask": MASK})
    assert set(untuned.edits) == {"text"} and set(untuned.kept) == {"mask"}


def test_isolation_concurrent_edits_equal_sequential(model):
    args = dict(settings=FAST, keep={"mask": MASK})
    alone_a = edit(model, IMAGE, {"text": "a woman in her forties."}, **args).sample(model, 1.0, steps=3)
    alone_b = edit(model, IMAGE, {"text": "a man with stubble."}, **args).sample(model, 1.0, steps=3)
    results = {}

    def run(key, text):
        results[key] = edit(model, IMAGE, {"text": text}, **args).sample(model, 1.0, steps=3)

    threads = [threading.Thread(target=run, args=("a", "a woman in her forties.")),
               threading.Thread(target=run, args=("b", "a man with stubble."))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert np.array_equal(results["a"].images, alone_a.images)
    assert np.array_equal(results["b"].images, alone_b.images)


def test_save_load_resample(tmp_path, model):
    session = edit(model, IMAGE, {"text": "an elderly man.", "mask": MASK}, settings=FAST)
    path = session.save(tmp_path / "edit.safetensors")
    again = EditSession.load(path)
    assert set(again.edits) == {"mask", "text"} and again.settings == FAST
    a = session.sample(model, {"text": 1.5, "mask": 0.5}, steps=3, seed=2)
    b = again.sample(model, {"text": 1.5, "mask": 0.5}, steps=3, seed=2)
    assert np.array_equal(a.images, b.images)


def test_bad_requests(model):
    with pytest.raises(ValueError, match="at least one target"):
        edit(model, IMAGE, {}, settings=FAST)
    with pytest.raises(ValueError, match="unknown modalities"):
        edit(model, IMAGE, {"sketch": MASK}, settings=FAST)
    with pytest.raises(ValueError, match="trainable"):
        edit(model, IMAGE, {"text": "a man"}, settings=EditSettings(trainable="lora"))
    session = edit(model, IMAGE, {"text": "a man"}, settings=FAST)
    with pytest.raises(ValueError, match="alpha"):
        session.sample(model, 5.0)
    calls = []
    with pytest.raises(EditCancelled):
        edit(model, IMAGE, {"text": "a man"}, settings=FAST, cancel=lambda: calls.append(1) or len(calls) > 3)


def test_one_preset_name_everywhere_and_the_old_one_still_read():
    from collab.editing import EDIT_PRESETS, EditSettings, preset_name

    assert EDIT_PRESETS == ("fast", "faithful")
    assert EditSettings.preset("faithful") == EditSettings.preset("official") == EditSettings() == EditSettings.official()
    assert EditSettings.preset("fast").trainable == "attention"
    assert preset_name("official") == "faithful" and preset_name("slow") == "slow"
    with pytest.raises(ValueError, match="edit preset 'slow'.*fast, faithful"):
        EditSettings.preset("slow")


def test_sampling_starts_from_the_inputs_inversion_by_default(model):
    session = edit(model, IMAGE, {"text": "an old man."}, settings=FAST, keep={"mask": MASK})
    inverted = session.sample(model, 0.0, steps=20)
    again = session.sample(model, 0.0, steps=20, seed=7)  # the seed does not matter from an inversion
    assert inverted.extras["start"] == "inversion" and np.array_equal(inverted.images, again.images)
    noise = session.sample(model, 0.0, steps=20, start="noise")
    assert noise.extras["start"] == "noise"
    # alpha 0 from the inversion lands near the input's latent; from fresh noise it need not
    near = (inverted.latents - session.latent).abs().mean()
    assert near < 0.5 * (noise.latents - session.latent).abs().mean(), near
    with pytest.raises(ValueError, match="start"):
        session.sample(model, 0.0, start="zeros")


def test_strength_steers_the_edit_and_its_inversion_alike(model):
    session = edit(model, IMAGE, {"text": "an old man."}, settings=FAST, keep={"mask": MASK})
    plain = session.sample(model, 0.0, steps=20)
    strong0 = session.sample(model, 0.0, steps=20, strength={"text": 3.0})
    strong1 = session.sample(model, 1.0, steps=20, strength={"text": 3.0})
    assert len(session._starts) == 2  # an inversion per strength: the steered run starts from its own
    assert strong0.settings.strength == {"mask": 1.0, "text": 3.0}  # recorded, as for generate
    # steered or not, alpha 0 lands near the input (the inversion ran under the same mix); from noise it need not
    far = (session.sample(model, 0.0, steps=20, start="noise", strength={"text": 3.0}).latents - session.latent).abs().mean()
    for r in (plain, strong0):
        assert (r.latents - session.latent).abs().mean() < 0.5 * far
    assert not np.array_equal(strong1.images, session.sample(model, 1.0, steps=20).images)
    with pytest.raises(ValueError, match="strength"):
        session.sample(model, 1.0, steps=20, strength={"text": -1.0})
