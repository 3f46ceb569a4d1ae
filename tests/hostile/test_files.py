"""Generated bad files in every file-based modality: with ``raise`` one error naming the file,
with ``skip`` the bad file listed and every good one read. Never another exception."""

from __future__ import annotations

import pytest

from omnipatch.batch import Sample, Skipped
from omnipatch.errors import OmnipatchError
from tests.hostile.files import KINDS, MODALITY_FILES, folder_with_one_bad


def _open(modality, folder, mode):
    from omnipatch.modality import MODALITIES, load_builtin
    from omnipatch.train.build import open_data

    load_builtin()
    spec = MODALITIES.get(modality)
    return open_data(spec, str(folder), dict(MODALITY_FILES[modality][2]), mode)


def _read_all(ds):
    return list(getattr(ds, "skipped_files", [])) + [ds[i] for i in range(len(ds))]


CASES = [(m, k) for m in MODALITY_FILES for k in KINDS]


@pytest.mark.parametrize("modality, kind", CASES, ids=[f"{m}-{k}" for m, k in CASES])
def test_skip_lists_the_bad_file_and_reads_the_rest(modality, kind, tmp_path):
    folder, bad = folder_with_one_bad(tmp_path / "d", modality, kind)
    items = _read_all(_open(modality, folder, "skip"))
    skipped = [x for x in items if isinstance(x, Skipped)]
    assert skipped and all(str(bad) in x.source or bad.name in x.source for x in skipped), skipped
    assert all(isinstance(x, (Sample, Skipped)) for x in items)
    good = [x for x in items if isinstance(x, Sample)]
    assert good and not any(bad.name in str(x.id) for x in good)


@pytest.mark.parametrize("modality, kind", CASES, ids=[f"{m}-{k}" for m, k in CASES])
def test_raise_names_the_bad_file(modality, kind, tmp_path):
    folder, bad = folder_with_one_bad(tmp_path / "d", modality, kind)
    with pytest.raises(OmnipatchError) as e:
        _read_all(_open(modality, folder, "raise"))
    assert bad.name in str(e.value) and "\n" not in str(e.value)
