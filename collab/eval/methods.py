"""The rows of the evaluation: which modalities, in which mode, from which model."""
from __future__ import annotations

from dataclasses import dataclass

from collab.model import CollaborativeModel


@dataclass(frozen=True)
class Method:
    name: str
    modalities: tuple[str, ...]
    mode: str = "collaborative"
    model: str = "main"  # which of the evaluated models samples this row ("main", "joint", ...)


def paper_pair(model: CollaborativeModel) -> tuple[str, ...]:
    """The paper's two modalities (a mask-kind and a text-kind one) when the model has both, else all."""
    kinds = {m.kind: m.name for m in reversed(model.config.modalities)}
    pair = tuple(n for n in model.names if n in (kinds.get("mask"), kinds.get("text")))
    return pair if len(pair) == 2 else tuple(model.names)


def default_methods(model: CollaborativeModel, modalities: tuple[str, ...] | None = None,
                    ablations: bool = True) -> list[Method]:
    """Each modality alone, then together composable / collaborative / the two ablations (named
    without suffix: the paper's table). `modalities` defaults to the paper's pair."""
    pair = tuple(modalities) if modalities else paper_pair(model)
    rows = [Method(f"{n} only", (n,)) for n in pair]
    if len(pair) > 1:
        rows += [Method("composable", pair, "composable"), Method("collaborative", pair)]
        if ablations:
            rows += [Method("w/o spatial", pair, "no_spatial"), Method("w/o temporal", pair, "no_temporal")]
    return rows


def joint_method(joint: CollaborativeModel) -> Method:
    """The jointly trained baseline's row: one network reading all its conditions at once."""
    parts = tuple(p.name for p in joint.config.modalities[0].encoder.parts)
    return Method(f"joint LDM ({' + '.join(parts)})", joint.names, "collaborative", "joint")


def beyond_two_methods(model: CollaborativeModel, joint: CollaborativeModel | None = None) -> list[Method]:
    """Rows of the "beyond two modalities" table: the modalities outside the paper's pair alone, each
    of them with the mask (composable and collaborative), all modalities together, and the jointly
    trained model on its own conditions."""
    pair = paper_pair(model)
    extra = [n for n in model.names if n not in pair]
    if not extra:
        return []
    mask = next((m.name for m in model.config.modalities if m.kind == "mask"), None)
    rows = [Method(f"{n} only", (n,)) for n in extra]
    for n in extra:
        if mask:
            both = tuple(x for x in model.names if x in (mask, n))
            rows += [Method(f"composable ({' + '.join(both)})", both, "composable"),
                     Method(f"collaborative ({' + '.join(both)})", both)]
    everything = tuple(model.names)
    rows += [Method(f"composable ({' + '.join(everything)})", everything, "composable"),
             Method(f"collaborative ({' + '.join(everything)})", everything)]
    if joint is not None:
        rows.append(joint_method(joint))
    return rows


def training_hours(method: Method, model: CollaborativeModel, stage_seconds: dict[str, float] | None) -> float:
    """Wall hours on the training machine of the stages a method uses: its collaborators (or the joint
    LDM), plus the dynamic diffusers when it mixes by learned weights. The shared VAE is left out."""
    if not stage_seconds:
        return float("nan")
    stages = [f"ldm_{n}" for n in method.modalities]
    if len(method.modalities) > 1 and method.mode != "composable":
        stages.append("diffusers")
    if any(st not in stage_seconds for st in stages):
        return float("nan")
    return sum(stage_seconds[st] for st in stages) / 3600
