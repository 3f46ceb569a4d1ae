"""``train.compile=true``: the transformer blocks run through ``torch.compile``.

Regional compilation: each :class:`~omnipatch.layers.block.Block` (encoder and MAE decoder)
is compiled in place with ``nn.Module.compile``, so state-dict keys, checkpoints, DDP / FSDP
wrapping and the Python-side step (augmentations, masking, losses, seeded generators) stay
as they are; one block's graph is traced once and reused by its identical siblings. Ragged
visible-token counts mark the sequence axis dynamic after the first recompile.

On the CPU, inductor needs a C++ compiler; without one the run stops with one line. Measured
in ``benchmarks/bench_mae_step.py --compile``; off by default (see the README).
"""

from __future__ import annotations

import shutil

from torch import nn

from omnipatch.errors import OmnipatchError


def compile_blocks(model: nn.Module, mode: str | None = None) -> int:
    """Compile every transformer block of ``model`` in place; returns how many."""
    from omnipatch.layers.block import Block

    if not any(p.is_cuda for p in model.parameters()) and not (shutil.which("c++") or shutil.which("g++")
                                                                or shutil.which("clang++")):
        raise OmnipatchError("train.compile=true needs a C++ compiler on the CPU (torch.compile / inductor); "
                             "install g++ or set train.compile=false")
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    for b in blocks:
        b.compile(mode=mode)
    return len(blocks)
