"""Tar shards: the ordinary WebDataset layout (sub-folders, ``KEY.ext.more``), a member-size cap,
and truncated or corrupt shards, skipped and listed."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from omnipatch.errors import BadSampleError
from omnipatch.train.shards import ShardStream, split_member


@pytest.mark.parametrize("name, key, ext", [
    ("0001.png", "0001", "png"),
    ("train/a/0001.png", "train/a/0001", "png"),
    ("./train/0001.input.png", "train/0001", "input.png"),
    ("train/0001.cls", "train/0001", "cls"),
    ("dir.v2/0001.PNG", "dir.v2/0001", "png"),
])
def test_member_names_split_like_webdataset(name, key, ext):
    assert split_member(name) == (key, ext)


def _add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _webdataset_shard(png_folder, path, mode="w", extra=()):
    pngs = sorted(png_folder.glob("*.png"))
    with tarfile.open(path, mode) as tar:
        for i, p in enumerate(pngs):
            _add(tar, f"split/{'ab'[i % 2]}/{i:04d}.img.png", p.read_bytes())
            _add(tar, f"split/{'ab'[i % 2]}/{i:04d}.cls", str(i % 2).encode())
        for name, data in extra:
            _add(tar, name, data)
    return path




def test_pretrain_streams_subfolder_shards_and_lists_oversized_members(png_folder, tmp_path, cli):
    from tests.hostile.conftest import TINY

    shard = _webdataset_shard(png_folder, tmp_path / "s-0.tar", "w:gz", extra=[("split/big/9999.png", b"\0" * (3 << 20))])
    run = tmp_path / "run"
    r = cli("pretrain", "--modality", "image", "--data", str(shard), "--out", run, "--steps", "3", "--batch-size", "8",
            "--on-bad-sample", "skip", "--set", "data.options.image_size=16", "--set", "data.options.max_member_mb=2",
            *TINY)
    assert r.code == 0, r.err
    rows = [json.loads(x) for x in (run / "skipped.jsonl").read_text().splitlines()]
    assert rows and all("split/big/9999.png" in x["source"] and "cap of 2 MB" in x["reason"] for x in rows)


@pytest.mark.parametrize("cut", [0.3, 0.7])
def test_truncated_shard_is_named_or_skipped(png_folder, tmp_path, cut):
    from PIL import Image  # noqa: F401

    good = _webdataset_shard(png_folder, tmp_path / "g.tar")
    raw = good.read_bytes()
    bad = tmp_path / "t.tar"
    bad.write_bytes(raw[: int(len(raw) * cut)])

    def read(path, key, label):
        return key

    items = list(_take(ShardStream([str(bad)], read, on_bad_sample="skip"), 200))
    skipped = [x for x in items if not isinstance(x, str)]
    assert skipped and all(str(bad) in x.source for x in skipped)
    with pytest.raises(BadSampleError, match=str(bad)):
        list(_take(ShardStream([str(bad)], read, on_bad_sample="raise"), 200))


def _take(stream, n):
    for i, x in enumerate(stream):
        if i >= n:
            return
        yield x
