"""Protected aggregation: secure aggregation by masking (Bonawitz et al. 2017) with the
SecAgg+ neighbour graph (Bell et al. 2020), as plain objects exchanging typed messages.

Nothing here sends bytes: the coordinator's :class:`SecAggServer` and each party's
:class:`SecAggNode` turn one message into the next, and the caller moves them (through the
release gate, on a node). Stages, in order::

    node.advertise()                 -> server.receive_advertisement
    server.advertisement_set()       -> node.confirm        -> server.receive_confirmation
    server.confirmation_set()        -> node.share_keys     -> server.receive_key_shares
    server.share_deliveries()[party] -> node.masked_input   -> server.receive_masked_input
    server.survivor_list()           -> node.sign_survivors -> server.receive_survivor_signature
    server.unmask_request()          -> node.unmask         -> server.receive_unmask_response
    server.result()                  (the survivors' sum modulo 2^k)

Quantize each input with :func:`quantize` and decode the sum with :func:`dequantize_sum`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Quantization is cheap (numpy only) and imported now: its function ``quantize`` shares
# its name with its module, which would shadow a lazy attribute once imported.
from accord.protect.quantize import (
    MAX_RING_BITS,
    choose_ring_bits,
    dequantize_sum,
    packed_bytes,
    quantization_error_bound,
    quantize,
)

# The rest is loaded on first use: importing the package (the job file's [protection]
# section does) must not pull in the protocol, its cryptography and torch.
_LAZY = {
    "Envelope": "accord.protect.envelope",
    "open_envelope": "accord.protect.envelope",
    "seal": "accord.protect.envelope",
    "NeighbourGraph": "accord.protect.graph",
    "CORRECTNESS_BITS": "accord.protect.graph_params",
    "SECURITY_BITS": "accord.protect.graph_params",
    "GraphParams": "accord.protect.graph_params",
    "choose_graph_params": "accord.protect.graph_params",
    "Advertisement": "accord.protect.messages",
    "AdvertisementSet": "accord.protect.messages",
    "Confirmation": "accord.protect.messages",
    "ConfirmationSet": "accord.protect.messages",
    "KeyShares": "accord.protect.messages",
    "MaskAttestation": "accord.protect.messages",
    "MaskedInput": "accord.protect.messages",
    "ShareDelivery": "accord.protect.messages",
    "SurvivorList": "accord.protect.messages",
    "SurvivorSignature": "accord.protect.messages",
    "UnmaskRequest": "accord.protect.messages",
    "UnmaskResponse": "accord.protect.messages",
    "SecAggNode": "accord.protect.node",
    "SecAggParams": "accord.protect.params",
    "SecAggServer": "accord.protect.server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'accord.protect' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from accord.protect.envelope import Envelope, open_envelope, seal
    from accord.protect.graph import NeighbourGraph
    from accord.protect.graph_params import (
        CORRECTNESS_BITS,
        SECURITY_BITS,
        GraphParams,
        choose_graph_params,
    )
    from accord.protect.messages import (
        Advertisement,
        AdvertisementSet,
        Confirmation,
        ConfirmationSet,
        KeyShares,
        MaskAttestation,
        MaskedInput,
        ShareDelivery,
        SurvivorList,
        SurvivorSignature,
        UnmaskRequest,
        UnmaskResponse,
    )
    from accord.protect.node import SecAggNode
    from accord.protect.params import SecAggParams
    from accord.protect.server import SecAggServer

__all__ = [
    "CORRECTNESS_BITS",
    "MAX_RING_BITS",
    "SECURITY_BITS",
    "Advertisement",
    "AdvertisementSet",
    "Confirmation",
    "ConfirmationSet",
    "Envelope",
    "GraphParams",
    "KeyShares",
    "MaskAttestation",
    "MaskedInput",
    "NeighbourGraph",
    "SecAggNode",
    "SecAggParams",
    "SecAggServer",
    "ShareDelivery",
    "SurvivorList",
    "SurvivorSignature",
    "UnmaskRequest",
    "UnmaskResponse",
    "choose_graph_params",
    "choose_ring_bits",
    "dequantize_sum",
    "open_envelope",
    "packed_bytes",
    "quantization_error_bound",
    "quantize",
    "seal",
]
