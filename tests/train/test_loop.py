"""The training loop: resume equality, the non-finite-loss guard, and 2-process distributed runs."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from collab.train.loop import LoopConfig, TrainingError, train

CFG = LoopConfig(steps=6, lr=1e-2, batch_size=4, save_every=3, log_every=1, quiet=True, ema_decay=0.9)


def make(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def loss_for(net):
    def fn(g, step):
        x = torch.randn(4, 4, generator=g)
        return ((net(x) - x.sum(1, keepdim=True)) ** 2).mean()
    return fn


def test_resume_equals_an_uninterrupted_run(tmp_path):
    full_net = make()
    full = train(tmp_path / "full", "s", {"net": full_net}, loss_for(full_net), CFG)
    part_net = make()
    train(tmp_path / "part", "s", {"net": part_net}, loss_for(part_net), LoopConfig(**{**CFG.__dict__, "steps": 3}))
    resumed_net = make(seed=5)  # a fresh process would start from other weights: the state must win
    resumed = train(tmp_path / "part", "s", {"net": resumed_net}, loss_for(resumed_net), CFG)
    for k in full["net"]:
        assert torch.equal(full["net"][k], resumed["net"][k]), k
    lines = (tmp_path / "part" / "s.loss.jsonl").read_text().splitlines()
    assert len(lines) == 6


def test_non_finite_loss_stops_and_keeps_the_last_good_state(tmp_path):
    net = make()
    train(tmp_path, "s", {"net": net}, loss_for(net), LoopConfig(**{**CFG.__dict__, "steps": 3}))
    good = torch.load(tmp_path / "s.state.pt", weights_only=True)

    def bad(g, step):
        return loss_for(net)(g, step) * (float("nan") if step == 4 else 1.0)

    with pytest.raises(TrainingError, match="step 5 \\(batch: 4.png\\)"):
        train(tmp_path, "s", {"net": net}, bad, LoopConfig(**{**CFG.__dict__, "save_every": 100}),
              describe_batch=lambda: "4.png")
    kept = torch.load(tmp_path / "s.state.pt", weights_only=True)
    assert kept["step"] == good["step"] == 3
    assert all(torch.equal(kept["params"][k], good["params"][k]) for k in good["params"])


WORKER = r"""
import sys, torch
sys.path.insert(0, {root!r})
from tests.train.test_loop import make, loss_for, CFG
from collab.train.loop import train, world
rank, size = world()
net = make(seed=rank)  # different starting weights on purpose: rank 0's are broadcast
out = train(__import__("pathlib").Path({run!r}), "s", {{"net": net}}, loss_for(net), CFG)
torch.save(out["net"], {run!r} + f"/rank{{rank}}.pt")
torch.save(dict(net.named_parameters()), {run!r} + f"/live{{rank}}.pt")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_end_with_identical_weights(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(root=str(Path(__file__).resolve().parents[2]), run=str(tmp_path)))
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    a, b = (torch.load(tmp_path / f"live{r}.pt", weights_only=False) for r in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    ea, eb = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert all(torch.equal(ea[k], eb[k]) for k in ea)
    assert (tmp_path / "s.state.pt").exists()
