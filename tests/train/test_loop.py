"""The training loop on the engine: exact resume (also after a kill), the non-finite-loss guard,
accumulation, mixed precision on CPU, recipe values reaching the optimiser, and 2 DDP processes."""
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from collab.train.engine import Engine, EngineConfig
from collab.train.loop import LoopConfig, TrainingError, train

ROOT = Path(__file__).resolve().parents[2]
CFG = LoopConfig(steps=6, lr=1e-2, batch_size=4, save_every=3, log_every=1, quiet=True, ema_decay=0.9)


class Pairs(torch.utils.data.Dataset):
    """x -> sum(x), 64 fixed items: batches come from the loop's sampler, so resume must restore it."""

    def __init__(self, n: int = 64) -> None:
        self.x = torch.randn(n, 4, generator=torch.Generator().manual_seed(1))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"index": torch.tensor(i), "x": self.x[i], "y": self.x[i].sum(0, keepdim=True)}


def make(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def loss_for(net, noise: float = 0.1):
    def fn(batch, g):  # the generator matters too: a resumed run must continue its stream
        x = batch["x"] + noise * torch.randn(batch["x"].shape, generator=g)
        return ((net(x) - batch["y"]) ** 2).mean()
    return fn


def engine(**kw) -> Engine:
    return Engine(EngineConfig(accelerator="cpu", **kw))


def test_resume_equals_an_uninterrupted_run(tmp_path):
    full_net = make()
    full = train(engine(), tmp_path / "full", "s", {"net": full_net}, loss_for(full_net), Pairs(), CFG)
    part_net = make()
    train(engine(), tmp_path / "part", "s", {"net": part_net}, loss_for(part_net), Pairs(), replace(CFG, steps=3))
    resumed_net = make(seed=5)  # a fresh process would start from other weights: the checkpoint must win
    resumed = train(engine(), tmp_path / "part", "s", {"net": resumed_net}, loss_for(resumed_net), Pairs(), CFG)
    for k in full["net"]:
        assert torch.equal(full["net"][k], resumed["net"][k]), k
    assert all(torch.equal(a, b) for a, b in zip(full_net.parameters(), resumed_net.parameters()))
    lines = (tmp_path / "part" / "s.loss.jsonl").read_text().splitlines()
    assert len(lines) == 6


KILL_WORKER = r"""
import os, sys, torch
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.train.test_loop import make, loss_for, Pairs, CFG, engine
from collab.train.loop import train
run, die_at = Path(sys.argv[1]), int(sys.argv[2])
net = make(seed=int(sys.argv[3]))
fn = loss_for(net)
calls = []
def dying(batch, g):
    calls.append(1)
    if len(calls) == die_at:
        os._exit(9)  # killed mid-step: no cleanup, no checkpoint of this step
    return fn(batch, g)
out = train(engine(), run, "s", {{"net": net}}, dying, Pairs(), CFG)
torch.save({{"ema": out["net"], "live": dict(net.state_dict())}}, run / "result.pt")
"""


def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(KILL_WORKER.format(root=str(ROOT)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def launch(run, die_at, seed):
        return subprocess.run([sys.executable, str(script), str(run), str(die_at), str(seed)], env=env,
                              capture_output=True, text=True, timeout=300)

    assert launch(tmp_path / "full", 0, 0).returncode == 0
    killed = launch(tmp_path / "part", 5, 0)  # dies in step 5: the checkpoint of step 3 is the last good one
    assert killed.returncode == 9 and not (tmp_path / "part" / "result.pt").exists()
    assert torch.load(tmp_path / "part" / "s.ckpt", weights_only=True)["step"] == 3
    resumed = launch(tmp_path / "part", 0, 7)  # other initial weights: the checkpoint must win
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = (torch.load(tmp_path / r / "result.pt", weights_only=True) for r in ("full", "part"))
    for part in ("ema", "live"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part


def test_non_finite_loss_stops_and_keeps_the_last_good_state(tmp_path):
    net = make()
    train(engine(), tmp_path, "s", {"net": net}, loss_for(net), Pairs(), replace(CFG, steps=3))
    good = torch.load(tmp_path / "s.ckpt", weights_only=True)
    calls = []

    def bad(batch, g):
        calls.append(1)
        return loss_for(net)(batch, g) * (float("nan") if len(calls) == 2 else 1.0)

    with pytest.raises(TrainingError, match=r"s: non-finite loss nan at step 5 \(batch: items \d+, \d+"):
        train(engine(), tmp_path, "s", {"net": net}, bad, Pairs(), replace(CFG, save_every=100))
    kept = torch.load(tmp_path / "s.ckpt", weights_only=True)
    assert kept["step"] == good["step"] == 3
    assert all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])


def _first_step(tmp_path, name, batch, accumulate, precision="32"):
    net = make()
    cfg = LoopConfig(steps=1, lr=1e-2, batch_size=batch, accumulate=accumulate, warmup=1, grad_clip=0.0, quiet=True)
    train(engine(precision=precision), tmp_path / name, "s", {"net": net}, loss_for(net, noise=0.0), Pairs(), cfg)
    return torch.load(tmp_path / name / "s.ckpt", weights_only=True), net


def test_accumulating_n_batches_of_b_matches_one_batch_of_n_times_b(tmp_path):
    one, net1 = _first_step(tmp_path, "one", batch=8, accumulate=1)
    acc, net4 = _first_step(tmp_path, "acc", batch=2, accumulate=4)
    # after one AdamW step exp_avg = (1 - beta1) * gradient: the gradients themselves are compared
    for s1, s4 in zip(one["optimizer"]["state"].values(), acc["optimizer"]["state"].values()):
        assert torch.allclose(s1["exp_avg"], s4["exp_avg"], rtol=1e-5, atol=1e-7)
        assert s1["exp_avg"].abs().sum() > 0
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(net1.parameters(), net4.parameters()))
    # the engine flag overrides every stage's recipe value
    flag = Engine(EngineConfig(accelerator="cpu", accumulate=4))
    net = make()
    cfg = LoopConfig(steps=1, lr=1e-2, batch_size=2, warmup=1, grad_clip=0.0, quiet=True)
    train(flag, tmp_path / "flag", "s", {"net": net}, loss_for(net, noise=0.0), Pairs(), cfg)
    state = torch.load(tmp_path / "flag" / "s.ckpt", weights_only=True)
    assert state["data"] == {"epoch": 0, "position": 8}  # four micro-batches of 2 were drawn


def test_bf16_mixed_runs_a_step_on_cpu(tmp_path):
    from tests.conftest import TINY_UNET

    from collab.unet import UNetModel

    unet = UNetModel(TINY_UNET)
    seen = []

    def fn(batch, g):
        x = batch["x"].repeat(1, 48).view(-1, 3, 8, 8)
        eps = unet(x, torch.zeros(x.shape[0], dtype=torch.long), torch.zeros(x.shape[0], 2, 16))
        seen.append((torch.is_autocast_enabled("cpu"), eps.dtype))
        return (eps.float() - 1).pow(2).mean()  # (the output layer starts at zero)

    before = {k: v.clone() for k, v in unet.state_dict().items()}
    cfg = LoopConfig(steps=1, lr=1e-3, batch_size=4, warmup=1, quiet=True)
    out = train(engine(precision="bf16-mixed"), tmp_path, "s", {"unet": unet}, fn, Pairs(), cfg)
    assert seen == [(True, torch.bfloat16)]  # the forward really ran under bfloat16 autocast
    assert all(v.dtype == torch.float32 for v in out["unet"].values())  # master weights stay float32
    assert any(not torch.equal(before[k], v) for k, v in unet.state_dict().items())


def test_a_recipe_override_reaches_the_optimiser(tmp_path):
    from collab.train.recipe import load_recipe

    recipe = load_recipe("demo", ["ldm.lr=0.0123", "ldm.betas=0.5,0.9", "ldm.weight_decay=0.01", "ldm.warmup=1",
                                  "ldm.steps=1", "ldm.ema_decay=0", "ldm.batch_size=4"])
    net = make()
    train(engine(), tmp_path, "ldm_x", {"net": net}, loss_for(net), Pairs(), replace(recipe.ldm, quiet=True))
    group = torch.load(tmp_path / "ldm_x.ckpt", weights_only=True)["optimizer"]["param_groups"][0]
    assert group["lr"] == pytest.approx(0.0123) and tuple(group["betas"]) == (0.5, 0.9)
    assert group["weight_decay"] == pytest.approx(0.01)
    # scale_lr: the official rule, lr x batch per process x processes x accumulation
    scaled = replace(recipe.ldm, scale_lr=True, accumulate=2, quiet=True)
    train(engine(), tmp_path / "scaled", "s", {"net": make()}, loss_for(make()), Pairs(), scaled)
    group = torch.load(tmp_path / "scaled" / "s.ckpt", weights_only=True)["optimizer"]["param_groups"][0]
    assert group["lr"] == pytest.approx(0.0123 * 4 * 1 * 2)


DDP_WORKER = r"""
import sys, torch
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.train.test_loop import make, loss_for, Pairs, CFG
from collab.train.engine import Engine, EngineConfig
from collab.train.loop import train
eng = Engine(EngineConfig(accelerator="cpu", devices=2, strategy="ddp"))
net = make(seed=eng.rank)  # different starting weights on purpose: DDP starts every rank from rank 0's
seen = []
fn = loss_for(net)
def record(batch, g):
    seen.extend(batch["index"].tolist())
    return fn(batch, g)
out = train(eng, Path({run!r}), "s", {{"net": net}}, record, Pairs(), CFG)
torch.save({{"ema": out["net"], "live": dict(net.state_dict()), "seen": seen, "world": eng.world_size}},
           {run!r} + f"/rank{{eng.rank}}.pt")
"""


def test_two_processes_end_with_identical_weights(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER.format(root=str(ROOT), run=str(tmp_path)))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    p = subprocess.run([sys.executable, str(script)], env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True,
                       text=True, timeout=300)  # Fabric launches the second process itself (--devices 2)
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert a["world"] == b["world"] == 2
    for part in ("ema", "live"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert not set(a["seen"]) & set(b["seen"][:32])  # the ranks read different halves of each epoch
    single = make()
    alone = train(engine(), tmp_path / "single", "s", {"net": single}, loss_for(single), Pairs(), CFG)
    assert not torch.equal(alone["net"]["0.weight"], a["ema"]["0.weight"])  # 2 ranks = a batch of 8, not 4
    assert torch.load(tmp_path / "s.ckpt", weights_only=True)["step"] == 6
