"""The evaluation pipeline end to end at the smallest size: tiny random model, random evaluator."""
import json

import numpy as np
import pytest

from collab.eval import EvalConfig, default_methods, evaluate, held_out_pairs, main, markdown, write_outputs
from collab.eval.heldout import HELDOUT_WORLD
from collab.evaluator import AttributeClassifier, ClassifierConfig, Evaluator, FaceParser, ParserConfig
from tests.conftest import tiny_config, tiny_model


def tiny_evaluator(size: int = 16) -> Evaluator:
    ev = Evaluator(FaceParser(ParserConfig(widths=(8, 16), image_size=size)),
                   AttributeClassifier(ClassifierConfig(widths=(8, 16), image_size=size)))
    ev.parser.eval(), ev.classifier.eval()
    return ev


def test_held_out_pairs_are_deterministic_and_unseen():
    a, b = held_out_pairs(3, 32), held_out_pairs(3, 32)
    assert np.array_equal(a.images, b.images) and a.captions == b.captions
    assert a.captions != a.paraphrases  # a different phrasing of the same attributes
    train_world = held_out_pairs(3, 32, world_seed=0)
    assert not np.array_equal(a.images, train_world.images)


def test_default_methods_are_generic_over_modalities():
    names = [m.name for m in default_methods(tiny_model())]
    assert names == ["mask only", "text only", "composable", "collaborative", "w/o spatial", "w/o temporal"]
    # the app's Compare tab: the given modalities, without the ablations
    rows = default_methods(tiny_model(), ("text", "mask"), ablations=False)
    assert [(m.name, m.modalities, m.mode) for m in rows] == [
        ("text only", ("text",), "collaborative"), ("mask only", ("mask",), "collaborative"),
        ("composable", ("text", "mask"), "composable"), ("collaborative", ("text", "mask"), "collaborative")]


def test_small_evaluation_runs_and_reports_every_method(tmp_path):
    model = tiny_model()
    cfg = EvalConfig(n=4, steps=3, batch_size=2, diversity_pairs=2, diversity_samples=2, sampler_n=2)
    report, gallery = evaluate(model, tiny_evaluator(), cfg, progress=lambda s: None)
    assert list(report.rows) == [m.name for m in default_methods(model)]
    for name, row in report.rows.items():
        assert 0.0 <= row["miou"] <= 1.0 and 0.0 <= row["acc_mean"] <= 1.0 and row["diversity"] >= 0
        assert np.isfinite(row["frechet"])
        assert ("para_acc_mean" in row) == ("text" in name or name in ("composable", "collaborative") or "w/o" in name)
    # composable uses no learned weights, hence no influence statistics
    assert set(report.influence) == {"collaborative", "w/o spatial", "w/o temporal"}
    inf = report.influence["collaborative"]["modalities"]
    assert set(inf) == {"mask", "text"}
    assert np.allclose(np.array(inf["mask"]["share"]) + np.array(inf["text"]["share"]), 1.0)
    assert len(inf["mask"]["share"]) == 3
    # no_spatial: one weight per image and step, so boundaries and interiors get the same mean
    ns = report.influence["w/o spatial"]["modalities"]["mask"]
    assert abs(ns["boundary_minus_interior"]) < 0.2
    # no_temporal: every step uses the first step's weights
    nt = np.array(report.influence["w/o temporal"]["modalities"]["mask"]["share"])
    assert np.allclose(nt, nt[0])
    assert set(report.samplers) == {"DDIM 50, eta 1", "DDIM 50, eta 0", "DDIM 20, eta 0", "DDIM 25, eta 1", "DPM-Solver++ 2M 25", "DPM-Solver++ 2M 20",
                                    "DPM-Solver++ 2M 10"}
    files = write_outputs(report, gallery, tmp_path, held_out_pairs(4, 16))
    assert all(f.exists() for f in files)
    assert json.loads((tmp_path / "results.json").read_text())["rows"]["collaborative"]["miou"] == report.rows["collaborative"]["miou"]
    md = markdown(report)
    assert "| collaborative |" in md and "layout-first score" in md
    assert [r["t"] for r in report.denoising["rows"]] == [25, 100, 250, 400, 550, 700, 850, 980]
    assert "Noise-prediction error by timestep (4 held-out renders" in md


def test_cli_needs_an_evaluator(tmp_path):
    with pytest.raises(SystemExit):
        main(["--model", str(tmp_path / "nope"), "--evaluator", str(tmp_path / "none"), "--n", "1"])


def test_edit_cases_change_one_thing():
    from collab.eval import edit_cases

    cases = edit_cases(4, 64)
    assert [c.kind for c in cases].count("text") == 2 and [c.kind for c in cases].count("mask") == 2
    for c in cases:
        if c.kind == "text":
            assert "long" in c.target.lower() and (c.target_labels == c.labels).all()
        else:
            changed = c.target_labels != c.labels
            assert changed.any() and c.editable[changed].all() and not c.editable.all()
            assert np.isin(np.unique(np.concatenate([c.labels[changed], c.target_labels[changed]])),
                           [0, 1, 8, 9, 13, 14, 15, 16, 17, 18]).all()  # hair and what it covers or uncovers


def test_edit_evaluation_small(monkeypatch):
    from collab.editing import EditSettings
    from collab.eval import evaluate_edits

    model = tiny_model()
    res = evaluate_edits(model, tiny_evaluator(), n=2, steps=2, progress=lambda s: None,
                         settings=EditSettings(embed_steps=2, finetune_steps=2, trainable="attention"))
    assert set(res["summary"]) == {"text", "mask"}
    for s in res["summary"].values():
        assert s["n"] == 1 and 0 <= s["mad_outside"] <= 255 and s["seconds_per_edit"] > 0
        assert 0 <= s["alpha0_mad"] <= 255 and 0 <= s["alpha0_miou_input"] <= 1  # the reconstruction check
    assert "long_beard_rate" in res["summary"]["text"]
    assert res["strength"] == 1.0 and res["world_seed"] == HELDOUT_WORLD
    steered = evaluate_edits(model, tiny_evaluator(), n=2, steps=2, progress=lambda s: None, strength=2.0, world_seed=5,
                             settings=EditSettings(embed_steps=2, finetune_steps=2, trainable="attention"))
    assert steered["strength"] == 2.0 and steered["world_seed"] == 5
    assert steered["summary"]["text"]["alpha0_mad"] != res["summary"]["text"]["alpha0_mad"]  # other faces, other mix


def test_beyond_two_modalities_table_with_a_joint_baseline(tmp_path):
    from collab.eval import beyond_two_methods, training_hours

    model = tiny_model(tiny_config({"mask": "mask", "text": "text", "attributes": "attributes"}))
    joint = tiny_model(tiny_config({"joint": "joint"}, layout=(), diffusers=False), seed=1)
    beyond = beyond_two_methods(model, joint)
    assert [m.name for m in beyond] == [
        "attributes only", "composable (mask + attributes)", "collaborative (mask + attributes)",
        "composable (mask + text + attributes)", "collaborative (mask + text + attributes)", "joint LDM (attributes + mask)"]
    assert [m.name for m in default_methods(model)][:2] == ["mask only", "text only"]  # the paper's pair first
    seconds = {"main": {"ldm_mask": 3600.0, "ldm_text": 1800.0, "ldm_attributes": 1800.0, "diffusers": 900.0},
               "joint": {"ldm_joint": 7200.0}}
    cfg = EvalConfig(n=3, steps=2, batch_size=3, diversity_pairs=1, diversity_samples=2, sampler_study=False)
    report, _ = evaluate(model, tiny_evaluator(), cfg, progress=lambda s: None, extra_models={"joint": joint},
                         sections={"paper": default_methods(model)[:2], "beyond two modalities": beyond},
                         stage_seconds=seconds)
    rows = report.rows
    assert rows["joint LDM (attributes + mask)"]["train_hours"] == 2.0
    assert rows["collaborative (mask + attributes)"]["train_hours"] == 1.75  # both collaborators + diffusers
    assert rows["composable (mask + attributes)"]["train_hours"] == 1.5
    for row in rows.values():
        assert 0 <= row["flag_acc"] <= 1 and 0 <= row["flag_acc_unmasked"] <= 1 and 0 <= row["miou"] <= 1
    # the joint model really sampled its own conditions: same seed, different network -> different images
    assert rows["joint LDM (attributes + mask)"]["frechet"] != rows["collaborative (mask + attributes)"]["frechet"]
    md = markdown(report)
    assert "**Beyond two modalities**" in md and "| joint LDM (attributes + mask) |" in md
    assert md.index("| text only |") < md.index("**Beyond two modalities**")
    assert np.isnan(training_hours(beyond[0], model, None))


def test_only_rows_merge_into_previous_results(tmp_path):
    """`--only` runs the named rows and merges them into results.json and the sample gallery."""
    import torch

    from collab.checkpoint import save_pretrained

    model = tiny_model()
    save_pretrained(model, tmp_path / "model")
    tiny_evaluator().save(tmp_path / "ev")
    args = ["--model", str(tmp_path / "model"), "--evaluator", str(tmp_path / "ev"), "--out", str(tmp_path / "out"),
            "--n", "2", "--steps", "2", "--batch-size", "2", "--diversity-pairs", "1", "--no-sampler-study",
            "--joint", "none"]
    torch.set_num_threads(1)
    main(args)
    first = json.loads((tmp_path / "out" / "results.json").read_text())
    main(args + ["--only", "text only", "--seed", "0"])
    merged = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(merged["rows"]) == list(first["rows"]) and merged["config"]["merged_rows"] == ["text only"]
    assert merged["rows"]["mask only"] == first["rows"]["mask only"]
    assert merged["rows"]["text only"]["miou"] == first["rows"]["text only"]["miou"]  # same seed, same images
    with np.load(tmp_path / "out" / "gallery.npz") as g:
        assert set(g.files) == set(first["rows"])
    with pytest.raises(SystemExit):
        main(args + ["--only", "text only", "--steps", "3"])  # other settings: refuse to merge
    with pytest.raises(SystemExit, match="world_seed"):
        main(args + ["--only", "text only", "--world-seed", "2"])  # a validation world never merges into it
    with pytest.raises(SystemExit):
        main(args + ["--only", "no such row"])


def test_denoising_errors_explain_the_learned_weights():
    """Per-timestep MSE of each collaborator, of the learned mix, and of the best fixed weight."""
    import torch

    from collab.eval import denoising_errors, denoising_markdown

    model = tiny_model()
    data = held_out_pairs(3, model.config.image_size)
    with torch.no_grad():  # make the mask's diffuser win everywhere: its logit is +20
        for name, bias in (("mask", 20.0), ("text", 0.0)):
            out = model.diffusers[name].out[-1]
            out.weight.zero_(), out.bias.fill_(bias)
    d = denoising_errors(model, ("mask", "text"), data, 3, timesteps=(10, 500, 990))
    assert [r["t"] for r in d["rows"]] == [10, 500, 990] and d["n"] == 3
    for r in d["rows"]:
        assert r["learned weight"]["mask"] > 0.999
        assert r["learned mix"] == pytest.approx(r["mask"], rel=1e-4)
        # the grid holds 0 and 1, so the best fixed mix is never worse than either collaborator alone
        assert r["best fixed mix"] <= min(r["mask"], r["text"]) + 1e-7
    # noise is drawn per timestep from the seed: the same call gives the same numbers
    assert denoising_errors(model, ("mask", "text"), data, 3, timesteps=(10, 500, 990)) == d
    md = "\n".join(denoising_markdown(d))
    assert "| t | MSE mask only | MSE text only | MSE learned mix |" in md and md.count("\n| 500 |") == 1
