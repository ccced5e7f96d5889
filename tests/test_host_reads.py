"""
One ``train()`` call reads tensors back to the host at most once (all its logged values, stacked), so that on a GPU
the gradient steps are queued without waiting for the device.

Every way of reading a tensor's values from Python is counted by wrapping the ``th.Tensor`` methods below.
"""

import io
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch as th
from stable_baselines3.common.envs import IdentityEnv
from stable_baselines3.common.logger import HumanOutputFormat, Logger

from sb3_softq import SoftQ, SoftQLambda
from sb3_softq.common.traces import TRACES

READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "__format__", "__repr__")
FAST = dict(learning_starts=50, buffer_size=1_000, batch_size=16, target_update_interval=50, policy_kwargs=dict(net_arch=[16]))


@contextmanager
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """:return: a list that gets the name of every read method called (from any code) inside the block"""
    reads: list[str] = []
    with monkeypatch.context() as patch:
        for name in READS:
            original = getattr(th.Tensor, name)

            def counted(self, *args, _original=original, _name=name, **kwargs):
                reads.append(_name)
                return _original(self, *args, **kwargs)

            patch.setattr(th.Tensor, name, counted)
        yield reads


def test_every_read_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    tensor = th.tensor([1.5])
    with counted_reads(monkeypatch) as reads:
        tensor.item(), tensor.tolist(), tensor.numpy(), tensor.cpu(), float(tensor), int(tensor), bool(tensor)
        f"{tensor[0]}", repr(tensor), [0, 1][th.tensor(1)]
    assert set(reads) >= set(READS)
    assert tensor.item() == 1.5  # restored


def one_train_call_reads(model: SoftQ, monkeypatch: pytest.MonkeyPatch, gradient_steps: int = 3) -> list[str]:
    # A logger that writes somewhere, so that train() computes every statistic it logs
    model.set_logger(Logger(folder=None, output_formats=[HumanOutputFormat(io.StringIO())]))
    model.learn(200)
    before = model._n_updates
    with counted_reads(monkeypatch) as reads:
        model.train(gradient_steps=gradient_steps, batch_size=model.batch_size)
    assert model._n_updates == before + gradient_steps
    return reads


@pytest.mark.parametrize("ent_coef", [0.3, "auto"])
@pytest.mark.parametrize("n_critics", [1, 2])
@pytest.mark.parametrize("reference_policy", [None, [0.1, 0.2, 0.3, 0.2, 0.2]])
def test_softq_train_reads_once(monkeypatch: pytest.MonkeyPatch, ent_coef, n_critics: int, reference_policy) -> None:
    model = SoftQ(
        "MlpPolicy", IdentityEnv(5), ent_coef=ent_coef, n_critics=n_critics, reference_policy=reference_policy, seed=0, **FAST
    )
    assert one_train_call_reads(model, monkeypatch) == ["tolist"]
    assert {"train/loss", "train/entropy", "train/q_mean"} <= set(model.logger.name_to_value)
    assert ("train/ent_coef_loss" in model.logger.name_to_value) == (ent_coef == "auto")


@pytest.mark.parametrize("ent_coef", [0.3, "auto"])
@pytest.mark.parametrize("n_critics", [1, 2])
@pytest.mark.parametrize("trace", TRACES)
def test_softq_lambda_train_reads_once(monkeypatch: pytest.MonkeyPatch, ent_coef, n_critics: int, trace: str) -> None:
    model = SoftQLambda(
        "MlpPolicy", IdentityEnv(5), ent_coef=ent_coef, n_critics=n_critics, trace=trace, sequence_length=4, seed=0, **FAST
    )
    reads = one_train_call_reads(model, monkeypatch)
    assert reads == ["tolist"]
    assert {"train/loss", "train/mean_trace_coef", "train/effective_trace_length"} <= set(model.logger.name_to_value)


@pytest.mark.parametrize("model_class", [SoftQ, SoftQLambda])
def test_the_single_read_gives_the_logged_values(model_class: type[SoftQ]) -> None:
    """`_record_train_stats` records the `train/` keys as Python floats and hands back the checks."""
    model = model_class("MlpPolicy", IdentityEnv(5), seed=0, **FAST)
    model.learn(100)
    values = model._record_train_stats({"train/a": th.tensor(0.25), "train/b": 2.0, "flag": th.tensor(True)})
    assert values == {"train/a": 0.25, "train/b": 2.0, "flag": 1.0}
    assert model.logger.name_to_value["train/a"] == 0.25 and "flag" not in model.logger.name_to_value
    assert model._record_train_stats({}) == {}
    assert model._record_train_stats({"train/c": 0.5}) == {"train/c": 0.5}


@pytest.mark.parametrize("model_class", [SoftQ, SoftQLambda])
def test_no_statistics_without_a_log_to_write(monkeypatch: pytest.MonkeyPatch, model_class: type[SoftQ]) -> None:
    """SB3's logger writes nothing at verbose=0: train() then computes only the loss (which it checks for NaN)."""
    model = model_class("MlpPolicy", IdentityEnv(5), seed=0, verbose=0, **FAST)
    model.learn(200)
    assert not model.logger.output_formats
    with counted_reads(monkeypatch) as reads:
        model.train(gradient_steps=2, batch_size=model.batch_size)
    assert reads == ["tolist"]
    assert "train/loss" in model.logger.name_to_value and "train/entropy" not in model.logger.name_to_value
