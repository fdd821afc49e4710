import json

from collab.train.report import plot_losses, stage_logs, wall_seconds


def _write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_wall_seconds_sums_resumed_segments():
    recs = [{"step": 1, "loss": 1.0, "seconds": 10.0}, {"step": 2, "loss": 0.9, "seconds": 20.0},
            {"step": 3, "loss": 0.8, "seconds": 5.0}, {"step": 4, "loss": 0.7, "seconds": 12.0}]  # resumed after step 2
    assert wall_seconds(recs) == 32.0
    assert wall_seconds(recs[:2]) == 20.0


def test_stage_logs_in_training_order_and_plot(tmp_path):
    for stage in ("diffusers", "vae", "ldm_text", "custom"):
        _write(tmp_path / f"{stage}.loss.jsonl", [{"step": i, "loss": 1 / i, "seconds": i} for i in range(1, 12)])
    logs = stage_logs(tmp_path)
    assert list(logs) == ["vae", "ldm_text", "diffusers", "custom"]
    out = plot_losses(logs, tmp_path / "loss.png")
    assert out.stat().st_size > 1000
