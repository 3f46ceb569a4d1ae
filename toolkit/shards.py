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
                 shuffle_buffer: int = 256, on_bad_sample: str = "raise", epoch: int = 0):
        self.shards, self.read, self.rank, self.world = list(shards), read, rank, world
        self.seed, self.buffer, self.on_bad, self.epoch = seed, shuffle_buffer, on_bad_sample, epoch

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

        try:
            tar = tarfile.open(shard, "r|*")
        except (tarfile.TarError, OSError) as e:
            raise OmnipatchError(f"{shard}: not a readable tar shard ({e})") from None
        with tar, tempfile.TemporaryDirectory() as tmp:
            cur_key, cur_path, cur_label = None, None, None
            n = 0
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.rpartition(".")
                if key != cur_key and cur_key is not None and cur_path is not None:
                    yield emit(cur_key, cur_path, cur_label)
                    cur_path, cur_label = None, None
                cur_key = key
                data = tar.extractfile(member).read()
                if ext == "cls":
                    cur_label = data.decode().strip()
                else:
                    n += 1
                    cur_path = os.path.join(tmp, f"{n % 2}.{ext}")  # two slots: current and previous
                    with open(cur_path, "wb") as fh:
                        fh.write(data)
            if cur_key is not None and cur_path is not None:
                yield emit(cur_key, cur_path, cur_label)


def extract_first(shards: list[str], n: int, dest: str | Path) -> list[tuple[str, str | None]]:
    """The first ``n`` data members (and labels) of the shards extracted to ``dest``: a small,
    bounded sample for computing normalisation statistics and inferring shapes."""
    out: dict[str, list] = {}
    for shard in shards:
        with tarfile.open(shard, "r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.rpartition(".")
                data = tar.extractfile(member).read()
                item = out.setdefault(f"{Path(shard).stem}_{key}", [None, None])
                if ext == "cls":
                    item[1] = data.decode().strip()
                else:
                    path = Path(dest) / f"{Path(shard).stem}_{key}.{ext}"
                    path.write_bytes(data)
                    item[0] = str(path)
                if sum(1 for v in out.values() if v[0]) >= n and ext != "cls":
                    break
        if sum(1 for v in out.values() if v[0]) >= n:
            break
    return [(p, lab) for p, lab in out.values() if p]


__all__ = ["ShardStream", "write_shards", "shard_list", "is_shard_source", "extract_first"]
