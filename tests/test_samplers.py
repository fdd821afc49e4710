import torch

from collab.samplers import ddim_step, invert_ddim, sample_ddim, sample_dpmpp_2m
from collab.schedule import DiffusionSchedule, SamplingSchedule

SCHED = DiffusionSchedule.linear()


def point_mass_denoiser(x0: torch.Tensor):
    """The exact eps-predictor when the data distribution is a single point x0."""
    abar = SCHED.alphas_cumprod

    def eps(x_t, t):
        a = float(abar[int(t[0])])
        return (x_t - a**0.5 * x0) / (1 - a) ** 0.5

    return eps


def test_ddim_step_formula():
    x, e = torch.randn(1, 3, 2, 2), torch.randn(1, 3, 2, 2)
    x_prev, x0 = ddim_step(x, e, 0.5, 0.8, 0.0, None)
    assert torch.allclose(x0, (x - 0.5**0.5 * e) / 0.5**0.5)
    assert torch.allclose(x_prev, 0.8**0.5 * x0 + 0.2**0.5 * e)


def test_samplers_recover_a_point_mass_exactly():
    x0 = torch.randn(1, 3, 4, 4)
    x_T = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    for steps in (5, 20):
        s = SamplingSchedule.uniform(SCHED, steps)
        a0 = float(s.alphas_prev[-1])
        target_mean = a0**0.5 * x0  # the last step lands on alpha_bar[0], not on 1
        ddim = sample_ddim(point_mass_denoiser(x0), x_T, s, eta=0.0)
        dpm = sample_dpmpp_2m(point_mass_denoiser(x0), x_T, s)
        # deterministic samplers keep the start code's noise direction scaled by sqrt(1 - a0)
        assert torch.allclose(ddim, target_mean + (1 - a0) ** 0.5 * (x_T - (float(s.alphas[0])) ** 0.5 * x0)
                              / (1 - float(s.alphas[0])) ** 0.5, atol=1e-4)
        assert torch.allclose(dpm, ddim, atol=1e-3)


def test_ancestral_ddim_uses_the_noise_function_and_callback():
    x0 = torch.zeros(1, 3, 4, 4)
    s = SamplingSchedule.uniform(SCHED, 5)
    calls, steps = [], []
    noise = lambda k, like: (calls.append(k), torch.zeros_like(like))[1]
    sample_ddim(point_mass_denoiser(x0), torch.randn(1, 3, 4, 4), s, eta=1.0, noise=noise, callback=steps.append)
    assert calls == [0, 1, 2, 3, 4]  # sigma > 0 at every step when eta = 1
    assert [st.t for st in steps] == [801, 601, 401, 201, 1]
    assert all(st.x_prev.shape == (1, 3, 4, 4) for st in steps)


def test_seeded_noise_is_reproducible():
    from collab.samplers import gaussian_noise

    s = SamplingSchedule.uniform(SCHED, 10)
    den = point_mass_denoiser(torch.ones(1, 3, 4, 4))
    x_T = torch.randn(1, 3, 4, 4)
    a = sample_ddim(den, x_T, s, 1.0, gaussian_noise(torch.Generator().manual_seed(7)))
    b = sample_ddim(den, x_T, s, 1.0, gaussian_noise(torch.Generator().manual_seed(7)))
    c = sample_ddim(den, x_T, s, 1.0, gaussian_noise(torch.Generator().manual_seed(8)))
    assert torch.equal(a, b) and not torch.equal(a, c)


def gaussian_denoiser(std: float):
    """The exact eps-predictor when the data are N(0, std^2 I): E[eps | x_t] is linear in x_t."""
    abar = SCHED.alphas_cumprod

    def eps(x_t, t):
        a = float(abar[int(t[0])])
        return (1 - a) ** 0.5 / (a * std**2 + 1 - a) * x_t

    return eps


def test_ddim_inversion_round_trips_and_improves_with_steps():
    z0 = 0.7 * torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    den = gaussian_denoiser(0.7)
    errors = []
    for steps in (10, 100):
        s = SamplingSchedule.uniform(SCHED, steps)
        x_T = invert_ddim(den, z0, s)
        assert x_T.std() > 0.8  # a noise-like start code, not z0
        errors.append(float((sample_ddim(den, x_T, s, eta=0.0) - z0).abs().max()))
    assert errors[1] < errors[0] / 10 and errors[1] < 0.05, errors  # first-order: the error falls with the step
