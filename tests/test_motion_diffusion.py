"""The diffusion process as free functions: schedule, forward process, samplers, guidance, dropout."""

from __future__ import annotations

import pytest
import torch

from test_motion_dit import TINY, make_conditions, randomized, window
from vasa.latents import POSE_DIM
from vasa.motion.diffusion import (
    Guidance, cfg_mix, cosine_schedule, drop_conditions, guided_denoiser, q_sample, sample_ancestral, sample_ddim,
    truncate_audio,
)
from vasa.motion.dit import Dropped


def test_cosine_schedule_goes_from_signal_to_noise():
    abar = cosine_schedule(50).alphas_cumprod
    assert abar.shape == (50,) and (abar[1:] < abar[:-1]).all()
    assert abar[0] > 0.99 and abar[-1] < 1e-3


def test_q_sample_uses_injected_noise():
    schedule = cosine_schedule(50)
    x0, noise = torch.randn(2, 8, 46), torch.randn(2, 8, 46)
    t = torch.tensor([0, 49])
    x_t = q_sample(schedule, x0, t, noise)
    abar = schedule.alphas_cumprod[t].float()[:, None, None]
    assert torch.allclose(x_t, abar.sqrt() * x0 + (1 - abar).sqrt() * noise)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(q_sample(schedule, x0, t, generator=g()), q_sample(schedule, x0, t, generator=g()))


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_samplers_return_what_a_perfect_denoiser_knows(sampler):
    """A denoiser that always answers x0 makes both samplers land exactly on x0."""
    schedule = cosine_schedule(20)
    x0 = torch.randn(2, 8, 46)
    noise = torch.randn(2, 8, 46)
    oracle = lambda x_t, t: x0  # noqa: E731
    if sampler == "ancestral":
        out = sample_ancestral(oracle, schedule, noise, torch.Generator().manual_seed(0))
    else:
        out = sample_ddim(oracle, schedule, noise, steps=5)
    assert torch.allclose(out, x0)


def test_samplers_visit_the_expected_timesteps():
    schedule = cosine_schedule(20)
    seen = []

    def record(x_t, t):
        seen.append(int(t[0]))
        return torch.zeros_like(x_t)

    sample_ancestral(record, schedule, torch.zeros(1, 4, 46), torch.Generator().manual_seed(0))
    assert seen == list(range(19, -1, -1))
    seen.clear()
    sample_ddim(record, schedule, torch.zeros(1, 4, 46), steps=4)
    assert seen[0] == 19 and seen[-1] == 0 and len(seen) == 4


def test_ancestral_sampling_is_seeded():
    schedule = cosine_schedule(TINY.diffusion_steps)
    model = randomized()
    cond = make_conditions(TINY, 1)
    denoise = guided_denoiser(model, cond)
    noise, _ = window(TINY, 1)
    a = sample_ancestral(denoise, schedule, noise, torch.Generator().manual_seed(1))
    b = sample_ancestral(denoise, schedule, noise, torch.Generator().manual_seed(1))
    c = sample_ancestral(denoise, schedule, noise, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_guidance_with_all_scales_zero_is_the_conditional_prediction():
    model = randomized()
    cond = make_conditions(TINY, 2)
    x_t, t = window(TINY, 2)
    guided = guided_denoiser(model, cond, Dropped(), Guidance(audio=0.0, gaze=0.0))(x_t, t)
    assert torch.equal(guided, model(x_t, t, cond, Dropped()))


def test_batched_guidance_equals_eq2_from_separate_passes():
    model = randomized()
    cond = make_conditions(TINY, 2)
    x_t, t = window(TINY, 2)
    base = Dropped(context=torch.tensor([True, False]))
    everyone = torch.ones(2, dtype=torch.bool)
    all_ = model(x_t, t, cond, base)
    no_audio = model(x_t, t, cond, base.with_(audio=everyone))
    no_gaze = model(x_t, t, cond, base.with_(gaze=everyone))
    expected = all_ + 0.5 * (all_ - no_audio) + 1.0 * (all_ - no_gaze)  # Eq. 2
    guided = guided_denoiser(model, cond, base, Guidance(audio=0.5, gaze=1.0))(x_t, t)
    assert torch.allclose(guided, expected, atol=1e-5)
    assert torch.allclose(cfg_mix(all_, no_audio, no_gaze, Guidance()), expected, atol=1e-6)
    # the head pose may take its own audio scale: the pose channels move, the face's stay
    split = cfg_mix(all_, no_audio, no_gaze, Guidance(audio=0.5, gaze=1.0, audio_pose=2.0))
    pose_expected = all_ + 2.0 * (all_ - no_audio) + 1.0 * (all_ - no_gaze)
    assert torch.allclose(split[..., :POSE_DIM], pose_expected[..., :POSE_DIM], atol=1e-6)
    assert torch.allclose(split[..., POSE_DIM:], expected[..., POSE_DIM:], atol=1e-6)
    assert not torch.allclose(split[..., :POSE_DIM], expected[..., :POSE_DIM], atol=1e-4)
    # with the face's audio scale at 0, the head's own still takes the "no audio" pass
    head_only = guided_denoiser(model, cond, base, Guidance(audio=0.0, gaze=0.0, audio_pose=2.0))(x_t, t)
    assert torch.allclose(head_only[..., POSE_DIM:], all_[..., POSE_DIM:], atol=1e-5)
    assert torch.allclose(head_only[..., :POSE_DIM], (all_ + 2.0 * (all_ - no_audio))[..., :POSE_DIM], atol=1e-5)


def test_guidance_skips_the_pass_of_a_condition_that_is_absent():
    calls = []

    class Spy(torch.nn.Module):
        def forward(self, x_t, t, cond, dropped):
            calls.append(x_t.shape[0])
            return torch.zeros_like(x_t)

    cond = make_conditions(TINY, 2)
    x_t, t = window(TINY, 2)
    guided_denoiser(Spy(), cond, Dropped(), Guidance())(x_t, t)
    guided_denoiser(Spy(), cond, Dropped(gaze=torch.ones(2, dtype=torch.bool)), Guidance())(x_t, t)
    guided_denoiser(Spy(), cond, Dropped(), Guidance(audio=0.0))(x_t, t)
    assert calls == [6, 4, 4]  # one forward per call: 3, 2 and 2 passes of batch 2


def test_condition_dropout_rates():
    dropped = drop_conditions(20000, torch.Generator().manual_seed(0))
    for name in ("audio", "gaze", "distance", "emotion"):
        assert getattr(dropped, name).float().mean().item() == pytest.approx(0.1, abs=0.01)
    assert dropped.context.float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_audio_truncation_keeps_a_prefix():
    valid = truncate_audio(5000, 8, torch.Generator().manual_seed(0))
    lengths = valid.sum(1)
    assert torch.equal(valid, torch.arange(8)[None] < lengths[:, None])  # a prefix, then nothing
    assert (lengths >= 1).all()
    assert (lengths < 8).float().mean().item() == pytest.approx(0.1, abs=0.015)
