"""Reproduce the paper's kind of table on the embedded face world.

    python -m collab.eval --model demo --evaluator checkpoints/evaluator --out results/eval [--n 100]

Held-out (mask, caption) pairs come from a face-world seed the demo model never saw. Every method
samples the same pairs from the same starting noise (one seed per batch), so rows differ only by
the method. Per method: mask mIoU and pixel accuracy (evaluator's parser on the sample vs the input
mask), attribute accuracy (evaluator's classifier vs the caption's attributes) with training
phrasings and with held-out paraphrases, Frechet distance to real renders in the classifier's
feature space, and diversity (mean pairwise feature distance among samples of one condition set).
Influence statistics (per region and timestep) and a sampler study come with it. Writes
results.json, results.md and PNG plots into --out.

Modules: `methods` (the rows), `heldout` (the data and its conditions), `sampling` (a method on
the data), `metrics`, `studies` (the table, the sampler study), `denoising` (the denoising study),
`frontier` (layout vs text), `edits`, `report` (markdown, plots, files), `cli` (the command line).
The names below are the package's public surface.
"""
from collab.eval.denoising import DENOISING_TIMESTEPS, denoising_errors
from collab.eval.edits import FACE_INTERIOR, EditCase, edit_cases, evaluate_edits
from collab.eval.heldout import HELDOUT_WORLD, HeldOut, conditions_for, held_out_pairs
from collab.eval.methods import Method, beyond_two_methods, default_methods, joint_method, paper_pair, training_hours
from collab.eval.metrics import attribute_metrics, chunks, diversity_of, flag_metrics, influence_summary, mask_metrics
from collab.eval.report import (BEYOND_COLUMNS, COLUMNS, SECTION_COLUMNS, EvalReport, denoising_markdown, markdown,
                                merge_reports, plot_influence, plot_samples, write_outputs)
from collab.eval.sampling import SAMPLER_STUDY, EvalConfig, SamplerSetting, Samples, sample_set
from collab.eval.studies import evaluate, sampler_study

from collab.eval.cli import main, stage_seconds_of  # noqa: E402  (last: it uses the modules above)

__all__ = [
    "BEYOND_COLUMNS", "COLUMNS", "DENOISING_TIMESTEPS", "FACE_INTERIOR", "HELDOUT_WORLD", "SAMPLER_STUDY",
    "SECTION_COLUMNS", "EditCase", "EvalConfig", "EvalReport", "HeldOut", "Method", "SamplerSetting", "Samples",
    "attribute_metrics", "beyond_two_methods", "chunks", "conditions_for", "default_methods", "denoising_errors",
    "denoising_markdown", "diversity_of", "edit_cases", "evaluate", "evaluate_edits", "flag_metrics",
    "held_out_pairs", "influence_summary", "joint_method", "main", "markdown", "mask_metrics", "merge_reports",
    "paper_pair", "plot_influence", "plot_samples", "sample_set", "sampler_study", "stage_seconds_of",
    "training_hours", "write_outputs",
]
