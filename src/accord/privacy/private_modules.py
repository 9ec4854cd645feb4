"""Which modules DP-SGD can make private, and a one-line refusal for the others."""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from accord.errors import InputError


def _refusal(name: str, layer: nn.Module, why: str, instead: str) -> InputError:
    where = f"layer {name!r}" if name else "the model"
    return InputError(
        f"DP-SGD cannot make {where} ({type(layer).__name__}) private: {why}; {instead}"
    )


def check_private_module(module: nn.Module) -> None:
    """Raise :class:`InputError` (one line: the layer and what to use instead) if DP-SGD
    cannot make ``module`` private.

    Per-sample gradients need each example's loss to depend on that example and the
    parameters only, and training must change nothing but the parameters. Refused: batch
    norm (a batch statistic mixes examples; its running statistics are data-derived state
    released without noise), instance norm with running statistics, any other module with
    buffers (state that the forward pass may update from the data), sparse embeddings,
    nn.RNN, nn.GRU and the RNN cells (``vmap`` cannot batch them), and parameters shared
    between layers (tied weights). Linear, Conv1d/2d/3d, GroupNorm, LayerNorm, Embedding,
    LSTM, multi-head attention, activations, pooling, Flatten, Dropout and user modules
    made of them pass.
    """
    for name, layer in module.named_modules():
        if isinstance(layer, _BatchNorm):
            raise _refusal(
                name, layer, "batch norm mixes the examples of a batch and keeps running "
                "statistics of the data", "use GroupNorm or LayerNorm instead",
            )  # fmt: skip
        if isinstance(layer, _InstanceNorm) and layer.track_running_stats:
            raise _refusal(
                name, layer, "it keeps running statistics of the data",
                "set track_running_stats=False or use GroupNorm",
            )  # fmt: skip
        buffers = [b for b, _ in layer.named_buffers(recurse=False)]
        if buffers:
            raise _refusal(
                name, layer, f"it has buffers ({', '.join(buffers)}) that training may "
                "update from the data", "hold constants as frozen parameters "
                "(requires_grad=False) or plain tensor attributes",
            )  # fmt: skip
        if isinstance(layer, nn.RNN | nn.GRU | nn.RNNCellBase):
            raise _refusal(
                name, layer, "torch.func cannot compute its per-sample gradients",
                "use nn.LSTM instead",
            )  # fmt: skip
        if isinstance(layer, nn.Embedding | nn.EmbeddingBag) and layer.sparse:
            raise _refusal(
                name, layer, "sparse gradients cannot be clipped per example",
                "use sparse=False",
            )  # fmt: skip
    seen: dict[int, str] = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        first = seen.setdefault(id(param), name)
        if first != name:
            raise InputError(
                f"DP-SGD cannot make the model private: parameters {first!r} and {name!r} are "
                "the same tensor (tied weights); give each layer its own parameter"
            )
