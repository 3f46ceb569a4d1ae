"""Tar shards streamed with bounded memory, split over ranks, through pretraining."""

import json
import tarfile

import pytest

from omnipatch.batch import Sample, Skipped
from omnipatch.config import Config
from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.modalities.base import stream_reader
from omnipatch.modalities.image import ImageDataset
from omnipatch.train.pretrain import pretrain
from omnipatch.train.shards import ShardStream, write_shards


@pytest.fixture
def shards(png_folder, tmp_path):
    files = sorted(png_folder.glob("*.png"))
    return write_shards(files, tmp_path / "shards", per_shard=8, labels=[i % 2 for i in range(len(files))])


def _reader(png_folder):
    return stream_reader(ImageDataset(png_folder, image_size=8))


def test_write_and_stream_every_sample_once_per_epoch(shards, png_folder):
    assert len(shards) == 3 and all(tarfile.is_tarfile(s) for s in shards)
    stream = ShardStream([str(s) for s in shards], _reader(png_folder), shuffle_buffer=4)
    it = iter(stream)
    first_epoch = [next(it) for _ in range(24)]
    assert all(isinstance(s, Sample) and s.x.shape == (1, 8, 8) for s in first_epoch)
    assert len({s.id for s in first_epoch}) == 24  # each sample once
    assert {s.label for s in first_epoch} == {0, 1}


def test_ranks_get_disjoint_shards(shards, png_folder):
    ids = []
    for rank in range(3):
        s = ShardStream([str(x) for x in shards], _reader(png_folder), shuffle_buffer=2)
        s.place(rank, 3)
        it = iter(s)
        ids.append({next(it).id.split("/")[0] for _ in range(8)})
    assert all(len(x) == 1 for x in ids) and len(set.union(*ids)) == 3
    with pytest.raises(OmnipatchError, match="at least one shard per rank"):
        ShardStream([str(shards[0])], _reader(png_folder)).place(0, 2)


def test_bad_member_named_or_skipped(tmp_path, png_folder):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"garbage")
    shard = write_shards([bad, sorted(png_folder.glob("*.png"))[0]], tmp_path / "s")[0]
    with pytest.raises(BadSampleError, match=r"shard-00000.tar:000000000: not a readable image"):
        next(iter(ShardStream([str(shard)], _reader(png_folder))))
    items = iter(ShardStream([str(shard)], _reader(png_folder), on_bad_sample="skip", shuffle_buffer=1))
    got = [next(items) for _ in range(2)]
    assert any(isinstance(x, Skipped) for x in got) and any(isinstance(x, Sample) for x in got)


def test_pretrain_from_shards(shards, tmp_path):
    c = Config()
    c.data.source = str(shards[0].parent / "*.tar")
    c.data.options = {"image_size": 16, "patch_size": 4, "shuffle_buffer": 8}
    c.model.preset, c.model.decoder_dim = "micro", 32
    c.train.steps, c.train.batch_size, c.train.log_every = 3, 8, 1
    pretrain(c, tmp_path / "run", quiet=True)
    rec = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rec) == 3 and all(r["loss"] == r["loss"] for r in rec)
    c.train.epochs = 1
    with pytest.raises(OmnipatchError, match="give train.steps, not epochs"):
        pretrain(c, tmp_path / "run2", quiet=True)
