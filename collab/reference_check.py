"""Verify collab against golden vectors computed with the official implementation.

    python -m collab.reference_check DIR [DIR ...]

Finds every fixture set in DIR (the format of `shared/reference/README.md`: `NAME.json` +
`NAME_compose.yaml` + `NAME_weights.safetensors` + `NAME_io.safetensors`, and per-module sets
`NAME.json` + `NAME.safetensors` + `NAME.io.safetensors`, in DIR or any sub-directory), recomputes
every stored tensor with collab and prints one line per golden tensor, then `N passed, N failed`.
Float tensors must satisfy max|ours - ref| <= 1e-4 * max(1, max|ref|); integer tensors must be equal.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from safetensors.torch import load_file

RTOL = 1e-4


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}  {self.detail}"


def compare(name: str, ours: torch.Tensor, ref: torch.Tensor, rtol: float = RTOL) -> Check:
    ours, ref = ours.detach().cpu(), ref.detach().cpu()
    if tuple(ours.shape) != tuple(ref.shape):
        return Check(name, False, f"shape {list(ours.shape)} != reference {list(ref.shape)}")
    if not ref.is_floating_point():
        bad = int((ours.to(ref.dtype) != ref).sum())
        return Check(name, bad == 0, "exact" if bad == 0 else f"{bad} of {ref.numel()} values differ")
    scale = max(1.0, float(ref.abs().max())) if ref.numel() else 1.0
    err = float((ours.double() - ref.double()).abs().max()) if ref.numel() else 0.0
    return Check(name, err <= rtol * scale, f"max_abs_err={err:.3g} (tol {rtol * scale:.3g})")


def _guard(name: str, fn: Callable[[], list[Check]]) -> list[Check]:
    try:
        return fn()
    except Exception as e:  # a crash is a failed fixture, reported with its reason
        last = traceback.format_exc().strip().splitlines()[-1]
        return [Check(name, False, f"error: {type(e).__name__}: {e}".splitlines()[0][:300] + f" [{last[:120]}]")]


def _find_vocab(directory: Path) -> Path | None:
    for d in (directory, *directory.parents[:2]):
        for name in ("bert-base-uncased-vocab.txt", "vocab.txt"):
            if (d / name).exists():
                return d / name
    return None


def _tokenizer(directory: Path):
    from collab.tokenizer import WordPieceTokenizer, find_vocab

    return WordPieceTokenizer.from_vocab_file(_find_vocab(directory) or find_vocab(None))


# ---------------------------------------------------------------- composed-model sets


def check_compose_set(json_path: Path) -> list[Check]:
    from collab.checkpoint import SCHEDULE_KEYS, compare_keys, load_official, official_shapes
    from collab.config import load_official_config
    from collab.masks import labels_to_onehot, load_mask
    from collab.pipeline import CollabStep, generate, to_uint8

    d, name = json_path.parent, json_path.stem
    meta = json.loads(json_path.read_text())
    io = load_file(d / f"{name}_io.safetensors")
    cfg = load_official_config(d / f"{name}_compose.yaml")
    checks: list[Check] = []
    P = f"{name}/"

    # 1. architecture: every key and shape of the official state_dict
    if "state_dict_keys" in meta:
        report = compare_keys(official_shapes(cfg, "compose"), {k: tuple(v) for k, v in meta["state_dict_keys"].items()})
        checks.append(Check(P + "state_dict_keys", report.ok, "all keys and shapes match" if report.ok
                            else report.describe(3).replace("\n", "; ")))

    # 2. load the official-layout weights strictly (float16 storage -> float32)
    vocab = _find_vocab(d)
    model = load_official(d / f"{name}_weights.safetensors", cfg, vocab=vocab)
    weights = load_file(d / f"{name}_weights.safetensors")
    for k in ("betas", "alphas_cumprod"):
        if k in io:
            ours = model.schedule.official_buffers()[k]
            checks.append(compare(P + k, ours, io[k]))
    for k in SCHEDULE_KEYS:
        if k in weights and k not in ("betas", "alphas_cumprod"):
            checks.append(compare(P + f"buffer.{k}", model.schedule.official_buffers()[k], weights[k].float()))

    # 3. conditions: tokenizer, mask preprocessing, encoders
    variant = meta.get("variant", {})
    prompts = [meta.get("prompt_used", variant.get("prompt", "")), "", meta.get("prompt2_used", variant.get("prompt2", ""))]
    text_name = next((m.name for m in cfg.modalities if m.kind == "text"), None)
    mask_name = next((m.name for m in cfg.modalities if m.kind == "mask"), None)
    contexts = {}
    if text_name and "text_tokens" in io:
        ids = model.inputs[text_name].tokenizer.encode([p.lower() for p in prompts], max_length=77).ids
        checks.append(compare(P + "text_tokens", ids, io["text_tokens"]))
        with torch.no_grad():
            ctx3 = model.encoders[text_name](io["text_tokens"])
        if "ctx_text_batch3" in io:
            checks.append(compare(P + "ctx_text_batch3", ctx3, io["ctx_text_batch3"]))
        if "ctx_text" in io:
            checks.append(compare(P + "ctx_text", ctx3[:1], io["ctx_text"]))
        contexts[text_name] = model.encode_condition(text_name, [prompts[0]])
    if mask_name and "mask_onehot" in io:
        png = variant.get("mask_png")
        if png and (d / png).exists():
            checks.append(compare(P + "mask_onehot", labels_to_onehot(load_mask(d / png))[None], io["mask_onehot"]))
        with torch.no_grad():
            contexts[mask_name] = model.encoders[mask_name](io["mask_onehot"])
        if "ctx_mask" in io:
            checks.append(compare(P + "ctx_mask", contexts[mask_name], io["ctx_mask"]))

    # 4. single modules on shared random inputs
    with torch.no_grad():
        for m in cfg.modalities:
            off = m.official_name or m.name
            for key, net in ((f"unet_out_{off.replace('seg_', '')}_collaborator", model.collaborators[m.name]),
                             (f"diffuser_out_{off.replace('seg_', '')}", model.diffusers[m.name] if m.name in model.diffusers else None)):
                if key in io and net is not None:
                    checks.append(compare(P + key, net(io["unet_x"], io["unet_t"], io["unet_ctx"]), io[key]))
        if "vae_in" in io:
            post = model.vae.encode(io["vae_in"])
            for key, val in (("vae_post_mean", post.mean), ("vae_post_logvar", post.logvar)):
                if key in io:
                    checks.append(compare(P + key, val, io[key]))
            if "vae_dec_of_mean" in io:
                checks.append(compare(P + "vae_dec_of_mean", model.vae.decode(io["vae_post_mean"]), io["vae_dec_of_mean"]))

    # 5. full sampling runs with the stored start code and per-step noise
    for tag, run in (meta.get("runs") or {}).items():
        checks += _guard(P + tag, lambda tag=tag, run=run: _check_run(model, contexts, io, P + tag, tag, run,
                                                                       generate, CollabStep, to_uint8))
    return checks


def _check_run(model, contexts, io, label, tag, run, generate, CollabStep, to_uint8) -> list[Check]:
    from collab.schedule import SamplingSchedule

    checks = []
    steps, eta = int(run["S"]), float(run["eta"])
    sched = SamplingSchedule.uniform(model.schedule, steps)
    ref_t = io.get(f"{tag}/timesteps", torch.tensor(run.get("timesteps", [])))
    checks.append(compare(f"{label}/timesteps", sched.timesteps, ref_t))
    # reference arrays are indexed with 0 = the last step
    for key, ours in (("ddim_alphas", sched.alpha_bar), ("ddim_alphas_prev", sched.alpha_bar_prev),
                      ("ddim_sigmas", sched.ddim_sigmas(eta))):
        if f"{tag}/{key}" in io:
            checks.append(compare(f"{label}/{key}", ours.flip(0).float(), io[f"{tag}/{key}"]))
    ref_noise = io.get(f"{tag}/noise")
    record: dict[str, list[torch.Tensor]] = {}

    def keep(step: CollabStep) -> None:
        for key, val in (("x_t", step.x_t), ("pred_x0", step.pred_x0), ("x_prev", step.x_prev)):
            record.setdefault(key, []).append(val.clone())
        for n, w in step.influence.items():
            record.setdefault(f"influence_{n}", []).append(w.clone())

    rule = "official" if run.get("official_weighting") else "paper"
    result = generate(model, {}, contexts=contexts, rule=rule, steps=steps, eta=eta, x_T=io[f"{tag}/x_T"],
                      noise=(lambda k, like: ref_noise[k].to(like)) if ref_noise is not None else None,
                      callback=keep, seed=None)
    for key, vals in record.items():
        if f"{tag}/{key}" in io:
            checks.append(compare(f"{label}/{key}", torch.stack(vals), io[f"{tag}/{key}"]))
    if f"{tag}/z_0" in io:
        checks.append(compare(f"{label}/z_0", result.latents, io[f"{tag}/z_0"]))
    if f"{tag}/image" in io:
        checks.append(compare(f"{label}/image", model.decode(result.latents), io[f"{tag}/image"]))
    return checks


# ---------------------------------------------------------------- per-module sets


def check_module_set(json_path: Path) -> list[Check]:
    d, meta = json_path.parent, json.loads(json_path.read_text())
    name = meta.get("fixture", json_path.stem)
    module = meta.get("module", "")
    weights = {k: v.float() if v.is_floating_point() else v for k, v in load_file(d / meta["weights_file"]).items()}
    io = load_file(d / meta["io_file"])
    P = f"{name}/"
    params = meta["config"].get("params", {})
    if module.endswith("UNetModel"):
        from collab.config import unet_from_official
        from collab.unet import UNetModel

        net = UNetModel(unet_from_official(meta["config"])).eval()
        net.load_state_dict(weights, strict=True)
        return _run_with_hooks(net, P, io, lambda: net(io["x"], io["timesteps"], io["context"]), {
            "debug.time_embed": net.time_embed, "debug.middle_block": net.middle_block,
            **{f"debug.input_blocks.{i}": b for i, b in enumerate(net.input_blocks)},
            **{f"debug.output_blocks.{i}": b for i, b in enumerate(net.output_blocks)}})
    if module.endswith("BERTEmbedder"):
        from collab.encoders import TextEncoder, TextEncoderConfig

        net = TextEncoder(TextEncoderConfig(n_embed=params["n_embed"], n_layer=params["n_layer"],
                                            vocab_size=params.get("vocab_size", 30522),
                                            max_seq_len=params.get("max_seq_len", 77))).eval()
        net.load_state_dict(weights, strict=True)
        checks = []
        tok = _tokenizer(d)
        prompts = meta.get("prompts")
        if prompts and "token_ids" in io:
            enc = tok.encode([p.lower() for p in prompts], max_length=77)
            checks.append(compare(P + "token_ids", enc.ids, io["token_ids"]))
            if "token_lengths" in io:
                checks.append(compare(P + "token_lengths", enc.lengths, io["token_lengths"]))
        edge = meta.get("tokenizer", {}).get("edge_prompts")
        if edge and "tokenizer_edge.token_ids" in io:
            checks.append(compare(P + "tokenizer_edge.token_ids", tok.encode(edge, max_length=77).ids,
                                  io["tokenizer_edge.token_ids"]))
        with torch.no_grad():
            ids = io["token_ids"]
            if "debug.after_embedding" in io:
                t = net.transformer
                checks.append(compare(P + "debug.after_embedding", t.token_emb(ids) + t.pos_emb(ids.shape[1]),
                                      io["debug.after_embedding"]))
            checks.append(compare(P + "embeddings", net(ids), io["embeddings"]))
        return checks
    if module.endswith("AutoencoderKL"):
        from collab.config import vae_from_official
        from collab.vae import AutoencoderKL

        net = AutoencoderKL(vae_from_official(meta["config"])).eval()
        net.load_state_dict({k: v for k, v in weights.items() if not k.startswith("loss.")}, strict=True)
        x = next(io[k] for k in ("x", "image", "input", "vae_in") if k in io)
        with torch.no_grad():
            post = net.encode(x)
            outs = {"posterior_mean": post.mean, "mean": post.mean, "posterior_logvar": post.logvar,
                    "logvar": post.logvar, "decoded": net.decode(post.mean), "output": net.decode(post.mean)}
        return [compare(P + k, v, io[k]) for k, v in outs.items() if k in io]
    return [Check(P + "module", False, f"module type {module!r} is not supported by this checker")]


def _run_with_hooks(net, prefix: str, io, run: Callable[[], torch.Tensor], hooks: dict) -> list[Check]:
    acts: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda mod, inp, out, k=k: acts.__setitem__(k, out.detach()))
               for k, m in hooks.items() if k in io]
    with torch.no_grad():
        out = run()
    for h in handles:
        h.remove()
    checks = [compare(prefix + k, v, io[k]) for k, v in acts.items()]
    if "debug.t_emb_sinusoidal" in io:
        from collab.layers import timestep_embedding

        checks.append(compare(prefix + "debug.t_emb_sinusoidal",
                              timestep_embedding(io["timesteps"], io["debug.t_emb_sinusoidal"].shape[1]),
                              io["debug.t_emb_sinusoidal"]))
    checks.append(compare(prefix + "output", out, io["output"]))
    return checks


# ---------------------------------------------------------------- discovery and CLI


def discover(root: Path) -> Iterator[tuple[str, Path]]:
    """(kind, json path) for every fixture set below `root`."""
    for js in sorted(root.rglob("*.json")):
        d, stem = js.parent, js.stem
        if (d / f"{stem}_io.safetensors").exists() and (d / f"{stem}_compose.yaml").exists():
            yield "compose", js
        elif stem.endswith(".io"):
            continue
        else:
            try:
                meta = json.loads(js.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(meta, dict) and "weights_file" in meta and "io_file" in meta:
                yield "module", js


@torch.no_grad()
def run(paths: list[Path], out=None) -> tuple[int, int]:
    out = out or sys.stdout
    passed = failed = 0
    for root in paths:
        if not root.exists():
            print(f"FAIL  {root}  directory not found", file=out)
            failed += 1
            continue
        found = list(discover(root))
        if not found:
            print(f"FAIL  {root}  no fixture sets found", file=out)
            failed += 1
        for kind, js in found:
            fn = check_compose_set if kind == "compose" else check_module_set
            for c in _guard(f"{js.stem}", lambda fn=fn, js=js: fn(js)):
                print(c.line(), file=out, flush=True)
                passed, failed = passed + c.passed, failed + (not c.passed)
    print(f"{passed} passed, {failed} failed", file=out)
    return passed, failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m collab.reference_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="directories holding fixture sets")
    args = ap.parse_args(argv)
    _, failed = run(args.dirs)
    return 1 if failed else 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
