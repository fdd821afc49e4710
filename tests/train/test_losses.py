import torch

from collab.schedule import DiffusionSchedule
from collab.train.losses import diffuser_loss, ldm_loss, p2_weight, vae_loss
from collab.vae import AutoencoderKL
from tests.conftest import TINY_VAE, tiny_model

SCHED = DiffusionSchedule.linear()


def test_p2_weight():
    t = torch.tensor([0, 500, 999])
    assert torch.equal(p2_weight(SCHED, t, 0.0), torch.ones(3))
    w = p2_weight(SCHED, t, 1.0)
    assert w[0] < w[1] < w[2] <= 1.0  # noisy steps (low SNR) weigh more


def test_losses_are_finite_and_only_diffusers_get_gradients():
    model = tiny_model()
    model.requires_grad_(False)
    for d in model.diffusers.values():
        d.requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    ctx = {"mask": model.encoders["mask"](torch.nn.functional.one_hot(torch.zeros(2, 1024, dtype=torch.long), 19)
                                           .transpose(1, 2).float()),
           "text": model.encoders["text"](torch.tensor([[101, 2023, 102] + [0] * 74] * 2))}
    loss = diffuser_loss(model.collaborators, model.diffusers, ctx, torch.randn(2, 3, 8, 8), SCHED, g)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for d in model.diffusers.values() for p in d.parameters())
    assert all(p.grad is None for c in model.collaborators.values() for p in c.parameters())


def test_ldm_and_vae_losses_decrease_on_one_batch():
    model = tiny_model()
    unet, enc = model.collaborators["mask"].requires_grad_(True), model.encoders["mask"].requires_grad_(True)
    cond = torch.nn.functional.one_hot(torch.randint(0, 19, (4, 1024)), 19).transpose(1, 2).float()
    z0 = torch.randn(4, 3, 8, 8)
    opt = torch.optim.Adam(list(unet.parameters()) + list(enc.parameters()), lr=1e-3)

    def avg(fn, seed):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            return sum(float(fn(g)) for _ in range(8)) / 8

    ldm = lambda g: ldm_loss(unet, enc, cond, z0, SCHED, g)
    before = avg(ldm, 1)
    for i in range(40):
        loss = ldm(torch.Generator().manual_seed(100 + i))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert avg(ldm, 1) < before
    vae = AutoencoderKL(TINY_VAE)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    first = float(vae_loss(vae, x, torch.Generator().manual_seed(0))[0])
    for i in range(30):
        loss, parts = vae_loss(vae, x, torch.Generator().manual_seed(i))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first and set(parts) == {"l1", "kl"}
