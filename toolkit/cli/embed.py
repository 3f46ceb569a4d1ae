"""``omnipatch embed``: a run's embeddings of a data source, in the modality's formats."""

from __future__ import annotations

from omnipatch.cli.dataflags import add_data_flags


def run(a) -> None:
    from omnipatch.api import load, skipped_path, write_skipped
    from omnipatch.cli.dataflags import data_options
    from omnipatch.config import check_range
    from omnipatch.modality import MODALITIES
    from omnipatch.outputs import check_format, write

    check_range("--batch-size", a.batch_size, "int", 1)
    pre = load(a.checkpoint, random_init=a.random_init)
    spec = MODALITIES.get(pre.modality_name(a.modality))
    check_format(spec, a.level, a.out)  # a format the modality cannot write fails before any data is read
    ds = pre.open(a.data, a.on_bad_sample, modality=a.modality, options=data_options(a))
    skipped: list = []
    sk = skipped_path(a.out)
    sk.unlink(missing_ok=True)  # a fresh listing per run, never an old one
    emb = pre.embeddings(ds, a.level, batch_size=a.batch_size, modality=a.modality, on_bad_sample=a.on_bad_sample,
                         skipped=skipped, readout=a.readout)
    emb.provenance["data_source"] = str(a.data)
    paths = write(spec, emb, a.out)
    what = "token embeddings" if a.level == "patch" else "embeddings"
    where = str(paths[0]) if len(paths) == 1 else f"{len(paths)} files ({paths[0]} ...)"
    print(f"wrote {len(emb.ids)} {what if a.level == 'sample' else 'samples of ' + what} of width "
          f"{emb.features.shape[-1]} to {where}")
    if write_skipped(sk, skipped):
        print(f"skipped {len(skipped)} sample(s), listed in {sk}")


def add_parser(sub) -> None:
    """Add ``omnipatch embed`` to the CLI's subparsers."""
    s = sub.add_parser("embed", help="embed files with a pretrained encoder")
    s.add_argument("--checkpoint", required=True, help="run directory")
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True, help="embeddings file; its suffix picks the format: .parquet (id, "
                   "embedding) for every modality, and the modality's own (climate .nc/.zarr, volume .nii.gz, "
                   "image .npy/.tif, ...)")
    s.add_argument("--level", choices=["sample", "patch"], default="sample",
                   help="one vector per sample (pooled), or one per token with its coordinates")
    s.add_argument("--readout", choices=["modality", "mean"], default="modality",
                   help="--level sample: the modality's own readout of the tokens (volumes: coarse regions) "
                   "or their mean")
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--on-bad-sample", choices=["raise", "skip"], default="raise")
    s.add_argument("--random-init", action="store_true", help="same architecture, untrained (baseline)")
    s.add_argument("--modality", help="paired runs: which modality --data holds (default: the first)")
    add_data_flags(s)
    s.set_defaults(func=run)
