"""Shared dataset machinery for file-based modalities: entries, labels, bad samples."""

from __future__ import annotations

from torch.utils.data import Dataset

from omnipatch.batch import Sample, Skipped  # noqa: F401  (Skipped re-exported)
from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.modalities.sources import Entry, label_index

ON_BAD = ("raise", "skip")


class FileDataset(Dataset):
    """Dataset over file entries; subclasses implement ``read(entry) -> Sample``.

    Args:
        entries: resolved files (see :func:`omnipatch.modalities.sources.resolve`).
        on_bad_sample: ``"raise"`` (default) stops with an error naming the file and the
            reason; ``"skip"`` returns :class:`Skipped`, which the collate drops and the
            engine writes to ``skipped.jsonl`` in the run directory.
    """

    def __init__(self, entries: list[Entry], on_bad_sample: str = "raise"):
        if on_bad_sample not in ON_BAD:
            raise OmnipatchError(f"on_bad_sample must be one of {ON_BAD}, got {on_bad_sample!r}")
        self.entries = entries
        self.on_bad_sample = on_bad_sample
        self.classes = label_index(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def read(self, entry: Entry) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def label_of(self, entry: Entry) -> int | None:
        if self.classes is None or entry.label is None:
            return None
        return self.classes[entry.label]

    def __getitem__(self, i: int) -> Sample | Skipped:
        entry = self.entries[i]
        try:
            return self.read(entry)
        except BadSampleError as e:
            if self.on_bad_sample == "skip":
                return Skipped(e.source, e.reason)
            raise
        except Exception as e:  # a library failed deep inside: name the file and the reason
            err = BadSampleError(entry.path, f"cannot read ({type(e).__name__}: {e})")
            if self.on_bad_sample == "skip":
                return Skipped(err.source, err.reason)
            raise err from e


def stream_reader(dataset: FileDataset, classes: dict | None = None):
    """``(path, key, label) -> Sample`` for :class:`omnipatch.train.shards.ShardStream`: decodes one
    extracted member with an open file dataset's reader (options, channels and so on come
    from that data set, e.g. the probe data set of the first shard members)."""

    def read(path: str, key: str, label: str | None) -> Sample:
        sample = dataset.read(Entry(path, key, label))
        if label is not None:
            try:
                sample.label = classes[label] if classes else int(label)
            except (KeyError, ValueError):
                sample.label = None
        return sample

    return read
