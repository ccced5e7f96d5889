"""The temperature: `ent_coef` parsed once into a TemperatureSpec, and the Temperature that holds and updates it."""

import math

import numpy as np
import pytest
import torch as th

from sb3_softq import SoftQ, SoftQLambda
from sb3_softq.common.temperature import Temperature, TemperatureSpec

ALGOS = [SoftQ, SoftQLambda]
FAST = dict(learning_starts=50, buffer_size=1_000, batch_size=16, target_update_interval=50, policy_kwargs=dict(net_arch=[16]))
# Not representable in float32 (tau or log tau infinite, or tau rounding to 0), or not a temperature at all
BAD_ENT_COEFS = [0.0, -1.0, math.nan, math.inf, 1e-60, 1e40, "auto_1e-60", "auto_1e40", "automatic", "auto_", "auto_-1"]
BAD_ENT_COEFS += ["auto_nan", "auto_inf", True, None, [0.1]]


@pytest.mark.parametrize(
    "ent_coef, initial, learned",
    [
        (0.5, 0.5, False),
        (2, 2.0, False),
        (np.float32(0.25), 0.25, False),
        (1e-30, 1e-30, False),
        (1e30, 1e30, False),
        ("auto", 1.0, True),
        ("auto_0.1", 0.1, True),
        ("auto_1e-20", 1e-20, True),
    ],
)
def test_parse(ent_coef, initial: float, learned: bool) -> None:
    spec = TemperatureSpec.parse(ent_coef)
    assert spec == TemperatureSpec(initial, learned) and isinstance(spec.initial, float)
    temperature = Temperature(spec, learning_rate=1e-3)
    value = temperature.value.item()
    assert math.isfinite(value) and value > 0 and value == pytest.approx(initial, rel=1e-6)


@pytest.mark.parametrize("ent_coef", BAD_ENT_COEFS)
def test_parse_refuses(ent_coef) -> None:
    with pytest.raises(ValueError, match="ent_coef"):
        TemperatureSpec.parse(ent_coef)


@pytest.mark.parametrize("model_class", ALGOS)
@pytest.mark.parametrize("ent_coef", [1e-60, 1e40, "auto_1e-60", "auto_1e40"])
def test_models_refuse_temperatures_float32_cannot_hold(model_class: type[SoftQ], ent_coef) -> None:
    with pytest.raises(ValueError, match="ent_coef"):
        model_class("MlpPolicy", "CartPole-v1", ent_coef=ent_coef, **FAST)


@pytest.mark.parametrize("model_class", ALGOS)
@pytest.mark.parametrize("learning_rate", [math.inf, math.nan, -1e-3, "0.1"])
def test_models_refuse_bad_learning_rates(model_class: type[SoftQ], learning_rate) -> None:
    with pytest.raises(ValueError, match="learning_rate"):
        model_class("MlpPolicy", "CartPole-v1", learning_rate=learning_rate, **FAST)


def test_update_is_the_gradient_step_of_the_entropy_loss() -> None:
    """`update(gap)` sets the gradient of log(tau) * gap directly: bit for bit Adam's step after a backward pass."""
    direct = Temperature(TemperatureSpec.parse("auto_0.3"), learning_rate=3e-3, optimizer_kwargs=dict(fused=True))
    backward = Temperature(TemperatureSpec.parse("auto_0.3"), learning_rate=3e-3, optimizer_kwargs=dict(fused=True))
    generator = th.Generator().manual_seed(0)
    for _ in range(20):
        gap = th.randn((), generator=generator)
        expected_loss = (backward.log_ent_coef * gap).detach()
        assert backward.optimizer is not None
        backward.optimizer.zero_grad()
        (backward.log_ent_coef * gap).backward()
        backward.optimizer.step()
        loss = direct.update(gap)
        assert th.equal(loss, expected_loss) and not loss.requires_grad
        assert th.equal(direct.log_ent_coef, backward.log_ent_coef)
    assert direct.value.item() != pytest.approx(0.3)


def test_reset_and_fixed_temperature() -> None:
    temperature = Temperature(TemperatureSpec.parse(0.2), learning_rate=1e-3)
    assert temperature.optimizer is None and not temperature.learned and not temperature.log_ent_coef.requires_grad
    with pytest.raises(ValueError, match="fixed"):
        temperature.update(th.tensor(1.0))
    parameter = temperature.log_ent_coef
    temperature.reset(TemperatureSpec.parse("auto_0.5"))
    assert temperature.learned and temperature.log_ent_coef is parameter and parameter.requires_grad
    assert temperature.optimizer is not None and temperature.optimizer.param_groups[0]["params"][0] is parameter
    assert temperature.value.item() == pytest.approx(0.5)
    temperature.update(th.tensor(1.0))
    assert temperature.value.item() < 0.5  # more random than the target: tau falls
    temperature.reset_value()
    assert temperature.value.item() == pytest.approx(0.5)
    temperature.reset(TemperatureSpec.parse(0.7))
    assert temperature.optimizer is None and not parameter.requires_grad and temperature.value.item() == pytest.approx(0.7)


@pytest.mark.parametrize("model_class", ALGOS)
def test_the_policy_holds_the_temperature(model_class: type[SoftQ]) -> None:
    """One owner: the policy's `temperature` holds the value and the optimiser that the algorithm saves."""
    model = model_class("MlpPolicy", "CartPole-v1", ent_coef="auto_0.4", seed=0, **FAST)
    temperature = model.policy.temperature
    assert model.ent_coef_optimizer is temperature.optimizer is not None
    assert "ent_coef_optimizer" in model._get_torch_save_params()[0]
    assert model.policy.ent_coef.item() == pytest.approx(0.4)
    assert all(temperature.log_ent_coef is not p for group in model.policy.optimizer.param_groups for p in group["params"])
    model.learn(150)
    assert model.policy.ent_coef.item() != pytest.approx(0.4)
    fixed = model_class("MlpPolicy", "CartPole-v1", ent_coef=0.4, **FAST)
    assert fixed.ent_coef_optimizer is None and "ent_coef_optimizer" not in fixed._get_torch_save_params()[0]
