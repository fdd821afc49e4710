import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from collab.checkpoint import (CheckpointError, compare_keys, load_official, load_pretrained, official_shapes,
                               read_state_dict, save_pretrained)
from collab.config import load_config, load_official_config
from tests.conftest import REFERENCE, VOCAB, tiny_model

WEIGHTS = REFERENCE / "compose_tiny_weights.safetensors"
COMPOSE_YAML = REFERENCE / "compose_tiny_compose.yaml"


def _manifest_expectation(name: str):
    res, kind = name.split("_", 1)
    cfg = load_config(f"official_{res}")
    if kind == "codiff_mask_text":
        return official_shapes(cfg, "compose")
    if kind == "vae":
        return official_shapes(cfg, "vae")
    sub = replace(cfg, modalities=tuple(replace(m, diffuser=None) for m in cfg.modalities if m.name == kind))
    return official_shapes(sub, "unimodal")


@pytest.mark.parametrize("name", ["256_codiff_mask_text", "256_text", "256_mask", "256_vae",
                                  "512_codiff_mask_text", "512_text", "512_mask", "512_vae"])
def test_every_official_key_and_shape_maps(name):
    manifest = json.loads((REFERENCE / "manifests" / f"manifest_{name}.json").read_text())
    found = {k: tuple(v["shape"]) for k, v in manifest["keys"].items()}
    report = compare_keys(_manifest_expectation(name), found)
    assert report.ok, report.describe()
    assert len(found) == manifest["n_keys"]


def _official_sd():
    return {k: v.float() for k, v in load_file(WEIGHTS).items()}


def _unimodal(sd, branch):
    out = {}
    for k, v in sd.items():
        if k.startswith(f"model.{branch}_unet.diffusion_model."):
            out["model.diffusion_model." + k.split("diffusion_model.", 1)[1]] = v
        elif k.startswith(f"cond_stage_model.{branch}_cond_stage_model."):
            out["cond_stage_model." + k.split(f"{branch}_cond_stage_model.", 1)[1]] = v
        elif not k.startswith(("model.", "cond_stage_model.")):
            out[k] = v
    return out


def test_loads_the_composed_fixture_strictly():
    model = load_official(WEIGHTS, load_official_config(COMPOSE_YAML), vocab=VOCAB)
    ref = _official_sd()
    assert torch.equal(model.collaborators["text"].out[2].weight, ref["model.text_unet.diffusion_model.out.2.weight"])
    assert torch.equal(model.diffusers["mask"].out[2].weight,
                       ref["model.seg_mask_confidence_predictor.diffusion_model.out.2.weight"])
    assert not any(p.requires_grad for p in model.parameters())


def test_uni_modal_lightning_checkpoint(tmp_path):
    path = tmp_path / "tiny_text.ckpt"
    torch.save({"state_dict": _unimodal(_official_sd(), "text"), "epoch": 3, "global_step": 10}, path)
    model = load_official(path, load_official_config(COMPOSE_YAML), vocab=VOCAB)
    assert model.names == ("text",) and len(model.diffusers) == 0
    both = tmp_path / "tiny_mask.ckpt"
    torch.save({"state_dict": _unimodal(_official_sd(), "seg_mask")}, both)
    model2 = load_official([path, both], load_official_config(COMPOSE_YAML), vocab=VOCAB)
    assert model2.names == ("mask", "text")


class NotAllowed:  # a pickled object outside torch's weights_only allow-list
    pass


def test_pickle_code_is_refused_unless_trusted(tmp_path):
    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": _official_sd(), "hparams": NotAllowed()}, path)
    with pytest.raises(CheckpointError, match="trusted=True"):
        read_state_dict(path)
    assert "betas" in read_state_dict(path, trusted=True)


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        read_state_dict(bad)
    with pytest.raises(FileNotFoundError, match="nothing.ckpt"):
        read_state_dict(tmp_path / "nothing.ckpt")
    torch.save({"weights": [1, 2]}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="no state_dict"):
        read_state_dict(tmp_path / "odd.pt")


def test_mismatched_keys_are_named(tmp_path):
    sd = _official_sd()
    del sd["model.text_unet.diffusion_model.out.2.bias"]
    sd["model.seg_mask_unet.diffusion_model.out.2.weight"] = torch.zeros(3, 32, 1, 1)
    sd["model.extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError) as err:
        load_official(path, load_official_config(COMPOSE_YAML), vocab=VOCAB)
    msg = str(err.value)
    assert "model.text_unet.diffusion_model.out.2.bias" in msg and "missing" in msg
    assert "model.extra.weight" in msg and "unexpected" in msg
    assert "expected [3, 32, 3, 3], found [3, 32, 1, 1]" in msg
    assert "closest shipped config" in msg


def test_no_config_given_and_none_fits():
    with pytest.raises(CheckpointError, match="no shipped config fits"):
        load_official(WEIGHTS, vocab=VOCAB)


def test_another_noise_schedule_is_refused(tmp_path):
    sd = _official_sd()
    sd["betas"] = sd["betas"] * 2
    path = tmp_path / "sched.ckpt"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError, match="noise schedule"):
        load_official(path, load_official_config(COMPOSE_YAML), vocab=VOCAB)


def test_vae_training_keys_are_ignored(tmp_path):
    sd = _official_sd()
    vae = {k[len("first_stage_model."):]: v for k, v in sd.items() if k.startswith("first_stage_model.")}
    vae["loss.logvar"] = torch.zeros(())
    torch.save({"state_dict": vae}, tmp_path / "vae.ckpt")
    torch.save({"state_dict": _unimodal(sd, "text")}, tmp_path / "text.ckpt")
    model = load_official([tmp_path / "text.ckpt", tmp_path / "vae.ckpt"], load_official_config(COMPOSE_YAML),
                          vocab=VOCAB)
    assert torch.equal(model.vae.quant_conv.weight, sd["first_stage_model.quant_conv.weight"])


@pytest.mark.parametrize("layout", ["components", "flat"])
def test_save_and_load_pretrained_round_trip(tmp_path, model, layout):
    from collab.pipeline import generate

    save_pretrained(model, tmp_path / "m", layout=layout)
    again = load_pretrained(tmp_path / "m", vocab=VOCAB)
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    conds = {"text": "a man", "mask": __import__("numpy").zeros((32, 32), "uint8")}
    assert not again.collaborators["text"].out[2].weight.is_contiguous(memory_format=torch.channels_last)
    # no speed switch is turned on behind the caller's back: the loaded model computes as the saved one
    assert torch.equal(generate(model, conds, steps=2).latents, generate(again, conds, steps=2).latents)
    again.optimize_for("cpu")  # channels-last on CPU: the same maths, summed in another order
    assert again.collaborators["text"].out[2].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(generate(model, conds, steps=2).latents, generate(again, conds, steps=2).latents, atol=1e-5)
    assert torch.equal(generate(again, conds, steps=2).latents, generate(again, conds, steps=2).latents)
    weights = "collaborators/text/model.safetensors" if layout == "components" else "model.safetensors"
    (tmp_path / "m" / weights).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_pretrained(tmp_path / "m", vocab=VOCAB)


def test_from_pretrained_is_ready_to_use_and_save_pretrained_writes_it_back(tmp_path, model):
    from collab.model import CollaborativeModel
    from collab.pipeline import generate

    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "vocab.txt").is_file()  # the tokenizer travels with the model
    again = CollaborativeModel.from_pretrained(tmp_path / "m", device="cpu", dtype=torch.float32)
    assert again.tokenizer is not None
    assert again.collaborators["text"].out[2].weight.is_contiguous(memory_format=torch.channels_last)
    ctx = again.encode_condition("text", ["a man"])  # no attach_tokenizer needed
    assert torch.allclose(ctx, model.encode_condition("text", ["a man"]))
    plain = CollaborativeModel.from_pretrained(tmp_path / "m", optimize=False)
    assert not plain.collaborators["text"].out[2].weight.is_contiguous(memory_format=torch.channels_last)
    conds = {"text": "a man", "mask": __import__("numpy").zeros((32, 32), "uint8")}
    assert torch.equal(generate(model, conds, steps=2).latents, generate(plain, conds, steps=2).latents)


def test_a_model_built_from_a_config_encodes_without_attach_tokenizer(model, tokenizer):
    from collab.model import CollaborativeModel

    fresh = CollaborativeModel(model.config, tokenizer=tokenizer)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.encode_condition("text", ["a man"]), model.encode_condition("text", ["a man"]))
    no_vocab = CollaborativeModel(model.config)
    assert no_vocab.encode_condition("mask", [__import__("numpy").zeros((32, 32), "uint8")]).ndim == 3
    with pytest.raises(ValueError, match="no tokenizer vocabulary"):
        no_vocab.encode_condition("text", ["a man"])


def _file_bytes(folder):
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors"))


def test_half_precision_storage_halves_the_file_and_loads_as_float32(tmp_path, model):
    save_pretrained(model, tmp_path / "full")
    save_pretrained(model, tmp_path / "half", storage_dtype=torch.float16)
    assert _file_bytes(tmp_path / "half") < 0.55 * _file_bytes(tmp_path / "full")
    again = load_pretrained(tmp_path / "half", vocab=VOCAB)
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert b.dtype == a.dtype == torch.float32, k
        assert torch.equal(b, a.half().float()), k


@pytest.mark.parametrize("name", ["demo", "joint", "evaluator"])
def test_model_cards_state_licence_data_use_and_metrics_from_their_source(name):
    """checkpoints/<name>/README.md: YAML metadata whose metrics are the numbers of the file that
    the stated command wrote (results.md, evaluator_metrics.json), so a card cannot drift from them."""
    import yaml

    root = Path(__file__).resolve().parents[1]
    text = (root / "checkpoints" / name / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["license"] == "mit" and "face world" in meta["training_data"] and meta["intended_use"]
    metrics = dict(meta["metrics"])
    source = root / metrics.pop("source").split(" ")[0]
    assert metrics.pop("command").startswith("python -m collab.")
    numbers = {k: v for k, v in metrics.items() if isinstance(v, float)}
    assert len(numbers) >= 4
    if source.suffix == ".json":
        recorded = json.loads(source.read_text())
        assert {k: round(recorded[k[len("parser_"):] if k.startswith("parser_") else k], 3) for k in numbers} == numbers
    else:
        table = source.read_text()
        assert all(f"| {v:.3f} |" in table for v in numbers.values()), numbers
