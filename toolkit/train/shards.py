"""Tar shards streamed WebDataset-style: collections larger than memory, bounded RAM.

A shard is a plain ``.tar`` whose members are the samples' files (``KEY.png``, ``KEY.wav``,
``KEY.mp4`` ...) with an optional label member ``KEY.cls`` (text). :func:`write_shards`
packs files into shards. :class:`ShardStream` reads shards sequentially (tar streaming mode,
no index, no random access), decodes each sample with the modality's own reader, and keeps
only ``shuffle_buffer`` decoded samples in memory at a time, so memory does not grow with
the archive. Shards are split between ranks (``shard i -> rank i mod world``) and then
between DataLoader workers; each epoch reshuffles the shard order from ``(seed, epoch)``.

Resume note: a stream restarts at the beginning of an epoch drawn from ``(seed, step)``;
unlike map-style data it does not replay the interrupted order exactly.
"""

from __future__ import annotations

import glob
import io
import os
import random
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from torch.utils.data import IterableDataset, get_worker_info

from omnipatch.batch import Skipped
from omnipatch.errors import BadSampleError, OmnipatchError

#: largest member decoded from a shard (a small gzip shard can inflate to gigabytes)
MAX_MEMBER_MB = 256
LABEL_EXTS = ("cls",)


def split_member(name: str) -> tuple[str, str]:
    """WebDataset naming: ``dir/sub/KEY.ext.more`` -> key ``dir/sub/KEY``, extension ``ext.more``
    (the key ends at the first dot of the file name, so ``0001.cls`` and ``0001.input.png`` belong
    together); members may sit in sub-folders."""
    import posixpath

    folder, base = posixpath.split(name[2:] if name.startswith("./") else name)
    stem, _, ext = base.partition(".")
    return posixpath.join(folder, stem) if folder else stem, ext.lower()


def _suffix(ext: str) -> str:
    """The decoder's file suffix: the last part of a multi-part extension (``input.png`` -> ``png``)."""
    last = ext.rpartition(".")[2]
    return "".join(c for c in last if c.isalnum())[:16] or "bin"


def _copy_capped(src, dst_path: str, limit: int, name: str) -> None:
    n = 0
    with open(dst_path, "wb") as out:
        while True:
            block = src.read(1 << 20)
            if not block:
                return
            n += len(block)
            if n > limit:
                raise BadSampleError(name, f"member larger than the cap of {limit >> 20} MB")
            out.write(block)


def is_shard_source(source) -> bool:
    return isinstance(source, str) and source.endswith(".tar")


def shard_list(source: str) -> list[str]:
    files = sorted(glob.glob(source)) if any(c in source for c in "*?[") else [source]
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise OmnipatchError(f"{source}: no tar shards found")
    return files


def write_shards(files: list[str | Path], out_dir: str | Path, per_shard: int = 1000,
                 labels: list | None = None, prefix: str = "shard") -> list[Path]:
    """Pack ``files`` into ``out_dir/prefix-00000.tar`` ... with ``per_shard`` samples each."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = []
    for s in range(0, len(files), per_shard):
        path = out_dir / f"{prefix}-{s // per_shard:05d}.tar"
        tmp = path.with_suffix(".tar.tmp")
        with tarfile.open(tmp, "w") as tar:
            for i in range(s, min(s + per_shard, len(files))):
                f = Path(files[i])
                key = f"{i:09d}"
                tar.add(str(f), arcname=key + f.suffix.lower())
                if labels is not None:
                    data = str(labels[i]).encode()
                    info = tarfile.TarInfo(key + ".cls")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, path)  # atomic: a shard is complete or absent
        shards.append(path)
    return shards


class ShardStream(IterableDataset):
    """Endless stream of samples from tar shards.

    Args:
        shards: shard paths.
        read: ``(path, key, label) -> Sample`` decoding one extracted member (the modality's
            reader); raises :class:`BadSampleError` for a bad sample.
        rank, world: this process's share of the shards.
        seed: shard order and shuffle buffer seed.
        shuffle_buffer: decoded samples held at once (the memory bound).
        on_bad_sample: ``raise`` or ``skip`` (skipped samples are yielded as markers the
            collate drops and reports).
    """

    def __init__(self, shards: list[str], read: Callable, rank: int = 0, world: int = 1, seed: int = 0,
                 shuffle_buffer: int = 256, on_bad_sample: str = "raise", epoch: int = 0,
                 max_member_mb: float = MAX_MEMBER_MB):
        self.shards, self.read, self.rank, self.world = list(shards), read, rank, world
        self.seed, self.buffer, self.on_bad, self.epoch = seed, shuffle_buffer, on_bad_sample, epoch
        self.max_member = int(max_member_mb * (1 << 20))

    def place(self, rank: int, world: int, start_step: int = 0) -> None:
        """Set this process's share (called by the engine, which knows the ranks) and start
        from an epoch drawn from the resume step."""
        if len(self.shards) < world:
            raise OmnipatchError(f"{len(self.shards)} shard(s) for {world} ranks: write at least one shard per rank")
        self.rank, self.world, self.epoch = rank, world, self.epoch + start_step

    def _my_shards(self, epoch: int) -> list[str]:
        order = list(self.shards)
        random.Random(self.seed * 7919 + epoch).shuffle(order)
        mine = order[self.rank::self.world]
        info = get_worker_info()
        return mine[info.id::info.num_workers] if info is not None else mine

    def __iter__(self) -> Iterator:
        rng = random.Random(self.seed * 104729 + self.rank)
        epoch = self.epoch
        while True:
            buf = []
            for shard in self._my_shards(epoch):
                for item in self._decode(shard):
                    if isinstance(item, Skipped):
                        yield item
                        continue
                    buf.append(item)
                    if len(buf) >= self.buffer:
                        yield buf.pop(rng.randrange(len(buf)))
            rng.shuffle(buf)
            yield from buf
            epoch += 1

    def _decode(self, shard: str) -> Iterator:
        """Decode samples of one shard in order; a key's members are adjacent in the tar."""

        def emit(key, path, label):
            try:
                return self.read(path, f"{Path(shard).name}/{key}", label)
            except Exception as e:  # name the shard member, whatever the decoder raised
                reason = e.reason if isinstance(e, BadSampleError) else f"cannot read ({type(e).__name__}: {e})"
                if self.on_bad == "skip":
                    return Skipped(f"{shard}:{key}", reason)
                raise BadSampleError(f"{shard}:{key}", reason) from None

        def bad(name: str, reason: str):
            if self.on_bad == "skip":
                return Skipped(name, reason)
            raise BadSampleError(name, reason)

        try:
            tar = tarfile.open(shard, "r|*")
        except (tarfile.TarError, OSError, EOFError) as e:
            yield bad(shard, f"not a readable tar shard ({type(e).__name__}: {e})")
            return
        with tar, tempfile.TemporaryDirectory() as tmp:
            cur_key, cur_path, cur_label = None, None, None
            n = 0
            members = iter(tar)
            while True:
                try:
                    member = next(members)
                except StopIteration:
                    break
                except (tarfile.TarError, OSError, EOFError) as e:  # truncated / corrupt past this point
                    yield bad(shard, f"truncated or corrupt tar after {n} member(s) ({type(e).__name__}: {e})")
                    return
                if not member.isfile():
                    continue
                key, ext = split_member(member.name)
                if key != cur_key and cur_key is not None and cur_path is not None:
                    yield emit(cur_key, cur_path, cur_label)
                    cur_path, cur_label = None, None
                if key != cur_key:
                    cur_path, cur_label = None, None
                cur_key = key
                try:
                    if member.size > self.max_member:
                        raise BadSampleError(f"{shard}:{member.name}",
                                             f"member of {member.size >> 20} MB, larger than the cap of "
                                             f"{self.max_member >> 20} MB (ShardStream max_member_mb)")
                    if ext in LABEL_EXTS:
                        cur_label = tar.extractfile(member).read(1 << 16).decode("utf-8", "replace").strip()
                    else:
                        n += 1
                        path = os.path.join(tmp, f"{n % 2}.{_suffix(ext)}")  # two slots: current and previous
                        _copy_capped(tar.extractfile(member), path, self.max_member, f"{shard}:{member.name}")
                        cur_path = path
                except BadSampleError as e:
                    cur_path = None
                    yield bad(e.source, e.reason)
                except (tarfile.TarError, OSError, EOFError) as e:
                    yield bad(shard, f"truncated or corrupt tar at {member.name} ({type(e).__name__}: {e})")
                    return
            if cur_key is not None and cur_path is not None:
                yield emit(cur_key, cur_path, cur_label)
            if _missing_end(shard, tar.offset):
                yield bad(shard, f"truncated tar (no end-of-archive marker after {n} member(s))")


def _missing_end(shard: str, offset: int) -> bool:
    """An uncompressed tar ends with two zero blocks after its last member; a truncated one
    stops on a block boundary, which tarfile's stream mode takes for the end."""
    with open(shard, "rb") as f:
        magic = f.read(6)
    if magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic == b"\xfd7zXZ\x00":
        return False  # compressed: a truncated stream raises instead
    return os.path.getsize(shard) - offset < 1024


def extract_first(shards: list[str], n: int, dest: str | Path,
                  max_member_mb: float = MAX_MEMBER_MB) -> list[tuple[str, str | None]]:
    """The first ``n`` data members (and labels) of the shards extracted to ``dest``: a small,
    bounded sample for computing normalisation statistics and inferring shapes. Unreadable
    shards and members over the size cap are passed over (the stream reports them)."""
    out: dict[str, list] = {}
    limit = int(max_member_mb * (1 << 20))
    for shard in shards:
        try:
            with tarfile.open(shard, "r|*") as tar:
                for member in tar:
                    if not member.isfile() or member.size > limit:
                        continue
                    key, ext = split_member(member.name)
                    item = out.setdefault(f"{shard}\0{key}", [None, None])
                    if ext in LABEL_EXTS:
                        item[1] = tar.extractfile(member).read(1 << 16).decode("utf-8", "replace").strip()
                    else:
                        path = Path(dest) / f"{len(out):06d}.{_suffix(ext)}"  # never the member's own path
                        try:
                            _copy_capped(tar.extractfile(member), str(path), limit, member.name)
                        except BadSampleError:
                            continue
                        item[0] = str(path)
                    if sum(1 for v in out.values() if v[0]) >= n and ext not in LABEL_EXTS:
                        break
        except (tarfile.TarError, OSError, EOFError):
            continue
        if sum(1 for v in out.values() if v[0]) >= n:
            break
    return [(p, lab) for p, lab in out.values() if p]


__all__ = ["ShardStream", "write_shards", "shard_list", "is_shard_source", "extract_first"]
