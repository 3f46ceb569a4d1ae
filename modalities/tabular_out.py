"""Table embeddings keyed by id: one row per (row id, column) at patch level.

The adapter has one token per column (FT-Transformer); a missing cell is padding, not a
token, and has no row. Parquet columns ``id, column, embedding``, the provenance in the schema
metadata (key ``omnipatch``). Sample level is the core's ``id, embedding``.
"""

from __future__ import annotations

import numpy as np

from omnipatch.outputs import Embeddings, Outputs, token_rows, write_frame


def label_patches(emb: Embeddings):
    """``pandas.DataFrame`` ``id, column, embedding`` (present cells only)."""
    import pandas as pd

    k, t = token_rows(emb)
    cols = list(emb.adapter.columns)
    df = pd.DataFrame({"id": [emb.ids[i] for i in k], "column": [cols[j] for j in t],
                       "embedding": list(emb.features[k, t].astype(np.float32))})
    df.attrs = dict(emb.provenance)
    return df


OUTPUTS = Outputs(label_patches=label_patches, patch_writers={".parquet": write_frame})
