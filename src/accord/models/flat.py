"""One flat parameter vector behind a model's parameters.

Local training, aggregation and (in later issues) clipping, masking and encryption all
work on a model as one vector. Instead of copying parameters in and out of a vector at
every step, :class:`FlatModel` makes every parameter, and every gradient, a view into one
contiguous buffer: loading the global model is one ``copy_``, an SGD step one ``add_``,
and an update one subtraction. The user's module is wrapped, not replaced.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from accord.errors import InputError


class FlatModel:
    """A module whose parameters and gradients live in two flat float32 buffers."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise InputError("the model has no trainable parameters")
        self.names = [n for n, p in module.named_parameters() if p.requires_grad]
        self.shapes = [tuple(p.shape) for p in params]
        total = sum(p.numel() for p in params)
        self.flat = torch.empty(total, dtype=torch.float32)
        self.grad = torch.zeros(total, dtype=torch.float32)
        offset = 0
        with torch.no_grad():
            for p in params:
                n = p.numel()
                self.flat[offset : offset + n].copy_(p.detach().reshape(-1))
                p.data = self.flat[offset : offset + n].view_as(p)
                # A defined .grad makes autograd accumulate in place, into our buffer.
                p.grad = self.grad[offset : offset + n].view_as(p)
                offset += n
        self._params = params

    @property
    def size(self) -> int:
        return int(self.flat.numel())

    def load(self, vector: torch.Tensor) -> None:
        """Set every parameter from a flat vector (one copy). A vector of another shape or
        kind (a request from a peer that does not match this model) is an InputError."""
        if not isinstance(vector, torch.Tensor) or vector.shape != self.flat.shape:
            shape = tuple(vector.shape) if isinstance(vector, torch.Tensor) else type(vector)
            raise InputError(
                f"the model vector has shape {shape}; this model has {self.size} parameters"
            )
        if not vector.dtype.is_floating_point:
            raise InputError(f"the model vector is {vector.dtype}, not floating point")
        self.flat.copy_(vector)

    def zero_grad(self) -> None:
        self.grad.zero_()

    def grads_are_views(self) -> bool:
        """True while every parameter's gradient still lives in the flat buffer.

        A user's training code may replace ``p.grad`` (``zero_grad(set_to_none=True)``);
        :meth:`restore_grad_views` puts the views back.
        """
        base = self.grad.data_ptr()
        end = base + self.grad.numel() * self.grad.element_size()
        return all(p.grad is not None and base <= p.grad.data_ptr() < end for p in self._params)

    def restore_grad_views(self) -> None:
        offset = 0
        for p in self._params:
            n = p.numel()
            if p.grad is not None and p.grad.data_ptr() != self.grad[offset:].data_ptr():
                self.grad[offset : offset + n].copy_(p.grad.reshape(-1))
            p.grad = self.grad[offset : offset + n].view_as(p)
            offset += n

    def state_dict(self, vector: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Named tensors of ``vector`` (default: the current parameters), for safetensors."""
        source = self.flat if vector is None else vector
        out: dict[str, torch.Tensor] = {}
        offset = 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            n = int(torch.Size(shape).numel())
            out[name] = source[offset : offset + n].reshape(shape).clone()
            offset += n
        return out

    def vector_from_state_dict(
        self, state: Mapping[str, torch.Tensor], source: str
    ) -> torch.Tensor:
        """The flat vector of a named state dict; every name and shape must match."""
        missing = [n for n in self.names if n not in state]
        extra = [n for n in state if n not in self.names]
        if missing or extra:
            raise InputError(
                f"{source}: parameters do not match the model "
                f"(missing: {missing or 'none'}; unexpected: {extra or 'none'})"
            )
        parts = []
        for name, shape in zip(self.names, self.shapes, strict=True):
            tensor = state[name]
            if tuple(tensor.shape) != shape:
                raise InputError(
                    f"{source}: parameter {name!r} has shape {tuple(tensor.shape)}, "
                    f"the model needs {shape}"
                )
            parts.append(tensor.detach().to(torch.float32).reshape(-1))
        return torch.cat(parts)
