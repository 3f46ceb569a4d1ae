"""Tables: a hostile CSV / Parquet is one line naming the file, never a traceback."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import TINY

TABLES = {  # kind -> (content, the reason in the one line)
    "empty": (b"", "empty file"),
    "header-only": (b"id,a,b,kind\n", "no rows"),
    "binary": (bytes(range(256)) * 8, "not a readable CSV"),
    "one-row": (b"id,a\nr0,1\n", "training needs at least 2"),
    "no-features": (("id\n" + "".join(f"r{i}\n" for i in range(12))).encode(), "no feature columns"),
    "bad-utf8": (b"id,a\n\xff\xfe,1\n" * 6, "cannot decode as UTF-8"),
}


@pytest.mark.parametrize("kind", list(TABLES))
def test_hostile_table_is_one_line(kind, tmp_path, cli):
    p = tmp_path / f"{kind}.csv"
    content, reason = TABLES[kind]
    p.write_bytes(content)
    cli("pretrain", "--modality", "tabular", "--data", p, "--out", tmp_path / "run", "--steps", "1",
        "--id-column", "id", *TINY).one_error_line(p.name, reason)


def test_fake_parquet_is_one_line(tmp_path, cli):
    p = tmp_path / "t.parquet"
    p.write_bytes(b"PAR1 not really" * 10)
    cli("pretrain", "--modality", "tabular", "--data", p, "--out", tmp_path / "run", "--steps", "1",
        *TINY).one_error_line("t.parquet")
