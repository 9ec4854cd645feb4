"""Label-recovery attacks on a model update, for tests of what an update reveals.

An *update* here is what a node releases after one local SGD step on one batch:
``delta = params_after - params_before = -lr * grad``, with ``grad`` the gradient of the
batch's mean cross-entropy. The attacks read only the last layer's part of it (a Linear
with bias, after a ReLU), so they work the same on a whole model's flat update.

Why the last layer leaks labels: for softmax cross-entropy the gradient with respect to
the logits of example b is ``p_b - onehot(y_b)``. The last layer's weight gradient is
``(1/B) sum_b (p_b - onehot(y_b)) h_b^T``, where ``h_b >= 0`` is the ReLU output that
feeds it, and its bias gradient ``(1/B) sum_b (p_b - onehot(y_b))``. Only the true class
gets a negative term, so each class's gradient row is pulled down by its examples.

* **iDLG** (Zhao, Mopuri, Bilen, "iDLG: Improved Deep Leakage from Gradients",
  arXiv:2001.02610, 2020): at batch size 1 the true label's row is the only one whose
  entries are negative (``p_y - 1 < 0``, all others ``p_i > 0``), so the label is read off
  exactly: the row with a negative sum. In the update (``-lr * grad``) it is the row with
  a positive sum, whatever the learning rate.
* **LLG** (Wainakh, Ventola, Müßig, Keim, Garcia Cordero, Zimmer, Grube, Kersting,
  Mühlhäuser, "User-Level Label Leakage from Gradients in Federated Learning", PETS 2022,
  arXiv:2105.09369): for a batch, let ``g_i`` be the sum of row i of the last layer's
  weight gradient. Property 1: a label in the batch makes its ``g_i`` negative (at an
  untrained model, nearly always). Property 2: each occurrence of a label lowers ``g_i``
  by about the same *impact* m. LLG (the variant without auxiliary data) estimates
  ``m = (sum of the negative g_i / B) * (1 + 1/n)`` for n classes, takes every label with
  a negative ``g_i`` once, subtracting m from its ``g_i`` each time, then fills the rest of
  the batch by repeatedly taking the smallest ``g_i`` (and subtracting m again). It needs
  the batch size B, which a node's job file states. This follows the authors' reference
  implementation (github.com/tklab-tud/LLG, ``Predictor.v1_prediction``).
* **LLG+ with auxiliary data** (same paper): an attacker who knows the model (the
  coordinator sent it) and holds some labelled data of the same kind estimates the
  impacts instead of guessing them. The paper's LLG+ estimates one impact and a per-class
  offset; :func:`label_impacts` estimates the whole class-conditional matrix
  ``A[i, c]`` (row-i sum of a one-example update of class c), and
  :func:`llg_plus_label_counts` then explains ``B * update ≈ A @ counts`` greedily, one
  label at a time. That refinement is ours; it also reads the labels of a sum of updates.

Under secure aggregation the coordinator sees only the sum of t parties' updates
(:func:`secure_sum`, with the fixed-point quantization that masking needs). The sum is
symmetric in the parties: nothing in it says which party holds which label, so at best it
reveals the aggregate label histogram.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Update = dict[str, torch.Tensor]
LabelCounts = Counter[int]


def one_step_update(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float) -> Update:
    """The update after one SGD step on (x, y): ``-lr * grad`` of the mean cross-entropy.

    The model itself is left unchanged (the step is taken on the gradient, not in place).
    """
    params = dict(model.named_parameters())
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(params.values()))
    return {name: -lr * g.detach() for name, g in zip(params, grads, strict=True)}


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the model has no Linear layer")
    return linears[-1]


def last_layer_weight(model: nn.Module, update: Update) -> torch.Tensor:
    """The part of ``update`` that belongs to the model's last Linear layer's weight."""
    return update[f"{_last_linear(model)[0]}.weight"]


def _class_gradient_sums(weight_update: torch.Tensor) -> torch.Tensor:
    """``g_i``: the sum of each class's row of the weight *gradient*, up to a positive scale.

    The update is ``-lr * grad``; the learning rate is positive, so ``-update`` keeps the
    signs and ratios that both attacks use. Float64 keeps the greedy steps exact enough.
    """
    return -weight_update.to(torch.float64).sum(dim=1)


def idlg_label(weight_update: torch.Tensor) -> int:
    """iDLG: the label of a batch of one, from the last layer's weight update."""
    g = _class_gradient_sums(weight_update)
    return int(torch.argmin(g))


def llg_label_counts(weight_update: torch.Tensor, batch_size: int) -> LabelCounts:
    """LLG: the multiset of labels of a batch of ``batch_size``, as counts per class."""
    g = _class_gradient_sums(weight_update).clone()
    num_classes = int(g.numel())
    negative = g < 0
    impact = float(g[negative].sum()) / batch_size * (1 + 1 / num_classes)
    counts: LabelCounts = Counter()
    for label in torch.nonzero(negative).flatten().tolist()[:batch_size]:
        counts[label] += 1
        g[label] -= impact  # impact is negative: the class's g goes back up
    while counts.total() < batch_size:
        label = int(torch.argmin(g))
        counts[label] += 1
        g[label] -= impact
    return counts


def secure_sum(updates: Sequence[Update], scale: float = 2.0**20) -> Update:
    """What secure aggregation reveals: the sum of the updates, each in fixed point.

    Masking works on integers modulo 2^k: each party rounds ``update * scale`` to an
    integer, the masks cancel in the sum, and the coordinator divides the sum by ``scale``.
    (The modulus only has to exceed the sum's range; it changes nothing here.)
    """
    names = list(updates[0])
    total: Update = {}
    for name in names:
        fixed = torch.stack([torch.round(u[name].to(torch.float64) * scale) for u in updates])
        total[name] = fixed.sum(dim=0) / scale
    return total


def count_overlap(guess: LabelCounts, truth: LabelCounts) -> int:
    """How many of the true labels the guess gets right, as multisets: ``sum_i min``."""
    return sum(min(guess[label], n) for label, n in truth.items())


def apportion(histogram: LabelCounts, batch_size: int) -> LabelCounts:
    """``histogram`` scaled to ``batch_size`` labels (largest remainders; ties to the lower
    label): the guess for one party that knows only the aggregate histogram."""
    total = histogram.total()
    shares = {label: n * batch_size / total for label, n in histogram.items()}
    counts: LabelCounts = Counter({label: int(share) for label, share in shares.items()})
    by_remainder = sorted(shares, key=lambda label: (-(shares[label] % 1), label))
    for label in by_remainder[: batch_size - counts.total()]:
        counts[label] += 1
    return +counts


def label_impacts(
    model: nn.Module, x_aux: torch.Tensor, y_aux: torch.Tensor, lr: float, num_classes: int
) -> torch.Tensor:
    """``A[i, c]``: the mean row-i sum of a one-example update of class c, on aux data.

    For one example the last layer's weight gradient is ``(p - onehot(y)) h^T``, so its
    row sums are ``(p - onehot(y)) * sum(h)``: one forward pass gives them all.
    """
    captured: list[torch.Tensor] = []
    hook = _last_linear(model)[1].register_forward_hook(
        lambda _m, inputs, _out: captured.append(inputs[0].detach())
    )
    try:
        with torch.no_grad():
            probs = torch.softmax(model(x_aux), dim=1).to(torch.float64)
    finally:
        hook.remove()
    strength = captured[0].to(torch.float64).sum(dim=1, keepdim=True)  # sum of h_b
    onehot = F.one_hot(y_aux, num_classes).to(torch.float64)
    row_sums = -lr * (probs - onehot) * strength  # (examples, classes): update row sums
    impacts = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    for c in range(num_classes):
        impacts[:, c] = row_sums[y_aux == c].mean(dim=0)
    return impacts


def llg_plus_label_counts(
    weight_update: torch.Tensor, batch_size: int, impacts: torch.Tensor, parties: int = 1
) -> LabelCounts:
    """Counts of the ``parties * batch_size`` labels behind ``weight_update``, the sum of
    ``parties`` updates of batch ``batch_size`` each, given :func:`label_impacts`.

    Each update is a mean over its batch, so ``batch_size * weight_update``'s row sums are
    about ``A @ counts``. Greedy: add the label whose column best explains what is left.
    """
    target = weight_update.to(torch.float64).sum(dim=1) * batch_size
    counts: LabelCounts = Counter()
    residual = target.clone()
    for _ in range(parties * batch_size):
        errors = ((residual[:, None] - impacts) ** 2).sum(dim=0)
        label = int(torch.argmin(errors))
        counts[label] += 1
        residual -= impacts[:, label]
    return counts
