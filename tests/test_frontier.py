"""The layout-vs-text frontier: settings, the comparison of curves, and the run end to end (tiny)."""
import json

import numpy as np
import pytest

from collab.eval import frontier as fr
from collab.eval import EvalConfig, main
from tests.conftest import tiny_config, tiny_model
from tests.test_eval import tiny_evaluator


def _pt(curve, miou, acc, knob=1.0):
    return {"curve": curve, "miou": miou, "attr_acc": acc, "knob": knob}


def test_settings_cover_both_families_and_both_rules():
    model = tiny_model()
    st = fr.frontier_settings(model, weights=(0.1, 0.5, 0.9), strengths=(0.25, 16.0))
    curves = [s.curve for s in st]
    assert curves[:2] == ["mask only", "text only"] and curves.count("composable") == 3
    assert curves.count("collaborative (paper rule)") == 2 and curves.count("collaborative (official rule)") == 2
    comp = [s for s in st if s.mode == "composable"]
    # a fixed text weight w is the uniform mix with text strength w / (1 - w)
    for s, w in zip(comp, (0.1, 0.5, 0.9)):
        k = s.strength("text")["text"]
        assert abs(k / (1 + k) - w) < 1e-12
    assert next(s for s in st if s.rule == "official").strength("text") == {"text": 0.25}
    assert st[0].strength("text") == {}


def test_the_frontier_needs_mask_and_text():
    with pytest.raises(ValueError, match="mask and a text modality"):
        fr.frontier_settings(tiny_model(tiny_config({"mask": "mask", "sketch": "mask", "other": "mask"})))


def test_verdict_reads_above_below_and_crossing():
    comp = [_pt("composable", 0.6, 0.5), _pt("composable", 0.5, 0.6), _pt("composable", 0.4, 0.7)]
    above = comp + [_pt("collaborative (paper rule)", 0.62, 0.55), _pt("collaborative (paper rule)", 0.5, 0.68)]
    v = fr.verdict(above)["collaborative (paper rule)"]
    assert "lies above" in v and "2 of 2" in v
    below = comp + [_pt("collaborative (official rule)", 0.3, 0.6)]
    assert "lies below" in fr.verdict(below)["collaborative (official rule)"]
    assert abs(fr.gaps(below, "collaborative (official rule)")[0] - (-0.2)) < 1e-9
    cross = comp + [_pt("collaborative (paper rule)", 0.7, 0.5), _pt("collaborative (paper rule)", 0.3, 0.7)]
    assert "crosses" in fr.verdict(cross)["collaborative (paper rule)"]
    outside = comp + [_pt("collaborative (paper rule)", 0.9, 0.2)]
    assert "cannot be compared" in fr.verdict(outside)["collaborative (paper rule)"]
    # a dominated composable point does not pull the envelope down
    noisy = comp + [_pt("composable", 0.1, 0.55), _pt("collaborative (paper rule)", 0.56, 0.55)]
    assert fr.gaps(noisy, "collaborative (paper rule)")[0] == pytest.approx(0.56 - 0.55)


def test_run_frontier_small_end_to_end(tmp_path):
    import torch

    torch.set_num_threads(1)
    model = tiny_model()
    cfg = EvalConfig(n=2, steps=3, batch_size=2)
    settings = fr.frontier_settings(model, weights=(0.2, 0.8), strengths=(0.25, 16.0), rules=("paper",))
    res = fr.run_frontier(model, tiny_evaluator(), cfg, settings, progress=lambda s: None)
    assert [p["curve"] for p in res["points"]] == [s.curve for s in settings]
    for p in res["points"]:
        assert 0 <= p["miou"] <= 1 and 0 <= p["attr_acc"] <= 1 and p["seconds_per_image"] > 0
    assert res["config"]["n"] == 2 and set(res["verdict"]) == {"collaborative (paper rule)"}
    files = fr.write_frontier(res, tmp_path)
    assert all(f.exists() for f in files)
    md = (tmp_path / "frontier.md").read_text()
    assert "| composable | 0.2 |" in md and "| collaborative (paper rule) | 16 |" in md
    assert json.loads((tmp_path / "frontier.json").read_text())["points"][2]["strength"] == {"text": 0.25}


def test_eval_command_writes_the_frontier(tmp_path):
    import torch

    from collab.checkpoint import save_pretrained

    save_pretrained(tiny_model(), tmp_path / "model")
    tiny_evaluator().save(tmp_path / "ev")
    torch.set_num_threads(1)
    main(["--model", str(tmp_path / "model"), "--evaluator", str(tmp_path / "ev"), "--out", str(tmp_path / "out"),
          "--n", "2", "--steps", "2", "--batch-size", "2", "--only-frontier", "--frontier-weights", "0.5",
          "--frontier-strengths", "2"])
    res = json.loads((tmp_path / "out" / "frontier.json").read_text())
    assert [(p["curve"], p["knob"]) for p in res["points"]] == [
        ("mask only", None), ("text only", None), ("composable", 0.5), ("collaborative (paper rule)", 2.0),
        ("collaborative (official rule)", 2.0)]
    assert (tmp_path / "out" / "frontier.png").stat().st_size > 1000
    assert not (tmp_path / "out" / "results.json").exists()  # --only-frontier: no generation table
    main(["--model", str(tmp_path / "model"), "--evaluator", str(tmp_path / "ev"), "--out", str(tmp_path / "val"),
          "--n", "2", "--steps", "2", "--batch-size", "2", "--only-frontier", "--frontier-weights", "0.5",
          "--frontier-strengths", "2", "--frontier-rules", "paper", "--world-seed", "2"])
    val = json.loads((tmp_path / "val" / "frontier.json").read_text())  # a validation world, one rule
    assert [p["curve"] for p in val["points"]][-1] == "collaborative (paper rule)" and len(val["points"]) == 4
    assert "choice" not in val
    main(["--model", str(tmp_path / "model"), "--evaluator", str(tmp_path / "ev"), "--out", str(tmp_path / "val"),
          "--n", "2", "--steps", "2", "--batch-size", "2", "--only-frontier", "--frontier-weights", "0.5",
          "--frontier-strengths", "1", "2", "--frontier-rules", "paper", "--world-seed", "2", "--choose-strength"])
    val = json.loads((tmp_path / "val" / "frontier.json").read_text())
    assert val["choice"]["strength"] in (1.0, 2.0) and val["choice"]["rule"] == "paper"
    assert val["choice"] == fr.choose_strength(val["points"])  # the printed choice is the function's


def test_choosing_a_strength_is_refused_on_the_evaluations_own_conditions(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--model", "demo", "--out", str(tmp_path), "--only-frontier", "--choose-strength"])
    assert "validation conditions" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", "demo", "--out", str(tmp_path), "--world-seed", "2", "--choose-strength"])
    assert "--only-frontier" in capsys.readouterr().err


def test_choose_strength_takes_the_smallest_that_keeps_layout_and_text_else_the_best_sum():
    comp = _pt("composable", 0.60, 0.70, 0.5)
    curve = "collaborative (paper rule)"
    pts = [comp, _pt("composable", 0.4, 0.8, 0.9), _pt(curve, 0.66, 0.60, 1.0), _pt(curve, 0.64, 0.69, 2.0),
           _pt(curve, 0.635, 0.71, 4.0), _pt(curve, 0.55, 0.75, 8.0)]
    ch = fr.choose_strength(pts)
    assert ch["strength"] == 2.0 and ch["chosen"]["miou"] == 0.64 and "smallest" in ch["why"]
    # stricter slack: 2 falls out (0.69 < 0.70), 4 meets both
    assert fr.choose_strength(pts, attr_slack=0.0)["strength"] == 4.0
    # none gains 0.03 mIoU with the text kept: the best sum (1: 1.26, 2: 1.33, 4: 1.345, 8: 1.30)
    ch = fr.choose_strength(pts, miou_gain=0.1)
    assert ch["strength"] == 4.0 and "no strength" in ch["why"]
    # ties in the sum go to the smaller strength
    tie = [comp, _pt(curve, 0.6, 0.7, 1.0), _pt(curve, 0.7, 0.6, 2.0)]
    assert fr.choose_strength(tie, miou_gain=0.5)["strength"] == 1.0
    with pytest.raises(ValueError, match="text weight 0.5"):
        fr.choose_strength([_pt(curve, 0.6, 0.7, 1.0)])
