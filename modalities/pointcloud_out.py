"""Point-cloud embeddings per group: one Parquet row per farthest-point-sampling centre.

The adapter's tokens are groups around FPS centres, which are points of the cloud; their
coordinates come back in the file's own frame (the dataset's centring, optional PCA
alignment and unit-sphere scaling undone:
:meth:`~omnipatch.modalities.pointcloud.PointCloudDataset.to_file_frame`), so each row's
``x, y, z`` is a point of the input file. Columns ``id, group, x, y, z, embedding``; padding
groups (centres beyond a small cloud's points) have no row; the provenance is in the schema
metadata (key ``omnipatch``).
"""

from __future__ import annotations

import numpy as np

from omnipatch.outputs import Embeddings, Outputs, token_rows, write_frame


def label_patches(emb: Embeddings):
    """``pandas.DataFrame`` ``id, group, x, y, z, embedding``."""
    import pandas as pd

    k, t = token_rows(emb)
    xyz = np.zeros((len(k), 3))
    for s in np.unique(k):
        rows = np.nonzero(k == s)[0]
        xyz[rows] = emb.dataset.to_file_frame(emb.index[s], emb.coords[s, t[rows], :3].astype(np.float64))
    df = pd.DataFrame({"id": [emb.ids[i] for i in k], "group": t.astype(np.int64), "x": xyz[:, 0], "y": xyz[:, 1],
                       "z": xyz[:, 2], "embedding": list(emb.features[k, t].astype(np.float32))})
    df.attrs = dict(emb.provenance)
    return df


OUTPUTS = Outputs(label_patches=label_patches, patch_writers={".parquet": write_frame})
