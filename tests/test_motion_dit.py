"""MotionDiT, the network alone: shapes, determinism, loss at init, gradient reach, overfitting, nulls,
batch independence."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vasa.motion.config import PRESETS, MotionConfig
from vasa.motion.diffusion import cosine_schedule, diffusion_loss
from vasa.motion.dit import Conditions, Dropped, MotionDiT

TINY = PRESETS["tiny"]


def make_conditions(config: MotionConfig, batch_size: int, seed: int = 0) -> Conditions:
    g = torch.Generator().manual_seed(seed)
    W, K, M, A = config.window_frames, config.context_frames, config.motion_dim, config.audio_dim
    return Conditions(
        audio=torch.randn(batch_size, W, A, generator=g),
        context_motion=torch.randn(batch_size, K, M, generator=g),
        context_audio=torch.randn(batch_size, K, A, generator=g), gaze=torch.randn(batch_size, 2, generator=g),
        distance=torch.rand(batch_size, generator=g) + 0.5,
        emotion=torch.rand(batch_size, config.emotions, generator=g),
    )


def randomized(config: MotionConfig = TINY, seed: int = 0) -> MotionDiT:
    """A model whose zero-initialised layers (adaLN gates, head) are random, as after training."""
    torch.manual_seed(seed)
    model = MotionDiT(config)
    with torch.no_grad():
        for module in [*(b.modulation[1] for b in model.blocks), model.final_modulation[1], model.head]:
            module.weight.normal_(0, 0.1)
            module.bias.normal_(0, 0.1)
    return model.eval()


def window(config: MotionConfig, batch_size: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(batch_size, config.window_frames, config.motion_dim, generator=g)
    return x_t, torch.randint(0, config.diffusion_steps, (batch_size,), generator=g)


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("config", [TINY, MotionConfig(window_frames=7, context_frames=5, width=24, depth=1, heads=3)],
                         ids=["tiny", "odd"])
def test_shapes_and_dtype(config, batch_size):
    model = randomized(config)
    x_t, t = window(config, batch_size)
    out = model(x_t, t, make_conditions(config, batch_size))
    assert out.shape == (batch_size, config.window_frames, config.motion_dim) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_wrong_window_length_is_a_clear_error():
    model = MotionDiT(TINY)
    x_t, t = window(TINY, 2)
    with pytest.raises(ValueError, match="expected x_t"):
        model(x_t[:, :-1], t, make_conditions(TINY, 2))


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="context_frames"):
        MotionConfig(window_frames=4, context_frames=5)


def test_init_and_forward_are_deterministic_with_a_seed():
    x_t, t = window(TINY, 2)
    cond = make_conditions(TINY, 2)
    a, b = randomized(seed=3)(x_t, t, cond), randomized(seed=3)(x_t, t, cond)
    assert torch.equal(a, b)
    assert not torch.equal(a, randomized(seed=4)(x_t, t, cond))


def test_loss_at_init_is_the_targets_mean_square():
    torch.manual_seed(0)
    model = MotionDiT(TINY)  # zero head: x0_hat = 0
    x0, _ = window(TINY, 4, seed=5)
    loss = diffusion_loss(model, cosine_schedule(TINY.diffusion_steps), x0, make_conditions(TINY, 4),
                          generator=torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(x0.pow(2).mean().item(), rel=1e-6)


def mixed_drops(batch_size: int) -> Dropped:
    """Every condition kept in some rows and dropped in others, so every null embedding is used."""
    rows = torch.arange(batch_size)
    return Dropped(audio=rows % 2 == 1, context=rows % 3 == 1, gaze=rows % 2 == 0, distance=rows == 2,
                   emotion=rows == 3)


def test_gradient_reaches_every_parameter_by_the_third_step():
    torch.manual_seed(0)
    model = MotionDiT(TINY)
    schedule = cosine_schedule(TINY.diffusion_steps)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x0, t = window(TINY, 4)
    cond = make_conditions(TINY, 4)
    for _ in range(3):
        optimizer.zero_grad()
        loss = diffusion_loss(model, schedule, x0, cond, mixed_drops(4), t=t,
                              generator=torch.Generator().manual_seed(0))
        loss.backward()
        optimizer.step()
    silent = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not silent, f"no gradient reached {silent}"


@pytest.mark.slow
def test_overfits_one_fixed_batch():
    torch.manual_seed(0)
    model = MotionDiT(TINY)
    schedule = cosine_schedule(TINY.diffusion_steps)
    x0, _ = window(TINY, 4, seed=7)
    t = torch.tensor([0, 5, 10, 15])
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(8))
    cond = make_conditions(TINY, 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(400):
        optimizer.zero_grad()
        loss = diffusion_loss(model, schedule, x0, cond, t=t, noise=noise)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.01 * losses[0], f"loss {losses[0]:.3f} -> {losses[-1]:.4f}"


def test_a_dropped_global_condition_is_its_null_embedding():
    model = randomized()
    cond = make_conditions(TINY, 3)
    t = torch.tensor([1, 2, 3])
    drop = torch.tensor([True, False, True])
    for name, null in (("gaze", model.null_gaze), ("distance", model.null_distance), ("emotion", model.null_emotion)):
        with_value = model.condition(t, cond, Dropped())
        dropped = model.condition(t, cond, Dropped(**{name: drop}))
        embed = getattr(model, f"{name}_embed")
        value = getattr(cond, name)
        value = value[:, None] if value.dim() == 1 else value
        expected = with_value - embed(value) + null  # the condition's embedding swapped for its null
        assert torch.allclose(dropped[drop], expected[drop], atol=1e-6)
        assert torch.equal(dropped[~drop], with_value[~drop])


@pytest.mark.parametrize("name", ["audio", "context", "gaze", "distance", "emotion"])
def test_a_dropped_condition_does_not_reach_the_output(name):
    model = randomized()
    x_t, t = window(TINY, 2)
    cond, other = make_conditions(TINY, 2, seed=0), make_conditions(TINY, 2, seed=9)
    fields = {"audio": ["audio"], "context": ["context_motion", "context_audio"]}.get(name, [name])
    changed = Conditions(**{**cond.__dict__, **{f: getattr(other, f) for f in fields}})
    dropped = Dropped(**{name: torch.tensor([True, True])})
    assert torch.allclose(model(x_t, t, cond, dropped), model(x_t, t, changed, dropped), atol=1e-6)
    assert not torch.allclose(model(x_t, t, cond), model(x_t, t, changed), atol=1e-4)  # kept, it matters


def test_audio_past_its_end_is_the_null_audio():
    model = randomized()
    x_t, t = window(TINY, 1)
    cond = make_conditions(TINY, 1)
    valid = (torch.arange(TINY.window_frames) < 5)[None]
    changed_tail = cond.audio.clone()
    changed_tail[:, 5:] = 7.0
    a = model(x_t, t, Conditions(**{**cond.__dict__, "audio_valid": valid}))
    b = model(x_t, t, Conditions(**{**cond.__dict__, "audio": changed_tail, "audio_valid": valid}))
    assert torch.allclose(a, b, atol=1e-6)
    tokens = model.tokens(x_t, Conditions(**{**cond.__dict__, "audio_valid": valid}), Dropped())
    expected = model.motion_in(x_t[:, 5:]) + model.null_audio + model.position[TINY.context_frames + 5:]
    assert torch.allclose(tokens[:, TINY.context_frames + 5:], expected, atol=1e-6)


def test_batch_rows_are_independent():
    model = randomized()
    x_t, t = window(TINY, 3)
    cond = make_conditions(TINY, 3)
    x_t.requires_grad_(True)
    audio = cond.audio.clone().requires_grad_(True)
    context = cond.context_motion.clone().requires_grad_(True)
    cond = Conditions(**{**cond.__dict__, "audio": audio, "context_motion": context})
    model(x_t, t, cond, mixed_drops(3))[0].sum().backward()  # row 0 keeps audio and context
    for grad in (x_t.grad, audio.grad, context.grad):
        assert grad[1:].abs().max() == 0 and grad[0].abs().max() > 0


def test_dropout_acts_in_training_only():
    config = dataclasses.replace(TINY, dropout=0.5)
    model = randomized(config)
    x_t, t = window(config, 2)
    cond = make_conditions(config, 2)
    with torch.no_grad():
        assert torch.equal(model(x_t, t, cond), model(x_t, t, cond))  # eval: deterministic
        model.train()
        assert not torch.allclose(model(x_t, t, cond), model(x_t, t, cond))
