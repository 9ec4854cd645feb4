"""Built-in models and the flat parameter view."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from accord.errors import JobFileError
from accord.models.builtin import BUILTIN_MODELS, build_builtin_model
from accord.models.flat import FlatModel


@pytest.mark.parametrize(
    ("kind", "shape"), [("logreg", (30,)), ("mlp", (64,)), ("mlp", (1, 8, 8)), ("cnn", (1, 28, 28))]
)
def test_models_give_logits_and_have_no_batch_norm(kind: str, shape: tuple[int, ...]) -> None:
    model = build_builtin_model(kind, shape, 10)
    assert model(torch.zeros(3, *shape)).shape == (3, 10)
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    assert not any(isinstance(m, norms) for m in model.modules())


def test_mlp_parameter_names_on_flat_input() -> None:
    names = [n for n, _ in build_builtin_model("mlp", (64,), 10, hidden=[64]).named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_bad_model_settings_are_input_errors() -> None:
    with pytest.raises(JobFileError, match="needs image input"):
        build_builtin_model("cnn", (30,), 2)
    with pytest.raises(JobFileError, match="not divisible"):
        build_builtin_model("cnn", (1, 28, 28), 2, channels=[10], groups=4)
    with pytest.raises(JobFileError, match="unknown model"):
        build_builtin_model("resnet", (30,), 2)
    assert BUILTIN_MODELS == ("logreg", "mlp", "cnn")


def test_flat_model_parameters_and_gradients_are_views() -> None:
    torch.manual_seed(0)
    module = build_builtin_model("cnn", (1, 28, 28), 10)
    reference = [p.detach().clone() for p in module.parameters()]
    flat = FlatModel(module)
    assert flat.size == sum(p.numel() for p in reference)
    assert torch.equal(flat.flat, torch.cat([p.reshape(-1) for p in reference]))
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    flat.zero_grad()
    torch.autograd.backward(nn.functional.cross_entropy(module(x), y))
    assert flat.grads_are_views()
    assert torch.equal(flat.grad, torch.cat([p.grad.reshape(-1) for p in module.parameters()]))
    flat.load(torch.zeros(flat.size))
    assert all(float(p.detach().abs().sum()) == 0.0 for p in module.parameters())


def test_flat_model_state_dict_round_trip_and_mismatch() -> None:
    flat = FlatModel(build_builtin_model("mlp", (4,), 3, hidden=[5]))
    state = flat.state_dict()
    assert torch.equal(flat.vector_from_state_dict(state, "x"), flat.flat)
    with pytest.raises(Exception, match="missing"):
        flat.vector_from_state_dict({"0.weight": state["0.weight"]}, "init.safetensors")
    bad = dict(state, **{"0.bias": torch.zeros(7)})
    with pytest.raises(Exception, match="shape"):
        flat.vector_from_state_dict(bad, "init.safetensors")


def test_restore_grad_views_after_user_code_drops_gradients() -> None:
    module = build_builtin_model("logreg", (4,), 2)
    flat = FlatModel(module)
    module.zero_grad(set_to_none=True)
    assert not flat.grads_are_views()
    flat.restore_grad_views()
    assert flat.grads_are_views()
