"""Fused Triton kernels for masking: the CUDA path (``reference.py`` stays the oracle).

Every strategy reduces to keys ``(B, L)`` and budgets ``k (B,)`` (see
:mod:`omnipatch.masking.reference`). Instead of ``argsort`` + a second pass for the inverse
permutation + a ``gather`` driven by a materialised ``(B, K, D)`` int64 index, one launch does
it all:

``_mask_kernel`` (grid ``(B, ceil(L / BLOCK_I))``)
    Each program takes a tile of tokens and computes their **rank** in the row by counting the
    keys below them (a key is packed with its index into one int64, so ties are broken by the
    lower index: deterministic, a stable sort). The rank *is* the sorted position, so the
    program writes ``idx_restore``, ``visible``, ``loss_mask`` in natural order and
    ``idx_keep`` / ``keep_valid`` / ``idx_mask`` at the rank, then copies its kept rows of
    ``x`` (plus the positional embedding, optionally) straight to ``out[b, rank]``. Keys may
    be given or drawn inside the kernel (Philox, ``tl.rand(seed, b * L + i)``), which makes
    random masking one launch with no host sync. The rank count costs ``O(L^2)`` compares per
    row, all in registers: cheap next to the row copies for the L of ViT / VideoMAE.

``_gather_kernel`` / ``_restore_kernel``
    The two directions of the permutation: rows picked by an index (``gather_tokens``, the
    backward of the decoder prologue) and rows put back in full order with a fill row
    elsewhere (the decoder prologue ``unshuffle`` + its positional embedding, and the backward
    of the gather). Because the kept indices are distinct, the backward of a gather is a
    gather through the inverse permutation: no atomics, no zero-fill, deterministic.

Only CUDA tensors are launched for real; under ``TRITON_INTERPRET=1`` the same kernels run on
CPU tensors (the parity tests do this at small shapes).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from omnipatch.masking.reference import MaskResult

BLOCK_I = 32
BLOCK_J = 128
BLOCK_ROWS = 32



def interpreter_compat() -> None:
    """Under ``TRITON_INTERPRET=1``, let loops take runtime bounds with numpy >= 2.4.

    Triton 3.6's interpreter turns a scalar argument into a one-element array and converts it
    with ``int(array)``, which numpy 2.4 rejects ("only 0-dimensional arrays can be converted
    to Python scalars"), so ``for j in range(0, L, BLOCK)`` fails. This re-registers
    ``__index__`` to read the single element. No effect on compiled (GPU) kernels.
    """
    if not triton.knobs.runtime.interpret:
        return
    from triton.runtime import interpreter

    orig = interpreter._patch_lang_tensor
    if getattr(orig, "_omnipatch_compat", False):
        return

    def patched(tensor, scope):
        orig(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched._omnipatch_compat = True
    interpreter._patch_lang_tensor = patched


interpreter_compat()


# ------------------------------------------------------------------------------------ kernels
@triton.jit
def _packed_keys(keys_ptr, pad_ptr, seed, row, offs, L, SEED_MODE: tl.constexpr, HAS_PAD: tl.constexpr):
    """int64 ``(order-preserving key bits) << 32 | index``; out of range -> INT64_MAX."""
    inb = offs < L
    if SEED_MODE:
        key = tl.rand(seed, row * L + offs)
        if HAS_PAD:
            pad = tl.load(pad_ptr + row * L + offs, mask=inb, other=1)
            key = tl.where(pad != 0, float("inf"), key)
    else:
        key = tl.load(keys_ptr + row * L + offs, mask=inb, other=float("inf")).to(tl.float32)
    key = key + 0.0  # -0.0 -> +0.0, as torch orders them equal
    u = key.to(tl.int32, bitcast=True)
    s = u ^ ((u >> 31) & 0x7FFFFFFF)  # float order == signed int order
    packed = (s.to(tl.int64) << 32) | offs.to(tl.int64)
    return tl.where(inb, packed, 0x7FFFFFFFFFFFFFFF)


@triton.jit
def _mask_kernel(
    keys_ptr, seed, k_ptr, pad_ptr, x_ptr, pos_ptr, out_ptr,
    keep_ptr, rest_ptr, restore_ptr, visible_ptr, keep_valid_ptr, loss_ptr, keys_out_ptr,
    L, K, D, pos_bstride, k_const,
    SEED_MODE: tl.constexpr, HAS_K: tl.constexpr, HAS_PAD: tl.constexpr, HAS_X: tl.constexpr,
    HAS_POS: tl.constexpr, STORE_KEYS: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0)
    oi = tl.program_id(1) * BLOCK_I + tl.arange(0, BLOCK_I)
    in_i = oi < L
    ki = _packed_keys(keys_ptr, pad_ptr, seed, b, oi, L, SEED_MODE, HAS_PAD)
    if STORE_KEYS:
        tl.store(keys_out_ptr + b * L + oi, tl.rand(seed, b * L + oi), mask=in_i)
    # rank = number of (key, index) pairs below ours = sorted position
    rank = tl.zeros([BLOCK_I], dtype=tl.int32)
    for j0 in range(0, L, BLOCK_J):
        oj = j0 + tl.arange(0, BLOCK_J)
        kj = _packed_keys(keys_ptr, pad_ptr, seed, b, oj, L, SEED_MODE, HAS_PAD)
        rank += tl.sum((kj[None, :] < ki[:, None]).to(tl.int32), axis=1)
    if HAS_K:
        kb = tl.load(k_ptr + b).to(tl.int32)
    else:
        kb = k_const
    vis = rank < kb
    row = b.to(tl.int64) * L
    tl.store(restore_ptr + row + oi, rank.to(tl.int64), mask=in_i)
    tl.store(visible_ptr + row + oi, vis, mask=in_i)
    hidden = ~vis
    if HAS_PAD:
        pad = tl.load(pad_ptr + row + oi, mask=in_i, other=1)
        hidden = hidden & (pad == 0)
    tl.store(loss_ptr + row + oi, hidden.to(tl.float32), mask=in_i)
    kept = in_i & (rank < K)
    krow = b.to(tl.int64) * K
    tl.store(keep_ptr + krow + rank, oi.to(tl.int64), mask=kept)
    tl.store(keep_valid_ptr + krow + rank, vis, mask=kept)
    tl.store(rest_ptr + b.to(tl.int64) * (L - K) + rank - K, oi.to(tl.int64), mask=in_i & (rank >= K))
    if HAS_X:
        src = (row + oi)[:, None] * D
        dst = (krow + rank)[:, None].to(tl.int64) * D
        psrc = (b.to(tl.int64) * pos_bstride + oi.to(tl.int64) * D)[:, None]
        for d0 in range(0, D, BLOCK_D):
            od = d0 + tl.arange(0, BLOCK_D)
            m = kept[:, None] & (od < D)[None, :]
            v = tl.load(x_ptr + src + od[None, :], mask=m, other=0.0).to(tl.float32)
            if HAS_POS:
                v += tl.load(pos_ptr + psrc + od[None, :], mask=m, other=0.0).to(tl.float32)
            tl.store(out_ptr + dst + od[None, :], v, mask=m)


@triton.jit
def _gather_kernel(
    x_ptr, idx_ptr, valid_ptr, pos_ptr, out_ptr, R, K, L, D, pos_bstride,
    HAS_VALID: tl.constexpr, HAS_POS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """``out[b, p] = valid[b, p] ? x[b, idx[b, p]] + pos[., idx[b, p]] : 0`` over rows r = b*K+p."""
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    od = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    in_r = r < R
    b = (r // K).to(tl.int64)
    i = tl.load(idx_ptr + r, mask=in_r, other=0)
    ok = in_r
    if HAS_VALID:
        ok = ok & (tl.load(valid_ptr + r, mask=in_r, other=0) != 0)
    m = ok[:, None] & (od < D)[None, :]
    v = tl.load(x_ptr + ((b * L + i) * D)[:, None] + od[None, :], mask=m, other=0.0).to(tl.float32)
    if HAS_POS:
        v += tl.load(pos_ptr + (b * pos_bstride + i * D)[:, None] + od[None, :], mask=m, other=0.0).to(tl.float32)
    tl.store(out_ptr + (r.to(tl.int64) * D)[:, None] + od[None, :], v, mask=in_r[:, None] & (od < D)[None, :])


@triton.jit
def _restore_kernel(
    y_ptr, restore_ptr, cond_ptr, fill_ptr, pos_ptr, out_ptr, R, K, L, D, pos_bstride,
    USE_COND: tl.constexpr, HAS_FILL: tl.constexpr, HAS_POS: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """``out[b, l] = (ok ? y[b, restore[b, l]] : fill) + pos[., l]`` over rows r = b*L+l, where
    ``ok = cond[b, l]`` (USE_COND) or ``restore[b, l] < K``."""
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    od = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    in_r = r < R
    in_d = od < D
    b = (r // L).to(tl.int64)
    tok = r % L
    src = tl.load(restore_ptr + r, mask=in_r, other=0)
    if USE_COND:
        ok = in_r & (tl.load(cond_ptr + r, mask=in_r, other=0) != 0)
    else:
        ok = in_r & (src < K)
    v = tl.load(y_ptr + ((b * K + src) * D)[:, None] + od[None, :], mask=ok[:, None] & in_d[None, :],
                other=0.0).to(tl.float32)
    if HAS_FILL:
        fill = tl.load(fill_ptr + od, mask=in_d, other=0.0).to(tl.float32)
        v = tl.where(ok[:, None], v, fill[None, :])
    if HAS_POS:
        v += tl.load(pos_ptr + (b * pos_bstride + tok * D)[:, None] + od[None, :],
                     mask=in_r[:, None] & in_d[None, :], other=0.0).to(tl.float32)
    tl.store(out_ptr + (r.to(tl.int64) * D)[:, None] + od[None, :], v, mask=in_r[:, None] & in_d[None, :])


# ------------------------------------------------------------------------------- launchers
def _block_d(D: int) -> int:
    return min(128, triton.next_power_of_2(max(D, 16)))


def _pos_args(pos: Tensor | None, B: int, L: int, D: int, like: Tensor) -> tuple[Tensor, int]:
    if pos is None:
        return like, 0
    if pos.dim() != 3 or pos.shape[1:] != (L, D) or pos.shape[0] not in (1, B):
        raise ValueError(f"pos must be (1|B, L, D)=(1|{B}, {L}, {D}), got {tuple(pos.shape)}")
    return pos, (0 if pos.shape[0] == 1 else L * D)


def _launch_mask(B, L, dev, keys, seed, k, K, padding_mask, x, pos, store_keys=False):
    """Run ``_mask_kernel``; returns ``(out | None, MaskResult, keys_out | None)``."""
    D = x.shape[2] if x is not None else 0
    if not 0 <= K <= L:
        raise ValueError(f"K={K} kept slots out of range for L={L}")
    lng = dict(dtype=torch.long, device=dev)
    idx_keep, idx_mask = torch.empty(B, K, **lng), torch.empty(B, L - K, **lng)
    idx_restore = torch.empty(B, L, **lng)
    visible = torch.empty(B, L, dtype=torch.bool, device=dev)
    keep_valid = torch.empty(B, K, dtype=torch.bool, device=dev)
    loss_mask = torch.empty(B, L, dtype=torch.float32, device=dev)
    out = keys_out = None
    dummy = idx_restore
    if x is not None:
        pos_t, pos_bs = _pos_args(pos, B, L, D, x)
        dtype = x.dtype if pos is None else torch.promote_types(x.dtype, pos.dtype)
        out = torch.empty(B, K, D, dtype=dtype, device=dev)
    else:
        pos_t, pos_bs = dummy, 0
    if store_keys:
        keys_out = torch.empty(B, L, dtype=torch.float32, device=dev)
    k_is_t = isinstance(k, Tensor)
    if B and L:
        _mask_kernel[(B, triton.cdiv(L, BLOCK_I))](
            keys if keys is not None else dummy, int(seed or 0), k if k_is_t else dummy,
            padding_mask if padding_mask is not None else dummy,
            x if x is not None else dummy, pos_t, out if out is not None else dummy,
            idx_keep, idx_mask, idx_restore, visible, keep_valid, loss_mask,
            keys_out if keys_out is not None else dummy,
            L, K, max(D, 1), pos_bs, 0 if k_is_t else int(k),
            SEED_MODE=keys is None, HAS_K=k_is_t, HAS_PAD=padding_mask is not None, HAS_X=x is not None,
            HAS_POS=pos is not None and x is not None, STORE_KEYS=store_keys,
            BLOCK_I=BLOCK_I, BLOCK_J=BLOCK_J, BLOCK_D=_block_d(D), num_warps=4,
        )
    res = MaskResult(idx_keep, idx_mask, idx_restore, visible, keep_valid, loss_mask)
    return out, res, keys_out


def _gather(x: Tensor, idx: Tensor, valid: Tensor | None, pos: Tensor | None, out_dtype) -> Tensor:
    B, L, D = x.shape
    K = idx.shape[1]
    out = torch.empty(B, K, D, dtype=out_dtype, device=x.device)
    pos_t, pos_bs = _pos_args(pos, B, L, D, x)
    if B * K and D:
        bd = _block_d(D)
        _gather_kernel[(triton.cdiv(B * K, BLOCK_ROWS), triton.cdiv(D, bd))](
            x, idx, valid if valid is not None else idx, pos_t, out, B * K, K, L, D, pos_bs,
            HAS_VALID=valid is not None, HAS_POS=pos is not None, BLOCK_R=BLOCK_ROWS, BLOCK_D=bd,
        )
    return out


def _restore(y: Tensor, restore: Tensor, cond: Tensor | None, fill: Tensor | None,
             pos: Tensor | None, out_dtype) -> Tensor:
    B, K, D = y.shape
    L = restore.shape[1]
    out = torch.empty(B, L, D, dtype=out_dtype, device=y.device)
    pos_t, pos_bs = _pos_args(pos, B, L, D, y)
    if B * L and D:
        bd = _block_d(D)
        _restore_kernel[(triton.cdiv(B * L, BLOCK_ROWS), triton.cdiv(D, bd))](
            y, restore, cond if cond is not None else restore, fill if fill is not None else y, pos_t, out,
            B * L, K, L, D, pos_bs, USE_COND=cond is not None, HAS_FILL=fill is not None,
            HAS_POS=pos is not None, BLOCK_R=BLOCK_ROWS, BLOCK_D=bd,
        )
    return out


def _inverse(idx: Tensor, L: int) -> Tensor:
    """``inv (B, L)``: position of each token in ``idx (B, K)`` (distinct rows), K if absent."""
    B, K = idx.shape
    inv = torch.full((B, L), K, dtype=torch.long, device=idx.device)
    return inv.scatter_(1, idx, torch.arange(K, device=idx.device).expand(B, K))


def _meta(t: Tensor | None):
    """Shape and dtype only: what a backward needs of an input it does not read."""
    return None if t is None else (tuple(t.shape), t.dtype)


def _pos_grad(g_full: Tensor, pos) -> Tensor:
    shape, dtype = pos
    return (g_full.sum(0, keepdim=True) if shape[0] == 1 and g_full.shape[0] != 1 else g_full).to(dtype)


# ---------------------------------------------------------------------------- autograd ops
class _MaskGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, pos, keys, seed, k, K, padding_mask):
        B, L, _ = x.shape
        out, res, _ = _launch_mask(B, L, x.device, keys, seed, k, K, padding_mask, x.contiguous(),
                                   None if pos is None else pos.contiguous())
        ctx.save_for_backward(res.idx_restore)
        ctx.x_dtype, ctx.pos = x.dtype, _meta(pos)
        ctx.mark_non_differentiable(*(getattr(res, f) for f in _FIELDS))
        return (out,) + tuple(getattr(res, f) for f in _FIELDS)

    @staticmethod
    def backward(ctx, g, *_):
        (restore,) = ctx.saved_tensors
        g_full = _restore(g.contiguous(), restore, None, None, None, g.dtype)
        gx = g_full.to(ctx.x_dtype) if ctx.needs_input_grad[0] else None
        gp = _pos_grad(g_full, ctx.pos) if ctx.needs_input_grad[1] else None
        return gx, gp, None, None, None, None, None


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, pos, idx):
        x = x.contiguous()
        dtype = x.dtype if pos is None else torch.promote_types(x.dtype, pos.dtype)
        out = _gather(x, idx.contiguous(), None, None if pos is None else pos.contiguous(), dtype)
        ctx.save_for_backward(idx)
        ctx.L, ctx.x_dtype, ctx.pos = x.shape[1], x.dtype, _meta(pos)
        return out

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved_tensors
        g_full = _restore(g.contiguous(), _inverse(idx, ctx.L), None, None, None, g.dtype)
        gx = g_full.to(ctx.x_dtype) if ctx.needs_input_grad[0] else None
        gp = _pos_grad(g_full, ctx.pos) if ctx.needs_input_grad[1] else None
        return gx, gp, None


class _Unshuffle(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, token, pos, idx_restore, visible, idx_keep, keep_valid):
        y = y.contiguous()
        dtype = y.dtype if pos is None else torch.promote_types(y.dtype, pos.dtype)
        fill = token.reshape(-1).to(y.dtype).contiguous()  # reference casts the token to y's dtype
        out = _restore(y, idx_restore, visible, fill, None if pos is None else pos.contiguous(), dtype)
        ctx.save_for_backward(visible, idx_keep, keep_valid)
        ctx.y_dtype, ctx.token, ctx.pos = y.dtype, _meta(token), _meta(pos)
        return out

    @staticmethod
    def backward(ctx, g):
        visible, idx_keep, keep_valid = ctx.saved_tensors
        g = g.contiguous()
        B, L, D = g.shape
        gy = gt = gp = None
        if ctx.needs_input_grad[0]:
            gy = _gather(g, idx_keep, keep_valid, None, ctx.y_dtype)
        if ctx.needs_input_grad[1]:
            hidden = (~visible).reshape(1, B * L).to(torch.float32)
            gt = (hidden @ g.reshape(B * L, D).float()).reshape(ctx.token[0]).to(ctx.token[1])
        if ctx.needs_input_grad[2]:
            gp = _pos_grad(g, ctx.pos)
        return gy, gt, gp, None, None, None, None


_FIELDS = ("idx_keep", "idx_mask", "idx_restore", "visible", "keep_valid", "loss_mask")


# ------------------------------------------------------------------------------ public API
def select(keys: Tensor, k: Tensor | int, padding_mask: Tensor | None = None, K: int | None = None) -> MaskResult:
    """Fused :func:`omnipatch.masking.reference.select` (stable: ties go to the lower index).

    Args:
        keys: ``(B, L)`` float, ``+inf`` where a slot must not be visible.
        k: ``(B,)`` long budgets, or one int for every sample.
        padding_mask: ``(B, L)`` bool, True for padding (never scored).
        K: kept slots; default ``max(k)`` (a host sync when ``k`` is a tensor: pass it when known).
    """
    K = _num_keep(k, K)
    B, L = keys.shape
    return _launch_mask(B, L, keys.device, keys.contiguous(), None, k, K, _opt(padding_mask), None, None)[1]


def mask_gather(
    x: Tensor, k: Tensor | int, *, keys: Tensor | None = None, seed: int | None = None,
    padding_mask: Tensor | None = None, pos: Tensor | None = None, K: int | None = None,
) -> tuple[Tensor, MaskResult]:
    """Select the visible tokens and gather them (``+ pos``) in one launch, differentiable.

    Args:
        x: ``(B, L, D)`` tokens.
        k: ``(B,)`` long budgets or one int.
        keys: ``(B, L)`` keys (``+inf`` = never visible); or None with ``seed`` to draw uniform
            keys in the kernel (Philox at offset ``b * L + i``, padding set to ``+inf``).
        padding_mask: ``(B, L)`` bool, True for padding.
        pos: ``(1|B, L, D)`` added to the gathered rows.
        K: kept slots, default ``max(k)``.
    Returns:
        ``x_vis (B, K, D)`` = ``x[b, idx_keep[b]] (+ pos)`` and the :class:`MaskResult`.
    """
    if (keys is None) == (seed is None):
        raise ValueError("mask_gather needs exactly one of keys or seed")
    K = _num_keep(k, K)
    pad = _opt(padding_mask)
    out, *fields = _MaskGather.apply(x, pos, None if keys is None else keys.contiguous(), seed, k, K, pad)
    return out, MaskResult(*fields)


def random_keys(B: int, L: int, seed: int, device) -> Tensor:
    """The keys ``mask_gather(..., seed=seed)`` draws: ``(B, L)`` uniform in ``[0, 1)``."""
    return _launch_mask(B, L, device, None, seed, 0, 0, None, None, None, store_keys=True)[2]


def gather_tokens(x: Tensor, idx: Tensor, pos: Tensor | None = None) -> Tensor:
    """``x (B, L, D)``, ``idx (B, K)`` distinct per row -> ``x[b, idx] (+ pos[., idx])``."""
    return _Gather.apply(x, pos, idx)


def unshuffle(visible_out: Tensor, mask_token: Tensor, res: MaskResult, pos: Tensor | None = None) -> Tensor:
    """Fused decoder prologue: :func:`omnipatch.masking.reference.unshuffle` (+ ``pos``)."""
    return _Unshuffle.apply(visible_out, mask_token, pos, res.idx_restore.contiguous(),
                            res.visible.contiguous(), res.idx_keep.contiguous(), res.keep_valid.contiguous())


def _num_keep(k: Tensor | int, K: int | None) -> int:
    if K is not None:
        return int(K)
    return int(k.max()) if isinstance(k, Tensor) and k.numel() else int(k) if not isinstance(k, Tensor) else 0


def _opt(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


__all__ = ["gather_tokens", "mask_gather", "random_keys", "select", "unshuffle"]
