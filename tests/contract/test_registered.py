"""Every registered modality and its adapter, tested by the registry itself (timm's pattern).

No hand-written class per adapter: one contract class is generated per name in
``MODALITIES`` (the bundled ones, the test-only ``signal`` plugin, and any installed plugin),
fed by the modality's own :attr:`~omnipatch.modality.ModalitySpec.example` files opened with
its :attr:`~omnipatch.modality.ModalitySpec.example_options`. It runs the shared adapter
contract (:mod:`tests.adapters.contract`: shapes, round trip where the adapter declares one,
every parameter gets a gradient, no NaN, batch size 1, determinism under a seed) plus the
modality's side: real example files, seeded augmentation, and bad files (empty, garbage)
raising :class:`~omnipatch.errors.BadSampleError` naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import tests.plugin_signal  # noqa: F401  (registers the test-only 8th modality)
from omnipatch.adapter import ModalityAdapter
from omnipatch.batch import Sample, collate
from omnipatch.errors import BadSampleError, OmnipatchError
from omnipatch.masking import MaskSpec
from omnipatch.modality import ADAPTERS, MODALITIES
from omnipatch.train.build import open_data
from tests.adapters.contract import DIM, AdapterContract

_EXAMPLES: dict[str, tuple] = {}


def example(name: str, root: Path):
    """``(spec, source, options, dataset)`` of ``name``'s example files, written once per session."""
    if name not in _EXAMPLES:
        spec = MODALITIES.get(name)
        assert spec.example is not None, f"modality {name!r} has no example files (ModalitySpec.example)"
        folder = root / name
        folder.mkdir(parents=True)
        source = spec.example(folder)
        options = dict(spec.example_options)
        _EXAMPLES[name] = (spec, source, options, open_data(spec, source, options), folder)
    return _EXAMPLES[name]


@pytest.fixture(scope="session")
def examples_root(tmp_path_factory):
    return tmp_path_factory.mktemp("examples")


class RegisteredModality(AdapterContract):
    """The contract for the registered modality ``name`` (set by the generated subclass)."""

    name = ""

    @pytest.fixture(autouse=True)
    def _example(self, examples_root):
        self.spec, self.source, self.options, self.dataset, self.folder = example(self.name, examples_root)

    def make_adapter(self):
        kwargs = self.spec.adapter_kwargs(self.dataset, {**self.spec.options, **self.options})
        return ADAPTERS.get(self.spec.adapter)(dim=DIM, **kwargs)

    def make_batch(self, B: int):
        return collate([self.dataset[i % len(self.dataset)] for i in range(B)])

    def test_patchify_roundtrip(self):
        if not ADAPTERS.get(self.spec.adapter).exact_roundtrip:
            pytest.skip(f"the {self.spec.adapter!r} adapter declares no exact round trip (exact_roundtrip=False)")
        super().test_patchify_roundtrip()

    # -- the modality's side ---------------------------------------------------------------
    def test_spec_names_known_options(self):
        known = set(self.spec.options) | {"patch_size"}
        assert set(self.options) <= known and set(self.spec.model_options) <= known
        assert self.spec.adapter in ADAPTERS

    def test_example_files_are_real_samples(self):
        samples = [self.dataset[i] for i in range(len(self.dataset))]
        assert len(samples) >= 2 and all(isinstance(s, Sample) for s in samples)
        assert all(torch.isfinite(s.x).all() for s in samples)
        assert len({s.id for s in samples}) == len(samples)

    def test_reconstruction_loss_zero_for_perfect_prediction(self):
        a, t = self._tokens(3)
        mask = torch.ones(t.tokens.shape[:2])
        perfect = float(a.reconstruction_loss(t.targets, t.targets, mask))
        wrong = float(a.reconstruction_loss(t.targets.roll(1, 0) + 1.0, t.targets, mask))
        assert 0.0 <= perfect < wrong
        if type(a).reconstruction_loss is ModalityAdapter.reconstruction_loss:  # masked MSE: exactly 0
            assert perfect < 1e-6  # (a cross-entropy term scores targets as logits above 0)

    def test_augment_is_seeded_per_sample(self):
        b = self.make_batch(2)
        v1 = self.spec.augment(b, torch.Generator().manual_seed(1), 1.0)
        v2 = self.spec.augment(b, torch.Generator().manual_seed(1), 1.0)
        assert len(v1) == len(b) and v1.x.dim() == b.x.dim()  # crops may change sizes
        torch.testing.assert_close(v1.x, v2.x, equal_nan=True)

    @pytest.mark.parametrize("level", ["sample", "patch"])
    def test_embeddings_write_every_declared_format(self, level, tmp_path):
        """Each format the modality declares (:attr:`ModalitySpec.outputs`) and the core's Parquet
        writes its example's embeddings; any other suffix is refused naming those formats."""
        from omnipatch.outputs import formats, write
        from tests.modalities.tiny_run import tiny_run

        emb = tiny_run(self.name, self.dataset, self.options).embeddings(self.dataset, level, bf16=False)
        assert len(emb.ids) == len(emb.index) == emb.features.shape[0] == len(self.dataset)
        assert emb.features.ndim == (3 if level == "patch" else 2)
        known = formats(self.spec, level)
        assert ".parquet" in known
        for sfx in known:
            paths = write(self.spec, emb, tmp_path / f"out{sfx}")
            assert paths and all(p.exists() and (p.is_dir() or p.stat().st_size > 0) for p in paths)
        with pytest.raises(OmnipatchError, match=rf"modality {self.name} cannot write \.nope at --level {level}; "
                                                 rf"it writes: {re.escape(', '.join(known))}"):
            write(self.spec, emb, tmp_path / "out.nope")

    @pytest.mark.parametrize("kind", ["empty", "garbage"])
    def test_bad_file_is_a_bad_sample_naming_the_file(self, kind, tmp_path):
        """Among good files, a bad one is a :class:`BadSampleError` (skip-able); a modality whose
        source is one file (a table, a NetCDF) names it in an :class:`OmnipatchError` on open."""
        files = sorted(p for p in self.folder.iterdir() if p.name != "manifest.csv")
        bad = tmp_path / f"{kind}{''.join(files[0].suffixes)}"
        bad.write_bytes(b"" if kind == "empty" else bytes(range(256)) * 8)
        one_file = Path(str(self.source)) == files[0]
        with pytest.raises(OmnipatchError if one_file else BadSampleError, match=re.escape(bad.name)):
            ds = open_data(self.spec, str(bad) if one_file else [str(files[0]), str(bad)], self.options)
            [ds[i] for i in range(len(ds))]


for _name in MODALITIES:
    _spec = MODALITIES.get(_name)
    globals()[f"TestRegistered_{_name}"] = type(f"TestRegistered_{_name}", (RegisteredModality,), {
        "name": _name, "mask": MaskSpec(_spec.default_mask, 0.5), "__module__": __name__})
del _name, _spec
