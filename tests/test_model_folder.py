"""Hub-style model folders: one folder per component, swapping a component, the flat layout, the
converter, and models named by a Hugging Face Hub id (read from a local cache; never downloaded)."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from collab.checkpoint import load_pretrained, save_pretrained
from collab.model_folder import INDEX_NAME, ModelFolderError, folder_layout, main, read_model_tensors
from collab.registry import load_model
from tests.conftest import VOCAB, tiny_model

PARTS = ["vae", "collaborators/mask", "collaborators/text", "encoders/mask", "encoders/text", "diffusers/mask",
         "diffusers/text"]


def _same(a, b, prefix=""):
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items() if k.startswith(prefix))


def test_one_folder_per_component_with_an_index(tmp_path, model):
    save_pretrained(model, tmp_path / "m")
    index = json.loads((tmp_path / "m" / INDEX_NAME).read_text())
    assert index["format"] == "collab/v2" and index["vae"] == "vae"
    assert [(m["name"], m["collaborator"], m["encoder"], m["diffuser"]) for m in index["modalities"]] == [
        ("mask", "collaborators/mask", "encoders/mask", "diffusers/mask"),
        ("text", "collaborators/text", "encoders/text", "diffusers/text")]
    for part in PARTS:
        config = json.loads((tmp_path / "m" / part / "config.json").read_text())
        tensors = load_file(tmp_path / "m" / part / "model.safetensors")
        prefix = part.replace("/", ".") + "."
        assert tensors.keys() == {k[len(prefix):] for k in model.state_dict() if k.startswith(prefix)}, part
        assert config["_class_name"] in ("AutoencoderKL", "UNetModel", "MaskEncoder", "TextEncoder"), part
    assert json.loads((tmp_path / "m" / "encoders/text/config.json").read_text())["kind"] == "text"
    assert folder_layout(tmp_path / "m") == "components" and not (tmp_path / "m" / "config.yaml").exists()
    # the vocabulary travels with the model, so the folder loads without one being given
    assert torch.equal(load_pretrained(tmp_path / "m").inputs["text"].tokenizer.encode("a man").ids,
                       model.inputs["text"].tokenizer.encode("a man").ids)


def test_a_collaborator_is_swapped_by_pointing_at_its_folder(tmp_path):
    a, b = tiny_model(seed=0), tiny_model(seed=1)
    save_pretrained(a, tmp_path / "a")
    save_pretrained(b, tmp_path / "b")
    other = tmp_path / "b" / "collaborators" / "text"
    mixed = load_model(tmp_path / "a", vocab=VOCAB, components={"collaborators/text": other})
    assert _same(b, mixed, "collaborators.text.") and _same(a, mixed, "collaborators.mask.")
    assert _same(a, mixed, "diffusers.") and _same(a, mixed, "vae.") and not _same(a, mixed, "collaborators.text.")
    # the same through model_index.json: an absolute path in place of the relative one
    index = json.loads((tmp_path / "a" / INDEX_NAME).read_text())
    index["modalities"][1]["collaborator"] = str(other)
    (tmp_path / "a" / INDEX_NAME).write_text(json.dumps(index))
    assert _same(mixed, load_pretrained(tmp_path / "a"))


def test_a_component_that_does_not_fit_is_named(tmp_path, model):
    from dataclasses import replace

    from tests.conftest import TINY_UNET, tiny_config

    save_pretrained(model, tmp_path / "m")
    cfg = tiny_config()

    def with_text_collaborator(**changes):
        unet = replace(TINY_UNET, **changes)
        return replace(cfg, modalities=(cfg.modalities[0], replace(cfg.modalities[1], collaborator=unet)))

    # a collaborator of another size fits: its own config.json comes with it
    save_pretrained(tiny_model(with_text_collaborator(model_channels=64)), tmp_path / "wide")
    bigger = load_pretrained(tmp_path / "m", components={"collaborators/text": tmp_path / "wide/collaborators/text"})
    assert bigger.collaborators["text"].config.model_channels == 64
    # one that reads another context width does not
    save_pretrained(tiny_model(with_text_collaborator(context_dim=32)), tmp_path / "ctx32")
    with pytest.raises(ModelFolderError, match=r"'collaborators/text' \(.*ctx32.*\) attends to a context 32 wide.*'encoders/text'.* 16"):
        load_pretrained(tmp_path / "m", components={"collaborators/text": tmp_path / "ctx32/collaborators/text"})
    # a component file whose tensors disagree with its own config.json
    bad = tmp_path / "wide/collaborators/text/config.json"
    bad.write_text(bad.read_text().replace('"model_channels": 64', '"model_channels": 32'))
    with pytest.raises(ModelFolderError, match=r"(?s)component 'collaborators/text' \(.*wide.*\) does not fit.*shape mismatches"):
        load_pretrained(tmp_path / "m", components={"collaborators/text": tmp_path / "wide/collaborators/text"})
    with pytest.raises(ModelFolderError, match=r"no component \['collaborators/hair'\].*collaborators/text"):
        load_pretrained(tmp_path / "m", components={"collaborators/hair": tmp_path / "wide/collaborators/text"})
    with pytest.raises(ModelFolderError, match="UNetModel where the model needs a AutoencoderKL"):
        load_pretrained(tmp_path / "m", components={"vae": tmp_path / "wide/collaborators/text"})
    shutil.rmtree(tmp_path / "m" / "diffusers" / "mask")
    with pytest.raises(ModelFolderError, match=r"diffusers/mask.*config.json not found"):
        load_pretrained(tmp_path / "m")


def test_flat_layout_still_loads_and_both_layouts_give_the_same_tensors(tmp_path, model):
    save_pretrained(model, tmp_path / "flat", layout="flat")
    assert folder_layout(tmp_path / "flat") == "flat" and not (tmp_path / "flat" / INDEX_NAME).exists()
    save_pretrained(model, tmp_path / "parts")
    flat, parts = read_model_tensors(tmp_path / "flat"), read_model_tensors(tmp_path / "parts")
    assert flat.keys() == parts.keys() and all(torch.equal(flat[k], parts[k]) for k in flat)
    with pytest.raises(ModelFolderError, match="flat layout"):
        load_pretrained(tmp_path / "flat", components={"vae": tmp_path / "parts" / "vae"})
    # saving the other layout into the same folder replaces the old files
    save_pretrained(model, tmp_path / "flat")
    assert folder_layout(tmp_path / "flat") == "components" and not (tmp_path / "flat" / "model.safetensors").exists()
    with pytest.raises(FileNotFoundError, match="not a collab model folder"):
        load_model(tmp_path / "flat" / "vae")


def test_converter_keeps_tensors_storage_dtype_and_model_card(tmp_path, model, capsys):
    save_pretrained(model, tmp_path / "flat", layout="flat", storage_dtype=torch.float16)
    (tmp_path / "flat" / "README.md").write_text("---\nlicense: mit\n---\n# card\n")
    assert main(["convert", str(tmp_path / "flat"), str(tmp_path / "parts")]) == 0
    assert "components layout" in capsys.readouterr().out
    parts = load_file(tmp_path / "parts" / "collaborators" / "text" / "model.safetensors")
    assert {v.dtype for v in parts.values()} == {torch.float16}
    assert (tmp_path / "parts" / "README.md").read_text().startswith("---\nlicense: mit")
    a, b = read_model_tensors(tmp_path / "flat"), read_model_tensors(tmp_path / "parts")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert main(["convert", str(tmp_path / "parts"), str(tmp_path / "back"), "--layout", "flat", "--dtype",
                 "float32"]) == 0
    assert {v.dtype for v in read_model_tensors(tmp_path / "back").values()} == {torch.float32}
    assert main(["convert", str(tmp_path / "parts"), str(tmp_path / "parts")]) == 2
    assert "destination" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "nowhere"), str(tmp_path / "x")]) == 2
    assert "unknown model" in capsys.readouterr().err


def _fake_hub_cache(root, repo_id, source):
    """The local Hugging Face cache layout: models--user--repo/{refs/main, snapshots/<commit>/...}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(source, repo / "snapshots" / commit)


def test_hub_id_is_read_from_the_local_cache_without_network(tmp_path, model, monkeypatch):
    from huggingface_hub import constants

    save_pretrained(model, tmp_path / "m")
    _fake_hub_cache(tmp_path / "hub", "someone/tiny-collab", tmp_path / "m")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # a cache miss may never go online here
    assert _same(model, load_model("someone/tiny-collab"))
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache.*HF_HUB_OFFLINE"):
        load_model("someone/absent")


def test_checkpoints_resolve_to_the_installed_copy_outside_a_checkout(tmp_path, monkeypatch):
    """After `pip install .` the models live in package `collab_checkpoints`; a checkout's folder and
    COLLAB_CHECKPOINTS come first."""
    import importlib

    from collab import registry

    installed = tmp_path / "site" / registry.INSTALLED_PACKAGE
    (installed / "demo").mkdir(parents=True)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    monkeypatch.delenv("COLLAB_CHECKPOINTS", raising=False)
    checkout = registry.checkpoints_dir()
    assert checkout == registry.Path(registry.__file__).resolve().parents[1] / "checkpoints"
    monkeypatch.setattr(registry, "__file__", str(tmp_path / "site" / "collab" / "registry.py"))
    assert registry.checkpoints_dir() == installed
    monkeypatch.setenv("COLLAB_CHECKPOINTS", str(tmp_path / "mine"))
    assert registry.checkpoints_dir() == tmp_path / "mine"


def test_a_collaborator_with_the_mean_path_round_trips(tmp_path):
    from dataclasses import replace

    from collab.model import CollaborativeModel
    from tests.conftest import tiny_config

    cfg = tiny_config()
    cfg = replace(cfg, modalities=tuple(replace(m, collaborator=replace(m.collaborator, mean_path=True))
                                        for m in cfg.modalities))
    model = CollaborativeModel(cfg)
    with torch.no_grad():
        model.collaborators["mask"].mean_path[1].weight.uniform_(-0.1, 0.1)
    save_pretrained(model, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.config.modality("mask").collaborator.mean_path
    assert torch.equal(back.collaborators["mask"].mean_path[1].weight, model.collaborators["mask"].mean_path[1].weight)


def test_a_modalitys_default_strength_round_trips_and_one_means_absent(tmp_path):
    from dataclasses import replace

    from collab.model import CollaborativeModel
    from tests.conftest import tiny_config

    cfg = tiny_config()
    cfg = replace(cfg, modalities=tuple(replace(m, strength=1.5) if m.name == "text" else m for m in cfg.modalities))
    save_pretrained(CollaborativeModel(cfg), tmp_path / "m")
    index = json.loads((tmp_path / "m" / INDEX_NAME).read_text())
    assert [m.get("strength") for m in index["modalities"]] == [None, 1.5]
    back = load_model(tmp_path / "m")
    assert back.config.modality("text").strength == 1.5 and back.config.modality("mask").strength == 1.0
