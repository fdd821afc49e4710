"""The fair test of learned weights against fixed ones: the layout-vs-text frontier.

Raising the text branch's share trades mask alignment (parser mIoU) for caption attributes. Fixed
weights (composable) trace one curve as the text weight goes 0.1 -> 0.9; collaborative traces one
per combination rule as the text *strength* (a multiplier on the learned weight, `generate(strength=)`)
goes 0.25 -> 16. If learned, spatially and temporally varying weights beat fixed ones (the paper's
claim), collaborative's curve lies above composable's: more mIoU at equal attribute accuracy.

    python -m collab.eval --out docs/results/frontier --n 80 --only-frontier

Composable at text weight w is the uniform mix with text strength w / (1 - w), so both curves come
from the same `generate` call on the same held-out pairs and noise.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from collab.eval.heldout import held_out_pairs
from collab.eval.methods import Method, paper_pair
from collab.eval.metrics import attribute_metrics, mask_metrics
from collab.eval.sampling import sample_set
from collab.model import CollaborativeModel

TEXT_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # composable: the text branch's fixed weight
TEXT_STRENGTHS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # collaborative: multiplier on the learned text weight
RULES = ("paper", "official")


@dataclass(frozen=True)
class FrontierSetting:
    curve: str  # "composable", "collaborative (paper rule)", ...; anchors: "mask only", "text only"
    mode: str
    rule: str | None
    knob: float | None  # composable: text weight; collaborative: text strength
    modalities: tuple[str, ...]

    def strength(self, text: str) -> dict[str, float]:
        if self.knob is None:
            return {}
        return {text: self.knob / (1.0 - self.knob)} if self.mode == "composable" else {text: self.knob}


def frontier_settings(model: CollaborativeModel, weights=TEXT_WEIGHTS, strengths=TEXT_STRENGTHS,
                      rules=RULES) -> list[FrontierSetting]:
    pair = paper_pair(model)
    if len(pair) != 2:
        raise ValueError(f"the frontier needs a mask and a text modality; model {model.config.name} has "
                         f"{', '.join(model.names)}")
    out = [FrontierSetting(f"{n} only", "collaborative", None, None, (n,)) for n in pair]
    out += [FrontierSetting("composable", "composable", None, w, pair) for w in weights]
    for rule in rules:
        out += [FrontierSetting(f"collaborative ({rule} rule)", "collaborative", rule, s, pair) for s in strengths]
    return out


def text_name(model: CollaborativeModel) -> str:
    return next(m.name for m in model.config.modalities if m.kind == "text")


def run_frontier(model: CollaborativeModel, ev, cfg, settings: list[FrontierSetting] | None = None,
                 progress: Callable[[str], None] = print) -> dict:
    """mIoU and attribute accuracy of every setting on the same `cfg.n` held-out pairs and noise."""
    settings = settings or frontier_settings(model)
    data = held_out_pairs(cfg.n, model.config.image_size, cfg.world_seed)
    targets = {k: v[:cfg.n] for k, v in data.targets.items()}
    text = text_name(model)
    points = []
    for st in settings:
        label = st.curve if st.knob is None else f"{st.curve} @ {st.knob:g}"
        run_cfg = replace(cfg, rule=st.rule) if st.rule else cfg
        s = sample_set(model, Method(label, st.modalities, st.mode), data, run_cfg, n=cfg.n, progress=progress,
                       strength=st.strength(text))
        row = mask_metrics(ev, s.images, data.labels[:cfg.n]) | attribute_metrics(ev, s.images, targets)
        points.append({"curve": st.curve, "mode": st.mode, "rule": st.rule, "knob": st.knob,
                       "strength": st.strength(text), "miou": row["miou"], "attr_acc": row["acc_mean"],
                       "seconds_per_image": s.seconds_per_image})
    config = {"model": model.config.name, "n": cfg.n, "steps": cfg.steps, "sampler": cfg.sampler, "eta": cfg.eta,
              "seed": cfg.seed, "text": text, "world_seed": cfg.world_seed}
    return {"config": config, "points": points, "verdict": verdict(points)}


# ---------------------------------------------------------------- reading the curves


def _envelope(points: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The curve's Pareto-optimal points (no other point has both more mIoU and more attribute
    accuracy), sorted by attribute accuracy: what that family can reach at best."""
    best = [p for p in points if not any(q["miou"] >= p["miou"] and q["attr_acc"] >= p["attr_acc"] and
                                         (q["miou"], q["attr_acc"]) != (p["miou"], p["attr_acc"]) for q in points)]
    best.sort(key=lambda p: p["attr_acc"])
    return np.array([p["attr_acc"] for p in best]), np.array([p["miou"] for p in best])


def gaps(points: list[dict], curve: str, against: str = "composable") -> list[float]:
    """For each point of `curve` whose attribute accuracy lies within `against`'s range: its mIoU
    minus the mIoU of `against`'s envelope at that accuracy (linear between envelope points)."""
    acc, miou = _envelope([p for p in points if p["curve"] == against])
    out = []
    for p in (p for p in points if p["curve"] == curve):
        if len(acc) and acc[0] <= p["attr_acc"] <= acc[-1]:
            out.append(p["miou"] - float(np.interp(p["attr_acc"], acc, miou)))
    return out


def verdict(points: list[dict]) -> dict[str, str]:
    """One plain sentence per collaborative curve: above, below or crossing composable's?"""
    out = {}
    for curve in dict.fromkeys(p["curve"] for p in points if p["curve"].startswith("collaborative")):
        g = gaps(points, curve)
        if not g:
            out[curve] = (f"{curve}: no point falls within composable's range of attribute accuracy, so the "
                          "curves cannot be compared at equal accuracy")
            continue
        above = sum(x > 0 for x in g)
        where = ("lies above composable's" if above == len(g) else "lies below composable's" if above == 0
                 else "crosses composable's")
        out[curve] = (f"{curve} {where} curve: at equal attribute accuracy it has {np.mean(g):+.3f} mIoU on "
                      f"average ({above} of {len(g)} comparable points above, gaps {min(g):+.3f} to {max(g):+.3f})")
    return out


def choose_strength(points: list[dict], rule: str = "paper", miou_gain: float = 0.03,
                    attr_slack: float = 0.02) -> dict:
    """A model's default text strength, read off a frontier run on validation conditions (another
    world seed, never the evaluation's). Against composable at equal weights (text weight 0.5): the
    smallest strength whose point has at least `miou_gain` more mIoU and at most `attr_slack` less
    attribute accuracy (closest to the learned mix that keeps both the layout lead and the text);
    if none has both, the strength with the largest mIoU + attribute accuracy (ties: the smaller)."""
    curve = f"collaborative ({rule} rule)"
    base = [p for p in points if p["curve"] == "composable" and p["knob"] == 0.5]
    ours = sorted((p for p in points if p["curve"] == curve), key=lambda p: p["knob"])
    if not base or not ours:
        raise ValueError(f"choosing a strength needs composable at text weight 0.5 and the {curve} curve; "
                         "run the frontier with --frontier-weights 0.5 and --frontier-rules " + rule)
    b = base[0]
    ok = [p for p in ours if p["miou"] >= b["miou"] + miou_gain and p["attr_acc"] >= b["attr_acc"] - attr_slack]
    if ok:
        pick, why = ok[0], (f"the smallest strength with mIoU >= composable's + {miou_gain:g} and attribute "
                            f"accuracy >= composable's - {attr_slack:g}")
    else:
        pick = max(ours, key=lambda p: (round(p["miou"] + p["attr_acc"], 9), -p["knob"]))
        why = ("no strength met both conditions against composable; the one with the largest mIoU + attribute "
               "accuracy")
    return {"strength": pick["knob"], "rule": rule, "why": why, "chosen": pick, "composable": b,
            "miou_gain": miou_gain, "attr_slack": attr_slack}


def frontier_markdown(result: dict) -> str:
    c = result["config"]
    lines = [f"Frontier on model `{c['model']}`: {c['n']} held-out pairs, {c['sampler']} {c['steps']} steps "
             f"(eta {c['eta']}), seed {c['seed']}. Composable: fixed text weight; collaborative: strength on the "
             "learned text weight.", "",
             "| curve | text weight / strength | mask mIoU | attr acc | s/image |", "|---|---|---|---|---|"]
    for p in result["points"]:
        knob = "–" if p["knob"] is None else f"{p['knob']:g}"
        lines.append(f"| {p['curve']} | {knob} | {p['miou']:.3f} | {p['attr_acc']:.3f} | "
                     f"{p['seconds_per_image']:.2f} |")
    lines += ["", *(f"- {s}." for s in result["verdict"].values())]
    return "\n".join(lines) + "\n"


STYLES = {"composable": ("tab:gray", "s", "-"), "collaborative (paper rule)": ("tab:blue", "o", "-"),
          "collaborative (official rule)": ("tab:orange", "^", "-")}


def plot_frontier(result: dict, path: Path) -> Path:
    """mIoU (y) against attribute accuracy (x), one line per curve, each point labelled by its knob."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    points = result["points"]
    for curve in dict.fromkeys(p["curve"] for p in points):
        ps = [p for p in points if p["curve"] == curve]
        if ps[0]["knob"] is None:  # an anchor: one collaborator alone
            ax.scatter([p["attr_acc"] for p in ps], [p["miou"] for p in ps], marker="*", s=140, color="black",
                       zorder=3)
            ax.annotate(curve, (ps[0]["attr_acc"], ps[0]["miou"]), textcoords="offset points", xytext=(6, 4))
            continue
        colour, marker, style = STYLES.get(curve, (None, "o", "-"))
        ax.plot([p["attr_acc"] for p in ps], [p["miou"] for p in ps], style, marker=marker, color=colour,
                label=curve)
        for p in ps:
            ax.annotate(f"{p['knob']:g}", (p["attr_acc"], p["miou"]), textcoords="offset points", xytext=(4, -10),
                        fontsize=7, color=colour)
    c = result["config"]
    ax.set_xlabel("attribute accuracy (caption's gender, age, beard)")
    ax.set_ylabel("mask mIoU (parser vs input mask)")
    ax.set_title(f"{c['model']}: layout vs text, n = {c['n']}, {c['sampler']} {c['steps']} steps\n"
                 "labels: composable text weight / collaborative text strength", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_frontier(result: dict, out: Path) -> list[Path]:
    import json

    out.mkdir(parents=True, exist_ok=True)
    (out / "frontier.json").write_text(json.dumps(result, indent=1))
    (out / "frontier.md").write_text(frontier_markdown(result))
    return [out / "frontier.json", out / "frontier.md", plot_frontier(result, out / "frontier.png")]
