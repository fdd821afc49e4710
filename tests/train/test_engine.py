"""Engine flags: validation, optional loggers, and the evaluator trainer on the engine."""
import sys

import pytest

from collab.train.engine import EngineConfig, EngineError, make_logger


def test_bad_flags_name_the_flag_and_the_choices():
    with pytest.raises(EngineError, match="--precision '64' is not one of 32, bf16-mixed, 16-mixed"):
        EngineConfig(precision="64")
    with pytest.raises(EngineError, match="--strategy 'deepspeed' is not one of auto, ddp, fsdp"):
        EngineConfig(strategy="deepspeed")
    with pytest.raises(EngineError, match="--accumulate must be at least 1, got 0"):
        EngineConfig(accumulate=0)


def test_fsdp_on_a_cpu_is_refused_with_the_reason():
    from collab.train.engine import Engine

    with pytest.raises(EngineError, match="--strategy fsdp runs on CUDA GPUs only"):
        Engine(EngineConfig(accelerator="cpu", strategy="fsdp"))


def test_optional_loggers_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(EngineError, match="pip install wandb"):
        make_logger("wandb", tmp_path)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(EngineError, match="pip install tensorboard"):
        make_logger("tensorboard", tmp_path)
    assert make_logger("none", tmp_path) is None


def test_tensorboard_logger_writes_events(tmp_path):
    pytest.importorskip("tensorboard")
    from collab.train.engine import Engine

    eng = Engine(EngineConfig(accelerator="cpu", logger="tensorboard"), tmp_path)
    eng.log({"s/loss": 1.0}, step=1)
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*"))


def test_the_evaluator_trains_on_the_engine_and_resumes(tmp_path):
    import json

    from collab.train.evaluator import train

    metrics = train(tmp_path, steps=2, size=32, batch=2, lr=1e-3, seed=0, vae_model=None, log_every=1)
    assert 0.0 <= metrics["miou"] <= 1.0 and (tmp_path / "evaluator.ckpt").exists()
    log = [json.loads(x) for x in (tmp_path / "evaluator.loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    train(tmp_path, steps=3, size=32, batch=2, lr=1e-3, seed=0, vae_model=None, log_every=1)  # one more step
    log = [json.loads(x) for x in (tmp_path / "evaluator.loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
