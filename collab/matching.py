"""Raw conditions as a user gives them -> the conditions of a model's modalities.

A condition is given under a modality's name ("seg_mask") or under the input it is ("mask", "text",
"attributes": what its kind reads, `collab.kinds`); every modality whose name or input is given gets
it, and a joint modality is used when every one of its parts is given. The CLI and the app both
match through `match_conditions`, so they agree on what a model reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from collab import kinds
from collab.conditions import ConditionError
from collab.config import ModalityConfig, ModelConfig


@dataclass(frozen=True)
class Match:
    conditions: dict[str, Any]  # modality name -> raw condition ({part: raw} for a joint modality)
    unread: tuple[str, ...]  # what was given that no modality of the model reads

    def unread_message(self) -> str:
        """What was given and not read, for a warning (empty when everything was read)."""
        if not self.unread:
            return ""
        they = "they were" if len(self.unread) > 1 else "it was"
        return (f"this model does not use the {' and the '.join(self.unread)} you gave "
                f"(it reads {', '.join(self.conditions)}); {they} ignored")


def _key(name: str, encoder: Any, given: Mapping[str, Any]) -> str:
    """Where one input of a modality is in `given`: under its name, else under the input it reads."""
    return name if name in given else kinds.kind_of(encoder).reads


def reads(m: ModalityConfig) -> tuple[str, ...]:
    """The inputs a modality reads: ("text",), or ("attributes", "mask") for a joint one."""
    return tuple(kinds.kind_of(enc).reads for _, _, enc in m.inputs())


def needs(m: ModalityConfig) -> str:
    """What one modality reads, for messages: "text", or "attributes and mask together"."""
    names = reads(m)
    return names[0] if len(names) == 1 else " and ".join(names) + " together"


def match_conditions(config: ModelConfig, given: Mapping[str, Any], ways: Mapping[str, str] | None = None) -> Match:
    """The raw conditions for `config`'s modalities from `given` ({modality name or input: raw};
    None = not given). No match at all is a ConditionError saying what the model reads and, with
    `ways` = {input the caller offers: how to give it}, how to give it."""
    given = {k: v for k, v in given.items() if v is not None}
    conds: dict[str, Any] = {}
    used: set[str] = set()
    for m in config.modalities:
        if m.name in given:
            conds[m.name] = given[m.name]
            used.add(m.name)
            continue
        keys = {name: _key(name, enc, given) for name, _, enc in m.inputs()}
        if not all(k in given for k in keys.values()):
            continue
        raws = {name: given[k] for name, k in keys.items()}
        conds[m.name] = raws if kinds.kind_of(m.encoder).parts(m.encoder) else raws[m.name]
        used |= set(keys.values())
    if not conds:
        raise ConditionError(_nothing_read(config, list(given), ways or {}))
    return Match(conds, tuple(k for k in given if k not in used))


def _nothing_read(config: ModelConfig, gave: list[str], ways: Mapping[str, str]) -> str:
    gave_text = f"you gave {' and '.join(gave)} only" if gave else "you gave none"
    if all(kinds.kind_of(m.encoder).parts(m.encoder) for m in config.modalities):  # one network on all at once
        m = config.modalities[0]
        cannot = [k for k in dict.fromkeys([*ways, *gave]) if k not in reads(m)]  # what the caller offers
        tail = f", and cannot read {' or '.join(cannot)}" if cannot else ""
        return f"this model is one network trained on {needs(m)}: it needs {' and '.join(reads(m))} both{tail}; {gave_text}"
    wants = " or ".join(needs(m) for m in config.modalities)
    inputs = dict.fromkeys(r for m in config.modalities for r in reads(m))
    how = ", or ".join(ways[r] for r in inputs if r in ways)
    return f"give a condition this model reads ({wants}){': ' + how if how else ''}; {gave_text}"
