"""One set of bounds for every tab's numbers: the widgets are built from them and handlers correct
values to them (the corrected value goes back to the widget, with a note), so what runs is what the
page shows."""
from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass
from typing import Any

from collab_app.errors import UserError

MAX_TEXT_CHARS = 1000
MAX_UPLOAD_PIXELS = 4096 * 4096
MAX_FILE_SIZE = "20mb"
SEED_MAX = 2**31 - 1  # what "randomize" draws from; typed seeds may go up to 2^63 - 1
SEED_LIMIT = 2**63 - 1


@dataclass(frozen=True)
class Bound:
    name: str
    low: float
    high: float
    default: float
    step: float
    integer: bool = True

    def correct(self, value: Any) -> int | float:
        """`value` as a number inside the bounds; a value outside is moved to the nearest bound,
        with a warning that says so (the page shows it as a toast)."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserError(f"{self.name} must be a number between {self.low:g} and {self.high:g}, "
                            f"got {value!r}") from None
        if not math.isfinite(number):
            raise UserError(f"{self.name} must be a finite number between {self.low:g} and {self.high:g}")
        fixed = min(max(number, self.low), self.high)
        fixed = int(round(fixed)) if self.integer else fixed
        if fixed != number:
            why = "is not a whole number" if self.low <= number <= self.high else \
                f"is outside {self.low:g}..{self.high:g}"
            warnings.warn(f"{self.name} {number:g} {why}: using {fixed:g}")
        return fixed


STEPS = Bound("steps", 1, 200, 50, 1)
# Generate's defaults: stochastic DDIM (eta 1) at 25 steps, half the time of the evaluation's DDIM 50;
# on the demo the deterministic samplers leave blotchy textures (README, "Samplers"). Influence,
# Compare and Edit keep 50 steps.
SAMPLER = "ddim"
GENERATE_STEPS = Bound("steps", 1, 200, 25, 1)
BATCH = Bound("batch size", 1, 8, 1, 1)
ETA = Bound("eta", 0.0, 1.0, 1.0, 0.05, integer=False)
ALPHA = Bound("alpha", 0.0, 3.0, 1.0, 0.05, integer=False)  # collab.editing accepts 0..3
# Edit: the edited conditions' strength in the mix, times the model's default (0 would silence the edit)
EDIT_STRENGTH = Bound("edit strength", 0.25, 4.0, 1.0, 0.05, integer=False)


def read_seed(seed: Any, randomize: bool = False) -> int:
    """The seed to use: a fresh one when `randomize`, else the typed one as a whole number (3.7 -> 4,
    said in a warning)."""
    if randomize:
        return random.SystemRandom().randint(0, SEED_MAX)
    try:
        number = seed if isinstance(seed, int) else float(seed)  # ints stay exact up to 2^63 - 1
    except (TypeError, ValueError):
        raise UserError(f"the seed must be a whole number, got {seed!r}") from None
    if not math.isfinite(number) or not 0 <= number <= SEED_LIMIT:
        raise UserError(f"the seed must be between 0 and 2^63 - 1, got {seed!r}")
    fixed = int(round(number))
    if fixed != number:
        warnings.warn(f"the seed {number:g} is not a whole number: using {fixed}")
    return fixed
