"""Table reading on tiny CSV / Parquet files written by pandas in tmp_path, broken ones included."""

import numpy as np
import pytest
import torch

from omnipatch.batch import Batch, Sample, collate
from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.modalities.base import Skipped
from omnipatch.modalities.tabular import SPEC, TableDataset, augment, category_code

pd = pytest.importorskip("pandas")


def _frame(n=12):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "sample_id": [f"s{i}" for i in range(n)],
        "mass": rng.normal(4000, 500, n).round(1),
        "island": rng.choice(["Biscoe", "Dream", "Torgersen"], n),
        "flipper": rng.integers(170, 230, n).astype(float),
        "male": rng.random(n) < 0.5,
        "species": rng.choice(["Adelie", "Gentoo"], n),
    })
    df.loc[2, "mass"] = np.nan
    df.loc[5, "island"] = None
    return df


def test_csv_schema_inference_ids_labels_and_missing(tmp_path):
    _frame().to_csv(tmp_path / "t.csv", index=False)
    ds = TableDataset(tmp_path / "t.csv", id_column="sample_id", label_column="species")
    assert ds.columns == ["mass", "island", "flipper", "male"]
    assert ds.kinds == ["numeric", "categorical", "numeric", "categorical"]
    assert ds.classes == {"Adelie": 0, "Gentoo": 1}
    s = ds[2]
    assert isinstance(s, Sample) and s.id == "s2" and s.x.dtype == torch.float64
    assert s.x_mask.tolist() == [True, False, False, False]  # missing stays missing
    assert ds[5].x_mask.tolist() == [False, True, False, False]
    df = _frame()
    assert float(ds[0].x[0]) == df.loc[0, "mass"]
    assert int(ds[0].x[1]) == category_code(df.loc[0, "island"])
    assert int(ds[0].x[3]) == category_code(str(bool(df.loc[0, "male"])))
    mean, std = ds.numeric_stats()
    assert mean[0] == pytest.approx(df["mass"].mean()) and std[0] == pytest.approx(df["mass"].std(ddof=0))
    assert mean[1] == 0.0 and std[1] == 1.0
    vocab = ds.vocabularies()
    assert sorted(vocab[1]) == sorted(df["island"].dropna().unique()) and vocab[0] == []
    b = collate([ds[i] for i in range(4)])
    assert b.x.shape == (4, 4) and b.x_mask.shape == (4, 4) and b.labels.shape == (4,)


def test_parquet_and_forced_kinds(tmp_path):
    df = _frame()
    df["code"] = [1, 2, 3] * 4  # integer codes: numeric unless forced
    df.to_parquet(tmp_path / "t.parquet", index=False)
    ds = TableDataset(tmp_path / "t.parquet", label_column="species", columns=["mass", "code"],
                      categorical="code")
    assert ds.kinds == ["numeric", "categorical"] and ds.ids[:2] == ["0", "1"]
    # the same category read as int or float text gets the same code
    assert int(ds[0].x[1]) == category_code(1) == category_code(1.0) == category_code("1")
    with pytest.raises(OmnipatchError, match="'masss' is not a column; did you mean 'mass'"):
        TableDataset(tmp_path / "t.parquet", columns=["masss"])
    with pytest.raises(OmnipatchError, match="id/label column 'specie' is not a column"):
        TableDataset(tmp_path / "t.parquet", label_column="specie")


def test_all_missing_row_and_bad_numbers_are_bad_samples(tmp_path):
    (tmp_path / "t.csv").write_text("id,a,b,c\nr0,1.5,x,2\nr1,,,\nr2,oops,y,3\nr3,2.5,,inf\n"
                                    + "".join(f"r{i},{i}.0,z,{i}\n" for i in range(4, 40)))
    ds = TableDataset(tmp_path / "t.csv", id_column="id")
    assert ds.kinds == ["numeric", "categorical", "numeric"]  # 'oops' does not make 'a' text
    with pytest.raises(BadSampleError, match=r"t.csv \[row 1, id r1\]: every feature is missing"):
        ds[1]
    with pytest.raises(BadSampleError, match=r"row 2, id r2\]: column 'a': 'oops' is not a finite number"):
        ds[2]
    with pytest.raises(BadSampleError, match=r"column 'c': .*inf.* is not a finite number"):
        ds[3]
    skip = TableDataset(tmp_path / "t.csv", id_column="id", on_bad_sample="skip")
    assert isinstance(skip[1], Skipped) and "row 1" in skip[1].source
    assert isinstance(skip[0], Sample)
    mean, _ = skip.numeric_stats()  # bad rows do not enter the statistics
    assert mean[0] == pytest.approx(np.mean([1.5] + [float(i) for i in range(4, 40)]))


@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", b"", "empty file"),
    ("header.csv", b"a,b\n", "table has a header but no rows"),
    ("binary.csv", bytes(range(256)) * 4, "not a text table|not a readable CSV"),
    ("ragged.csv", b"a,b\n1,2\n3,4,5,6\n", "not a readable CSV table"),
    ("trunc.parquet", None, "not a readable Parquet table"),
    ("table.xlsx", b"x", "unsupported table type"),
])
def test_corrupt_tables_name_the_file(tmp_path, name, content, message):
    p = tmp_path / name
    if content is None:
        _frame().to_parquet(tmp_path / "ok.parquet")
        raw = (tmp_path / "ok.parquet").read_bytes()
        p.write_bytes(raw[: len(raw) // 2])
    else:
        p.write_bytes(content)
    with pytest.raises(OmnipatchError, match=f"{name}: ({message})"):
        TableDataset(p)
    with pytest.raises(OmnipatchError, match="table not found"):
        TableDataset(tmp_path / "nope.csv")


def test_no_features_and_all_rows_bad(tmp_path):
    (tmp_path / "t.csv").write_text("id,label\n1,a\n2,b\n")
    with pytest.raises(OmnipatchError, match="no feature columns left"):
        TableDataset(tmp_path / "t.csv", id_column="id", label_column="label")
    (tmp_path / "u.csv").write_text("id,a\n1,\n2,\n")
    with pytest.raises(OmnipatchError, match="no usable row.*every feature is missing"):
        TableDataset(tmp_path / "u.csv", id_column="id")


def test_scarf_augment_seeded_and_never_all_missing():
    x = torch.arange(40, dtype=torch.float64).view(8, 5)
    m = torch.zeros(8, 5, dtype=torch.bool)
    m[0, 1:] = True  # row 0 has one cell
    m[1:, 0] = True
    b = Batch(x=x, ids=[str(i) for i in range(8)], x_mask=m)
    v1 = augment(b, torch.Generator().manual_seed(0), 1.0)
    v2 = augment(b, torch.Generator().manual_seed(0), 1.0)
    assert torch.equal(v1.x, v2.x) and torch.equal(v1.x_mask, v2.x_mask)
    assert not v1.x_mask.all(1).any()
    # every cell comes from the same column of some row (the empirical marginal)
    for j in range(5):
        assert set(v1.x[:, j].tolist()) <= set(x[:, j].tolist())
    changed = (v1.x != x).double().mean()
    assert 0.05 < float(changed) < 0.6
    assert torch.equal(augment(b, torch.Generator().manual_seed(0), 0.0).x, x)


def test_end_to_end_to_adapter_with_unseen_category(tmp_path):
    from omnipatch.adapters import TabularAdapter

    _frame().to_csv(tmp_path / "train.csv", index=False)
    ds = SPEC.open_dataset(str(tmp_path / "train.csv"), id_column="sample_id", label_column="species")
    a = TabularAdapter(dim=16, **SPEC.adapter_kwargs(ds, SPEC.options))
    t = a.tokenize(collate([ds[i] for i in range(6)]))
    assert t.tokens.shape == (6, 4, 16) and t.padding_mask[2, 0] and t.padding_mask[5, 1]
    new = _frame(3)
    new.loc[0, "island"] = "Atlantis"  # a category pretraining never saw
    new.to_csv(tmp_path / "new.csv", index=False)
    ds2 = SPEC.open_dataset(str(tmp_path / "new.csv"), id_column="sample_id", label_column="species")
    xn = a.normalize(collate([ds2[i] for i in range(3)]).x)
    assert xn[0, 1] == 0 and (xn[1:, 1] > 0).all()
