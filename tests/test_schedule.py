import torch
from safetensors.torch import load_file

from collab.schedule import DiffusionSchedule, SamplingSchedule, uniform_timesteps
from tests.conftest import REFERENCE

IO = load_file(REFERENCE / "compose_tiny_io.safetensors")


def test_linear_schedule_matches_official_buffers():
    buffers = DiffusionSchedule.linear().official_buffers()
    assert torch.equal(buffers["betas"], IO["betas"])
    assert torch.equal(buffers["alphas_cumprod"], IO["alphas_cumprod"])
    weights = load_file(REFERENCE / "compose_tiny_weights.safetensors")
    for k, v in buffers.items():
        assert torch.allclose(v, weights[k].float(), rtol=1e-6, atol=1e-7), k


def test_uniform_timesteps_like_the_official_ddim():
    assert uniform_timesteps(50)[:3] == [981, 961, 941] and uniform_timesteps(50)[-1] == 1
    assert uniform_timesteps(5) == [801, 601, 401, 201, 1]
    seven = uniform_timesteps(7)  # 1000 // 7 = 142 does not divide 1000: 8 steps
    assert len(seven) == 8 and seven[0] == 995 and seven[-1] == 1
    assert uniform_timesteps(3) == [667, 334, 1]  # 1000 would be past the schedule
    assert all(max(uniform_timesteps(s)) < 1000 for s in range(1, 1001))


def test_sampling_schedule_coefficients():
    s = SamplingSchedule.uniform(DiffusionSchedule.linear(), 5)
    for key, ours in (("ddim_alphas", s.alphas), ("ddim_alphas_prev", s.alphas_prev),
                      ("ddim_sigmas", s.ddim_sigmas(1.0))):
        assert torch.allclose(ours.flip(0).float(), IO[f"official_eta1_S5/{key}"], atol=1e-7), key
    assert float(s.alphas_prev[-1]) == float(DiffusionSchedule.linear().alphas_cumprod.float()[0])  # 0.9985, not 1
    assert torch.all(s.ddim_sigmas(0.0) == 0)


def test_q_sample_and_snr():
    sched = DiffusionSchedule.linear()
    x0, noise = torch.ones(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    xt = sched.q_sample(x0, torch.tensor([0, 999]), noise)
    abar = sched.alphas_cumprod
    assert torch.allclose(xt[1], torch.full_like(xt[1], float(abar[999].sqrt())))
    snr = sched.snr(torch.tensor([0, 500, 999]))
    assert snr[0] > snr[1] > snr[2] > 0
