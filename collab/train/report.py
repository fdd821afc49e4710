"""The training report of a demo run: loss curves, sample grids, wall time per stage.

    python -m collab.train.report --run runs/demo --model checkpoints/demo --out checkpoints/demo/report
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

STAGES = ("vae", "decoder", "ldm_mask", "ldm_text", "diffusers")


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def stage_logs(run: Path, own_only: bool = False) -> dict[str, list[dict]]:
    """Loss records per stage present in `run`, in training order (unknown stages last). `own_only`:
    leave out logs hard-linked from another run (how a continuation takes over an earlier run's
    finished stages): they were trained there, and counting them here would count them twice."""
    found = {p.name[: -len(".loss.jsonl")]: p for p in sorted(run.glob("*.loss.jsonl"))
             if not own_only or p.stat().st_nlink == 1}
    order = [s for s in STAGES if s in found] + [s for s in found if s not in STAGES]
    logs = {s: read_log(found[s]) for s in order}
    return {s: recs for s, recs in logs.items() if recs}  # a stage that logged nothing is left out


def wall_seconds(records: list[dict]) -> float:
    """Seconds a stage trained. The loop's clock restarts when a run resumes, so sum the segments."""
    total, last = 0.0, 0.0
    for r in records:
        if r["seconds"] < last:  # a resumed segment
            total += last
        last = r["seconds"]
    return total + last


def plot_losses(logs: dict[str, list[dict]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(logs), figsize=(3.6 * len(logs), 3.0), squeeze=False)
    for ax, (stage, recs) in zip(axes[0], logs.items()):
        steps = np.array([r["step"] for r in recs])
        loss = np.array([r["loss"] for r in recs])
        ax.plot(steps, loss, lw=0.8, alpha=0.5)
        if len(loss) >= 8:  # a moving average, since single log points are noisy
            k = max(len(loss) // 20, 2)
            ax.plot(steps[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), lw=1.6)
        ax.set_title(f"{stage} ({wall_seconds(recs) / 60:.0f} min)")
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def sample_grid(model_dir: Path, path: Path, n: int = 6, steps: int = 50) -> Path:
    """Rows: input mask, real render, each modality alone, all of them collaboratively (held-out
    conditions, by kind: the caption, the mask, the attribute flags)."""
    from PIL import Image

    from collab.eval import HELDOUT_WORLD, conditions_for, held_out_pairs
    from collab.masks import colorize
    from collab.pipeline import generate
    from collab.registry import load_model
    from collab.visualize import grid, label

    model = load_model(model_dir)
    data = held_out_pairs(n, model.config.image_size, HELDOUT_WORLD)
    idx = np.arange(n)
    rows = {"mask": [colorize(m) for m in data.labels], "real": list(data.images)}
    runs = {f"{name} only": (name,) for name in model.names}
    if len(model.names) > 1:
        runs["collaborative (" + " + ".join(model.names) + ")"] = tuple(model.names)
    for title, names in runs.items():
        conds = conditions_for(model, names, data, idx, paraphrase=False)
        rows[title] = list(generate(model, conds, steps=steps, seed=0, batch_size=n).images)
    cells = [label(im, name if j == 0 else "") for name, ims in rows.items() for j, im in enumerate(ims)]
    Image.fromarray(grid(cells, ncols=n)).save(path)
    return path


def history_lines(model_dir: Path) -> list[str]:
    """Training time per stage summed over every run that led to the model (training.json), when
    the model was continued from an earlier export with --init."""
    f = model_dir / "training.json"
    if not f.exists():
        return []
    record = json.loads(f.read_text())
    if "continued_from" not in record:
        return []
    runs, r = [], record
    while r is not None:
        runs.append(r)
        r = r.get("continued_from")
    lines = ["", f"The model went through {len(runs)} runs (the first one, then `--init` continuations); "
             "the table above is the last run. Steps per run, first to last, and the total training "
             "time of each stage:", "", "| stage | steps per run | total wall time |", "|---|---|---|"]
    runs = runs[::-1]  # first to last; stage_seconds are cumulative, so a stage trained in a run
    for stage, secs in record["stage_seconds"].items():  # where its total grew (else it was taken over)
        key = "vae" if stage == "vae" else "diffusers" if stage == "diffusers" else "ldm"
        totals = [r.get("stage_seconds", {}).get(stage, 0.0) for r in runs]
        # runs record their steps per stage; older records only their recipe's step count
        steps = [str(r["stage_steps"].get(stage, 0)) if "stage_steps" in r else
                 str(r["recipe"][key]["steps"]) if t > (totals[i - 1] if i else 0.0) else "0"
                 for i, (r, t) in enumerate(zip(runs, totals))]
        lines.append(f"| {stage} | {' + '.join(steps)} | {secs / 60:.1f} min |")
    lines.append(f"| total | | {sum(record['stage_seconds'].values()) / 60:.1f} min |")
    return lines


def write_report(run: Path, model_dir: Path, out: Path, command: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    logs = stage_logs(run)
    plot_losses(logs, out / "loss_curves.png")
    sample_grid(model_dir, out / "samples.png")
    lines = ["# Demo model training report", "", f"Command: `{command}` (resumable: run it again to continue).", "",
             "| stage | steps | final loss (mean of last 5 logs) | wall time |", "|---|---|---|---|"]
    total = 0.0
    for stage, recs in logs.items():
        secs = wall_seconds(recs)
        total += secs
        final = np.mean([r["loss"] for r in recs[-5:]])
        lines.append(f"| {stage} | {recs[-1]['step']} | {final:.4f} | {secs / 60:.1f} min |")
    lines += [f"| total | | | {total / 60:.1f} min |", *history_lines(model_dir), "",
              "![loss curves](loss_curves.png)", "",
              "Held-out conditions (a face-world seed never used in training), 50 DDIM steps, seed 0; rows: "
              "input mask, the real render of those conditions, each modality alone, all together.", "",
              "![samples](samples.png)", ""]
    (out / "README.md").write_text("\n".join(lines))
    return out / "README.md"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--model", type=Path, default=Path("checkpoints/demo"))
    ap.add_argument("--out", type=Path, default=Path("checkpoints/demo/report"))
    ap.add_argument("--command", default="python -m collab.train.demo --run runs/demo --out checkpoints/demo")
    args = ap.parse_args()
    print(write_report(args.run, args.model, args.out, args.command))


if __name__ == "__main__":
    main()
