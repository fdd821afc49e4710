"""The demo recipe end to end at a tiny scale: every stage, a periodic sample grid, export, reload, resume."""
from dataclasses import replace

import numpy as np
import torch

from collab.registry import load_model
from collab.pipeline import generate
from collab.train.demo import DemoRecipe, run_demo


def tiny_recipe() -> DemoRecipe:
    r = DemoRecipe(num_images=12, test_size=2)
    small = lambda c, steps: replace(c, steps=steps, batch_size=2, warmup=1, save_every=2, log_every=1,
                                     sample_every=steps if c.sample_every else 0, quiet=True)
    return replace(r, vae=small(r.vae, 2), decoder=small(r.decoder, 2), ldm=small(r.ldm, 2),
                   diffusers=small(r.diffusers, 2))


def test_demo_recipe_runs_exports_and_resumes(tmp_path):
    run, out = tmp_path / "run", tmp_path / "out"
    run_demo(run, out, tiny_recipe(), log=lambda s: None)
    for stage in ("vae", "decoder", "ldm_mask", "ldm_text", "ldm_attributes", "diffusers"):
        assert (run / f"{stage}.loss.jsonl").exists(), stage
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == [
        "ldm_attributes_000002.png", "ldm_mask_000002.png", "ldm_text_000002.png"]
    model = load_model(out)
    assert set(model.names) == {"mask", "text", "attributes"}
    # the demo's text modality reads a frozen MiniLM: states cached once per run, its vocabulary exported
    from collab.minilm import package_dir

    assert type(model.encoders["text"]).__name__ == "PretrainedTextEncoder"
    assert (run / "text_states_all-MiniLM-L6-v2_32.pt").exists()
    assert (out / "vocab.txt").read_text() == (package_dir() / "vocab.txt").read_text()
    mask = np.zeros((128, 128), np.uint8)
    res = generate(model, {"text": "He is in his thirties.", "mask": mask}, steps=2, seed=0)
    assert res.images.shape == (1, 128, 128, 3)
    res = generate(model, {"attributes": "male, smiling", "mask": mask, "text": "He is in his thirties."}, steps=2)
    assert res.settings.modalities == ("mask", "text", "attributes")
    # a second call finds every stage done and re-exports the same weights
    from collab.model_folder import folder_layout, read_model_tensors

    assert folder_layout(out) == "components"  # the trainer exports the default model folder layout
    before = read_model_tensors(out)
    stamp = (run / "diffusers.pt").stat().st_mtime
    run_demo(run, out, tiny_recipe(), log=lambda s: None)
    assert (run / "diffusers.pt").stat().st_mtime == stamp
    after = read_model_tensors(out)  # (header key order is not stable, so compare tensors)
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_joint_config_trains_one_ldm_on_the_shared_vae(tmp_path):
    run = tmp_path / "run"
    recipe = tiny_recipe()
    run_demo(run, tmp_path / "demo", recipe, log=lambda s: None)
    vae_stamp = (run / "vae.pt").stat().st_mtime
    run_demo(run, tmp_path / "joint", replace(recipe, p2_gamma=1.0), base_config="joint", log=lambda s: None)
    assert (run / "vae.pt").stat().st_mtime == vae_stamp and (run / "ldm_joint.pt").exists()
    model = load_model(tmp_path / "joint")
    assert model.names == ("joint",) and not model.diffusers
    import json

    stages = json.loads((tmp_path / "joint" / "training.json").read_text())["stage_seconds"]
    assert "ldm_joint" in stages and "diffusers" not in stages  # the shared run's diffusers are not its cost
    mask = np.zeros((128, 128), np.uint8)
    res = generate(model, {"joint": {"attributes": "male", "mask": mask}}, steps=2, seed=0)
    assert res.images.shape == (1, 128, 128, 3)
    demo = load_model(tmp_path / "demo")
    assert torch.equal(demo.vae.decoder.conv_out.weight, model.vae.decoder.conv_out.weight)


def test_diffusers_of_another_modality_set_are_kept_aside(tmp_path):
    from collab.train.demo import _archive_if_other_modalities

    torch.save({"mask": {}, "text": {}}, tmp_path / "diffusers.pt")
    (tmp_path / "diffusers.loss.jsonl").write_text("{}\n")
    said = []
    _archive_if_other_modalities(tmp_path, tmp_path / "diffusers.pt", {"mask", "text"}, said.append)
    assert (tmp_path / "diffusers.pt").exists() and not said
    _archive_if_other_modalities(tmp_path, tmp_path / "diffusers.pt", {"mask", "text", "attributes"}, said.append)
    assert not (tmp_path / "diffusers.pt").exists()
    assert (tmp_path / "diffusers.mask_text.pt").exists() and (tmp_path / "diffusers.mask_text.loss.jsonl").exists()
    assert "retraining" in said[0]


def test_init_continues_an_exported_model_in_a_new_run(tmp_path):
    """`--init DIR`: the VAE is taken, every network starts from the export, costs add up."""
    import json

    first = tmp_path / "first"
    run_demo(tmp_path / "run1", first, tiny_recipe(), log=lambda s: None)
    said = []
    second = tmp_path / "second"
    run_demo(tmp_path / "run2", second, tiny_recipe(), log=said.append, init=first)
    assert not (tmp_path / "run2" / "vae.loss.jsonl").exists()  # no VAE training in the new run
    assert any("VAE taken from" in s for s in said)
    assert sum("starts from" in s for s in said) == 3 and any("diffusers start from" in s for s in said)
    a, b = load_model(first), load_model(second)
    assert torch.equal(a.vae.encoder.conv_in.weight, b.vae.encoder.conv_in.weight)  # (the decoder stage reruns)
    assert not torch.equal(a.collaborators["mask"].out[-1].weight, b.collaborators["mask"].out[-1].weight)
    rec_a = json.loads((first / "training.json").read_text())
    rec_b = json.loads((second / "training.json").read_text())
    assert rec_b["continued_from"]["stage_seconds"] == rec_a["stage_seconds"]
    assert rec_b["stage_seconds"]["vae"] == rec_a["stage_seconds"]["vae"]
    assert rec_b["stage_seconds"]["ldm_mask"] > rec_a["stage_seconds"]["ldm_mask"]


def test_stages_hard_linked_from_an_earlier_run_are_not_counted_again(tmp_path):
    """A continuation that links the earlier run's finished decoder stage in (as the demo's v3/v4 runs
    did, to skip re-training it) neither re-runs it nor adds its seconds or steps a second time."""
    import json
    import os

    first = tmp_path / "first"
    run_demo(tmp_path / "run1", first, tiny_recipe(), log=lambda s: None)
    (tmp_path / "run2").mkdir()
    for name in ("decoder.pt", "decoder.ckpt", "decoder.loss.jsonl"):
        if (tmp_path / "run1" / name).exists():
            os.link(tmp_path / "run1" / name, tmp_path / "run2" / name)
    second = tmp_path / "second"
    run_demo(tmp_path / "run2", second, tiny_recipe(), log=lambda s: None, init=first)
    rec_a = json.loads((first / "training.json").read_text())
    rec_b = json.loads((second / "training.json").read_text())
    assert (tmp_path / "run2" / "decoder.loss.jsonl").stat().st_nlink == 2  # taken over, not re-run
    assert rec_b["stage_seconds"]["decoder"] == rec_a["stage_seconds"]["decoder"]
    assert "decoder" not in rec_b["stage_steps"] and rec_b["stage_steps"]["ldm_mask"] == 2


def test_keep_takes_a_collaborator_from_init_without_training_it(tmp_path):
    """`--keep attributes`: that collaborator is copied from the --init model; the others train on."""
    import json

    import pytest

    with pytest.raises(ValueError, match="needs --init"):
        run_demo(tmp_path / "run0", tmp_path / "out0", tiny_recipe(), log=lambda s: None, keep=("attributes",))
    first = tmp_path / "first"
    run_demo(tmp_path / "run1", first, tiny_recipe(), log=lambda s: None)
    said = []
    second = tmp_path / "second"
    run_demo(tmp_path / "run2", second, tiny_recipe(), log=said.append, init=first, keep=("attributes",))
    assert not (tmp_path / "run2" / "ldm_attributes.loss.jsonl").exists()
    assert (tmp_path / "run2" / "ldm_mask.loss.jsonl").exists()
    assert any("attributes kept" in s for s in said)
    a, b = load_model(first), load_model(second)
    for k, v in a.collaborators["attributes"].state_dict().items():
        assert torch.equal(v, b.collaborators["attributes"].state_dict()[k]), k
    assert not torch.equal(a.collaborators["mask"].out[-1].weight, b.collaborators["mask"].out[-1].weight)
    rec_a = json.loads((first / "training.json").read_text())
    rec_b = json.loads((second / "training.json").read_text())
    assert rec_b["stage_seconds"]["ldm_attributes"] == rec_a["stage_seconds"]["ldm_attributes"]
    assert rec_b["stage_steps"] == {"decoder": 2, "ldm_mask": 2, "ldm_text": 2, "diffusers": 2}
    from collab.train.report import history_lines

    table = "\n".join(history_lines(second))
    # a run folder whose collaborator file does not fit the config says so instead of a bare key dump
    import shutil

    shutil.copy(tmp_path / "run2" / "ldm_attributes.pt", tmp_path / "run2" / "ldm_text.pt")
    with pytest.raises(ValueError, match="ldm_text.pt holds a collaborator of another architecture"):
        run_demo(tmp_path / "run2", second, tiny_recipe(), log=lambda s: None, init=first)
    assert "| ldm_attributes | 2 + 0 |" in table and "| ldm_mask | 2 + 2 |" in table and "| vae | 2 + 0 |" in table


def test_a_model_reads_one_vocabulary():
    """Text encoders trained on the world's vocabulary and pre-trained ones cannot share a model."""
    from pathlib import Path

    import pytest

    from collab.config import load_config
    from collab.encoders import TextEncoderConfig
    from collab.minilm import package_dir
    from collab.train.demo import export_vocab

    cfg = load_config("demo")
    assert export_vocab(cfg, Path("world_vocab.txt")) == package_dir() / "vocab.txt"
    scratch = replace(cfg.modality("text"), name="text2", encoder=TextEncoderConfig(n_embed=64, n_layer=1))
    assert export_vocab(replace(cfg, modalities=(cfg.modality("mask"), scratch)), Path("w.txt")) == Path("w.txt")
    with pytest.raises(ValueError, match="cannot mix"):
        export_vocab(replace(cfg, modalities=(*cfg.modalities, scratch)), Path("w.txt"))


def test_only_trains_the_named_collaborators_so_processes_can_share_a_run(tmp_path):
    import pytest

    run, out = tmp_path / "run", tmp_path / "out"
    recipe = tiny_recipe()
    with pytest.raises(ValueError, match="--only sketch: the config's modalities are mask, text, attributes"):
        run_demo(run, out, recipe, log=lambda s: None, only=("sketch",))
    run_demo(run, out, recipe, log=lambda s: None, only=("text",))
    assert (run / "ldm_text.pt").exists()
    assert not any((run / f).exists() for f in ("ldm_mask.pt", "ldm_attributes.pt", "decoder.pt", "diffusers.pt"))
    assert not out.exists()
    stamp = (run / "ldm_text.pt").stat().st_mtime
    run_demo(run, out, recipe, log=lambda s: None)  # the process without --only does the rest, text as it is
    assert (run / "ldm_text.pt").stat().st_mtime == stamp
    assert all((run / f).exists() for f in ("ldm_mask.pt", "ldm_attributes.pt", "decoder.pt", "diffusers.pt"))
    assert set(load_model(out).names) == {"mask", "text", "attributes"}
