"""The evaluation's report: its data (results.json), markdown tables and figures."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from collab.eval.heldout import HELDOUT_WORLD, HeldOut
from collab.eval.methods import Method


@dataclass
class EvalReport:
    config: dict
    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    influence: dict = field(default_factory=dict)
    samplers: dict[str, dict[str, float]] = field(default_factory=dict)
    real: dict[str, float] = field(default_factory=dict)
    sections: dict[str, list[str]] = field(default_factory=dict)  # table title -> its row names
    denoising: dict = field(default_factory=dict)  # see denoising_errors


COLUMNS = (("miou", "mask mIoU"), ("pixel_acc", "pixel acc"), ("acc_mean", "attr acc"), ("acc_age", "age"),
           ("acc_beard", "beard"), ("acc_gender", "gender"), ("para_acc_mean", "attr acc (paraphrases)"),
           ("frechet", "Frechet"), ("diversity", "diversity"), ("seconds_per_image", "s/image"))


BEYOND_COLUMNS = (("miou", "mask mIoU"), ("pixel_acc", "pixel acc"), ("flag_acc", "attribute acc (12 flags)"),
                  ("flag_acc_unmasked", "attribute acc (gender, age, beard, smiling)"), ("acc_mean", "caption attr acc"),
                  ("frechet", "Frechet"), ("diversity", "diversity"), ("train_hours", "training h (2 CPU cores)"),
                  ("seconds_per_image", "s/image"))


SECTION_COLUMNS = {"paper": COLUMNS, "beyond two modalities": BEYOND_COLUMNS}


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown(report: EvalReport) -> str:
    lines = [f"Model `{report.config['model']}`, {report.config['n']} held-out pairs, {report.config['sampler']} "
             f"{report.config['steps']} steps (eta {report.config['eta']}), rule "
             f"{report.config['rule'] or 'model default'}.", "",
             ]
    sections = report.sections or {"paper": list(report.rows)}
    for title, names in sections.items():
        cols = SECTION_COLUMNS.get(title, COLUMNS)
        if title != "paper":
            lines += ["", f"**{title.capitalize()}**", ""]
        lines += ["| method | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
        lines.append("| real renders | " + " | ".join(_fmt(report.real.get(k)) for k, _ in cols) + " |")
        for name in names:
            lines.append(f"| {name} | " + " | ".join(_fmt(report.rows[name].get(k)) for k, _ in cols) + " |")
    if report.influence:
        lines += ["", "| method | modality | layout-first score (corr(t, share)) | share at first step | "
                  "share at last step | boundary - interior |", "|---|---|---|---|---|---|"]
        for mname, inf in report.influence.items():
            for mod, d in inf["modalities"].items():
                lines.append(f"| {mname} | {mod} | {d['layout_first_score']:.3f} | {d['share'][0]:.3f} | "
                             f"{d['share'][-1]:.3f} | {_fmt(d['boundary_minus_interior'])} |")
    if report.denoising:
        lines += denoising_markdown(report.denoising)
    if report.samplers:
        cols = (("steps", "steps"), ("miou", "mask mIoU"), ("acc_mean", "attr acc"), ("frechet", "Frechet"),
                ("seconds_per_image", "s/image"))
        lines += ["", "| sampler (collaborative) | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for name, row in report.samplers.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(row.get(k)) for k, _ in cols) + " |")
    return "\n".join(lines) + "\n"


def denoising_markdown(d: dict) -> list[str]:
    mods = d["modalities"]
    first = mods[0]
    head = ["t", *(f"MSE {k} only" for k in mods), "MSE learned mix", f"learned weight {first}",
            "MSE best fixed mix", f"best fixed weight {first}"]
    lines = ["", f"Noise-prediction error by timestep ({d['n']} held-out renders; Algorithm 1's loss):", "",
             "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in d["rows"]:
        vals = [str(r["t"]), *(f"{r[k]:.4f}" for k in mods), f"{r['learned mix']:.4f}",
                f"{r['learned weight'][first]:.2f}",
                f"{r['best fixed mix']:.4f}" if "best fixed mix" in r else "–",
                f"{r['best fixed weight'][first]:.2f}" if "best fixed weight" in r else "–"]
        lines.append("| " + " | ".join(vals) + " |")
    return lines


def plot_influence(report: EvalReport, path: Path, method: str = "collaborative") -> Path | None:
    """Mean weight of each modality per region over sampling (t runs 999 -> 0, left to right)."""
    inf = report.influence.get(method)
    if not inf:
        return None
    from collab.influence import RegionInfluence, plot_region_influence

    t = np.array(inf["timesteps"])
    curves, notes = {}, {}
    for mod, stats in inf["modalities"].items():
        per = np.array(stats["per_region"], np.float64)
        curves[mod] = RegionInfluence(t, list(inf["regions"]), np.where(per >= 0, per, np.nan))  # -1: absent
        notes[mod] = f"{mod}: layout-first score {stats['layout_first_score']:.2f}"
    fig = plot_region_influence(curves, f"{method}: influence per face region "
                                        f"(rule {report.config['rule'] or 'model default'})", notes)
    fig.savefig(path, dpi=110)
    return path


def plot_samples(gallery: dict[str, np.ndarray], path: Path, per_row: int = 6) -> Path:
    """Rows = methods, columns = the first pairs: a qualitative side-by-side."""
    from collab.visualize import grid, label

    cells = []
    for name, imgs in gallery.items():
        for j in range(per_row):
            cells.append(label(imgs[j] if j < len(imgs) else np.zeros_like(imgs[0]), name if j == 0 else ""))
    from PIL import Image

    Image.fromarray(grid(cells, ncols=per_row)).save(path)
    return path


def write_outputs(report: EvalReport, gallery: dict[str, np.ndarray], out: Path, inputs: HeldOut | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "results.json", out / "results.md", out / "gallery.npz"]
    files[0].write_text(json.dumps(asdict(report), indent=1))
    files[1].write_text(markdown(report))
    np.savez_compressed(files[2], **gallery)  # the samples shown, so a later --only run can add rows
    if inputs is not None:
        from collab.masks import colorize

        n = min(len(inputs.images), len(next(iter(gallery.values()))))
        gallery = {"input mask": np.stack([colorize(inputs.labels[i]) for i in range(n)]),
                   "real render": inputs.images[:n]} | gallery
    files.append(plot_samples(gallery, out / "samples.png"))
    p = plot_influence(report, out / "influence.png")
    if p:
        files.append(p)
    return files


def merge_reports(previous: dict, new: EvalReport, sections: dict[str, list[Method]]) -> EvalReport:
    """`new`'s rows added to (or replacing) those of a previous results.json of the same settings."""
    settings = ("n", "steps", "eta", "sampler", "rule", "seed", "batch_size", "diversity_pairs", "diversity_samples",
                "world_seed")
    before = {"world_seed": HELDOUT_WORLD} | previous["config"]  # results made before --world-seed: the evaluation's
    differ = [k for k in settings if before.get(k) != new.config.get(k)]
    if differ:
        raise SystemExit(f"cannot merge into results made with other settings: {', '.join(differ)} differ")
    rows = previous["rows"] | new.rows
    order = {t: [m.name for m in ms if m.name in rows] for t, ms in sections.items()}
    config = previous["config"] | {"merged_rows": sorted(new.rows)}
    return EvalReport(config, rows, previous.get("influence", {}) | new.influence, previous.get("samplers", {}),
                      previous.get("real", {}), {t: names for t, names in order.items() if names},
                      previous.get("denoising", {}))
