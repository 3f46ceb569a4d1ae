"""Fine-tuning attaches labels by exact id; name/stem matching is an explicit, counted option."""

from __future__ import annotations

import pytest

from omnipatch.errors import OmnipatchError
from omnipatch.finetune.labels import match_ids

TRAIN = [f"/data/train/{i:05d}.png" for i in range(16)]
OTHER_SPLIT = {f"/data/test/{i:05d}.png": str(i % 3) for i in range(16)}


def test_other_split_with_same_numbering_is_refused_by_default():
    with pytest.raises(OmnipatchError, match="no sample id matches a label id by exact"):
        match_ids(TRAIN, OTHER_SPLIT)


@pytest.mark.parametrize("match, labels, n", [
    ("exact", {TRAIN[3]: "a", TRAIN[5]: "b"}, 2),
    ("exact", {"/data/train/00003.png": "a"}, 1),
    ("name", OTHER_SPLIT, 16),
    ("stem", {f"{i:05d}": "x" for i in range(8)}, 8),
])
def test_matches_are_counted(match, labels, n):
    report: list[str] = []
    found = match_ids(TRAIN, labels, match, report)
    assert len(found) == n and report == [f"labels: {n} of 16 samples matched a label id by {match}"]


def test_crops_match_their_file_exactly():
    assert match_ids([f"{TRAIN[0]}#0", f"{TRAIN[0]}#1", TRAIN[1]], {TRAIN[0]: "a"}) == {0: "a", 1: "a"}


@pytest.mark.parametrize("match, labels", [
    ("name", {"/a/00001.png": "x", "/b/00001.png": "y"}),
    ("stem", {"/a/00001.png": "x", "/a/00001.tif": "y"}),
])
def test_ambiguous_fallback_is_refused(match, labels):
    with pytest.raises(OmnipatchError, match="ambiguous"):
        match_ids(TRAIN, labels, match)


def test_finetune_cli_refuses_foreign_labels_and_counts_explicit_fallback(pretrained, png_folder, tmp_path, cli):
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"/elsewhere/test/img_{i:02d}.png,{i % 2}\n" for i in range(24)))
    base = ["finetune", "--checkpoint", pretrained, "--data", png_folder, "--labels", labels, "--epochs", "1",
            "--batch-size", "8", "--device", "cpu", "--out"]
    cli(*base, tmp_path / "ft").one_error_line("no sample id matches a label id by exact")
    assert not (tmp_path / "ft" / "checkpoint").exists()
    r = cli(*base, tmp_path / "ft2", "--match-ids", "name")
    assert r.code == 0, r.err
    assert "labels: 24 of 24 samples matched a label id by name" in r.out
