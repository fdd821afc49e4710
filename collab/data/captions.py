"""Captions in the style of CelebA-Dialog's "Beard_and_Age" descriptions.

Two disjoint sets of phrasings: "train" (used to train the text collaborator) and "heldout" (other
sentence templates and synonyms, never seen in training) to measure robustness to paraphrase.
"""
from __future__ import annotations

import numpy as np

# --- the subject of the sentence
SUBJECTS = {
    "train": {"man": ["this man", "the man", "this guy", "the person"],
              "woman": ["this woman", "the woman", "this lady", "the person"]},
    "heldout": {"man": ["this gentleman", "the fellow", "this male", "the individual"],
                "woman": ["this female", "the lady pictured", "this girl", "the individual"]},
}
PRONOUN = {"man": ("he", "his"), "woman": ("she", "her")}

# --- beard level -> predicate phrases ({s} = subject)
BEARD = {
    "train": [
        ["{s} has no beard.", "{s} doesn't have any beard.", "{s} is clean-shaven.", "{s} has no beard at all."],
        ["{s} has a stubble.", "{s} has some stubble.", "{s} has a bit of stubble on the face.", "there is stubble on his face."],
        ["{s} has a short beard.", "{s} has beard of short length.", "{s} has a beard that is short.", "his beard is short."],
        ["{s} has beard of medium length.", "{s} has a medium beard.", "{s} has a medium-length beard.", "his beard is of medium length."],
        ["{s} has a long beard.", "{s} has beard of long length.", "{s} has a very long beard.", "his beard is long."],
    ],
    "heldout": [
        ["{s} sports no facial hair.", "{s} shaves completely.", "{s} wears no whiskers whatsoever."],
        ["{s} shows a five o'clock shadow.", "{s} sports light bristles on the chin.", "{s} is lightly unshaven."],
        ["{s} sports a neatly trimmed beard.", "{s} wears a closely cropped beard.", "{s} keeps a brief beard."],
        ["{s} sports a moderate beard.", "{s} wears a beard of moderate size.", "{s} keeps a mid-length beard."],
        ["{s} sports a flowing beard.", "{s} wears a lengthy beard.", "{s} keeps a big bushy beard."],
    ],
}
# --- age level -> phrases ({p} = opener: pronoun or subject, {r} = pronoun, {q} = possessive)
AGE = {
    "train": [
        ["{p} is a teenager.", "{p} is in {q} teens.", "{p} is a teen.", "{p} looks like a teenager."],
        ["{p} is in {q} twenties.", "{p} is in {q} 20s.", "{p} is a young adult in {q} twenties.", "{p} looks twenty-something."],
        ["{p} is in {q} thirties.", "{p} is in {q} 30s.", "{p} is about thirty-five.", "{p} looks like {r} is in {q} thirties."],
        ["{p} is in {q} forties.", "{p} is in {q} 40s.", "{p} is middle-aged, in {q} forties.", "{p} looks about forty-five."],
        ["{p} is in {q} fifties.", "{p} is in {q} 50s.", "{p} is about fifty-five.", "{p} looks like {r} is in {q} fifties."],
        ["{p} is elderly.", "{p} is in {q} sixties.", "{p} is an old person.", "{p} looks very old."],
    ],
    "heldout": [
        ["{p} appears to be an adolescent.", "{p} has not yet reached adulthood.", "{p} seems roughly sixteen."],
        ["{p} seems roughly twenty-five.", "{p} is a youthful adult.", "{p} appears to be around twenty-four."],
        ["{p} appears to be around thirty-three.", "{p} seems a little past thirty.", "{p} is an adult of around thirty-seven."],
        ["{p} appears to be around forty-two.", "{p} seems a little past forty.", "{p} has reached mid-life."],
        ["{p} appears to be around fifty-two.", "{p} seems a little past fifty.", "{p} is approaching retirement."],
        ["{p} appears to be a senior citizen.", "{p} is of advanced age.", "{p} seems well past seventy."],
    ],
}
SPLITS = ("train", "heldout")


def make_caption(attrs, rng: np.random.Generator, split: str = "train") -> str:
    """A caption for `attrs` (gender, age, beard) with phrasings of `split`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    subject = str(rng.choice(SUBJECTS[split][attrs.gender]))
    pron, poss = PRONOUN[attrs.gender]
    parts = []
    if attrs.gender == "man":
        beard = str(rng.choice(BEARD[split][attrs.beard])).format(s=subject)
        parts.append(beard)
        age = str(rng.choice(AGE[split][attrs.age])).format(p=pron, r=pron, q=poss)
    else:
        # women: CelebA-Dialog says nothing of a beard; the subject starts the age sentence
        age = str(rng.choice(AGE[split][attrs.age])).format(p=subject, r=pron, q=poss)
    parts.append(age)
    order = parts if rng.random() < 0.8 or len(parts) == 1 else parts[::-1]
    if order is not parts:  # the pronoun cannot open the text: name the subject instead
        order = [order[0].replace(f"{pron} ", f"{subject} ", 1), order[1]]
    return " ".join(p[0].upper() + p[1:] for p in order)


def caption_attributes(attrs) -> dict[str, int | str]:
    """What a caption of `attrs` states: the targets a text-following model should hit."""
    return {"gender": attrs.gender, "age": int(attrs.age), "beard": int(attrs.beard)}


def templates(split: str) -> set[str]:
    """Every sentence template of a split (for disjointness checks)."""
    out = set()
    for level in BEARD[split]:
        out.update(level)
    for level in AGE[split]:
        out.update(level)
    return out
