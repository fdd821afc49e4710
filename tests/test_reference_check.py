"""The golden-vector checker: passes on the official fixtures, on a fixture set it has never seen
(written here in the documented format with another architecture), and fails loudly on a wrong value."""
import io
import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file

from collab.checkpoint import official_prefixes, to_official
from collab.config import load_official_config
from collab.masks import labels_to_onehot
from collab.pipeline import generate
from collab.reference_check import run
from collab.schedule import SamplingSchedule
from tests.conftest import REFERENCE, VOCAB, randomize


def _run(path):
    out = io.StringIO()
    passed, failed = run([path], out)
    return passed, failed, out.getvalue().splitlines()


def test_official_fixtures_all_pass():
    passed, failed, lines = _run(REFERENCE)
    assert failed == 0, [ln for ln in lines if ln.startswith("FAIL")]
    assert passed >= 80
    assert lines[-1] == f"{passed} passed, 0 failed"
    assert any("official_eta0_S50/influence_mask" in ln for ln in lines)


def _unet(mc, out, heads_key):
    return {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": {
        "image_size": 8, "in_channels": 3, "out_channels": out, "model_channels": mc, "attention_resolutions": [2],
        "num_res_blocks": 1, "channel_mult": [1, 2], "use_spatial_transformer": True, "transformer_depth": 1,
        "context_dim": 16, "use_checkpoint": True, "legacy": False, heads_key[0]: heads_key[1]}}


def _ldm(cond_key, cond_cfg):
    return {"model": {"target": "ldm.models.diffusion.ddpm.LatentDiffusion", "params": {
        "linear_start": 0.0015, "linear_end": 0.0195, "timesteps": 1000, "image_size": 8, "channels": 3,
        "scale_factor": 0.141, "cond_stage_key": cond_key, "unet_config": _unet(32, 3, ("num_head_channels", 16)),
        "first_stage_config": {"target": "ldm.models.autoencoder.AutoencoderKL", "params": {
            "embed_dim": 3, "ddconfig": {"double_z": True, "z_channels": 3, "resolution": 64, "in_channels": 3,
                                         "out_ch": 3, "ch": 32, "ch_mult": [1, 2, 2, 2], "num_res_blocks": 1,
                                         "attn_resolutions": [], "dropout": 0.0},
            "lossconfig": {"target": "torch.nn.Identity"}}},
        "cond_stage_config": cond_cfg}}}


def write_unseen_set(d):
    """A fixture set in the documented format: f=8 VAE, num_head_channels, other S/eta/prompts."""
    name = "unseen"
    (d / f"{name}_text.yaml").write_text(yaml.safe_dump(_ldm("caption", {
        "target": "ldm.modules.encoders.modules.BERTEmbedder", "params": {"n_embed": 16, "n_layer": 1}})))
    (d / f"{name}_mask.yaml").write_text(yaml.safe_dump(_ldm("seg_mask", {
        "target": "ldm.modules.encoders.modules.SegMaskEncoder", "params": {
            "seg_mask_encoder_config": {"target": "ldm.modules.encoders.modules.PassSegMaskEncoder", "params": {}},
            "mask_embed_dim": 1024, "context_dim": 16}})))
    compose = _ldm("conditions", {})["model"]
    compose["target"] = "ldm.models.diffusion.ddpm_compose.LatentDiffusionCompose"
    for k in ("unet_config", "first_stage_config", "cond_stage_config"):
        compose["params"].pop(k)
    compose["params"].update({
        "seg_mask_ldm_config_path": f"{name}_mask.yaml", "text_ldm_config_path": f"{name}_text.yaml",
        "compose_unet_config": {"target": "ldm.models.diffusion.compose_modules.ComposeUNet", "params": {
            "confidence_conditioning_key": "crossattn", "confidence_input": "x_t",
            "confidence_map_predictor_config": _unet(32, 1, ("num_heads", 2))}}})
    (d / f"{name}_compose.yaml").write_text(yaml.safe_dump({"model": compose}))

    cfg = load_official_config(d / f"{name}_compose.yaml")
    from collab.model import CollaborativeModel
    from collab.tokenizer import WordPieceTokenizer

    model = randomize(CollaborativeModel(cfg), seed=5).eval().attach_tokenizer(WordPieceTokenizer.from_vocab_file(VOCAB))
    ours = model.state_dict()
    weights = to_official(ours, official_prefixes(cfg, "compose"))
    weights.update(model.schedule.official_buffers())
    save_file({k: v.contiguous() for k, v in weights.items()}, d / f"{name}_weights.safetensors")

    labels = np.zeros((64, 64), np.uint8)
    labels[10:50, 12:52], labels[20:26, 18:26], labels[0:12] = 1, 4, 13
    img = Image.fromarray(labels, "P")
    img.putpalette([0, 0, 0, 204, 0, 0] * 128)
    img.save(d / "unseen_mask.png")
    prompt, prompt2 = "a woman in her fifties, no beard.", "he is old " * 40
    g = torch.Generator().manual_seed(0)
    tensors = {"mask_onehot": labels_to_onehot(labels)[None],
               "text_tokens": model.inputs["text"].tokenizer.encode([prompt, "", prompt2]).ids,
               "unet_x": torch.randn(2, 3, 8, 8, generator=g), "unet_t": torch.tensor([3, 777]),
               "unet_ctx": torch.randn(2, 7, 16, generator=g), "vae_in": torch.rand(1, 3, 64, 64, generator=g) * 2 - 1}
    with torch.no_grad():
        tensors["ctx_mask"] = model.encoders["mask"](tensors["mask_onehot"])
        tensors["ctx_text_batch3"] = model.encoders["text"](tensors["text_tokens"])
        tensors["ctx_text"] = tensors["ctx_text_batch3"][:1]
        for n, off in (("mask", "mask"), ("text", "text")):
            tensors[f"unet_out_{off}_collaborator"] = model.collaborators[n](tensors["unet_x"], tensors["unet_t"], tensors["unet_ctx"])
            tensors[f"diffuser_out_{off}"] = model.diffusers[n](tensors["unet_x"], tensors["unet_t"], tensors["unet_ctx"])
        post = model.vae.encode(tensors["vae_in"])
        tensors.update(vae_post_mean=post.mean, vae_post_logvar=post.logvar, vae_dec_of_mean=model.vae.decode(post.mean))
    runs = [{"tag": "official_eta05_S7", "S": 7, "eta": 0.5, "official_weighting": True, "seed": 1}]
    ctx = {"mask": tensors["ctx_mask"], "text": tensors["ctx_text"]}
    for run_ in runs:
        tag, sched = run_["tag"], SamplingSchedule.uniform(model.schedule, run_["S"])
        x_T = torch.randn(1, 3, 8, 8, generator=g)
        noise = torch.randn(len(sched), 1, 3, 8, 8, generator=g)
        rec = {}
        res = generate(model, {}, contexts=ctx, steps=run_["S"], eta=run_["eta"], rule="official", x_T=x_T,
                       noise=lambda k, like: noise[k], callback=lambda s: [rec.setdefault(k, []).append(v.clone())
                       for k, v in (("x_t", s.x_t), ("pred_x0", s.pred_x0), ("x_prev", s.x_prev),
                                    ("influence_mask", s.influence["mask"]), ("influence_text", s.influence["text"]))])
        tensors.update({f"{tag}/{k}": torch.stack(v) for k, v in rec.items()})
        tensors.update({f"{tag}/x_T": x_T, f"{tag}/noise": noise, f"{tag}/timesteps": sched.timesteps,
                        f"{tag}/ddim_alphas": sched.alphas.flip(0).float(), f"{tag}/z_0": res.latents,
                        f"{tag}/image": model.decode(res.latents)})
        run_["timesteps"] = sched.timesteps.tolist()
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, d / f"{name}_io.safetensors")
    meta = {"name": name, "variant": {"prompt": prompt, "prompt2": prompt2, "mask_png": "unseen_mask.png", "runs": runs},
            "prompt_used": prompt, "prompt2_used": prompt2, "runs": {r["tag"]: r for r in runs},
            "state_dict_keys": {k: list(v.shape) for k, v in weights.items()}, "aliases": {}}
    (d / f"{name}.json").write_text(json.dumps(meta))
    shutil.copy(VOCAB, d / "bert-base-uncased-vocab.txt")
    return d


def test_unseen_fixture_set_passes_and_a_wrong_value_fails(tmp_path):
    d = write_unseen_set(tmp_path)
    passed, failed, lines = _run(d)
    assert failed == 0, [ln for ln in lines if ln.startswith("FAIL")]
    assert passed > 25 and any("official_eta05_S7/influence_text" in ln for ln in lines)
    # one corrupted golden value must be reported, by name, as the only failure
    io_path = d / "unseen_io.safetensors"
    tensors = load_file(io_path)
    tensors["official_eta05_S7/z_0"] = tensors["official_eta05_S7/z_0"] + 0.05
    save_file(tensors, io_path)
    passed2, failed2, lines2 = _run(d)
    assert failed2 == 1 and passed2 == passed - 1
    assert [ln.split()[1] for ln in lines2 if ln.startswith("FAIL")] == ["unseen/official_eta05_S7/z_0"]


def test_cli_exit_codes(tmp_path, capsys):
    from collab.reference_check import main

    assert main([str(tmp_path)]) == 1  # nothing found is a failure, not a silent pass
    assert capsys.readouterr().out.strip().endswith("0 passed, 1 failed")
