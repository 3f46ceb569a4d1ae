"""The core is modality-blind by construction (issue 16): the import graph has no loop, only
``omnipatch.builtins`` imports the bundled modalities / adapters, and no modality name or
``hasattr`` guess is left in ``toolkit/`` code. Known exceptions (names, hasattr) are
named, with a reason, below; an entry that no longer matches fails too, so the lists only shrink."""

from __future__ import annotations

import subprocess
import sys

from tests.architecture.imports import ROOT, cycles, graph
from tests.architecture.names import hasattr_guesses, modality_names

BUNDLED = ("omnipatch.modalities", "omnipatch.adapters")

#: (core file, modality word) -> why it is still there
KNOWN_NAMES = {
    ("toolkit/init/source.py", "image"): "`image_size`: a key of Hugging Face's config.json (an external format)",
    ("toolkit/train/loggers.py", "image"): "the logging libraries' own names for a picture (PIL.Image, "
                                     "SummaryWriter.add_image, wandb.Image), not a modality",
}

#: (core file, attribute) -> why the hasattr is not a modality guess
KNOWN_HASATTR = {
    ("toolkit/api.py", "__getitem__"): "argument dispatch: an opened Dataset or a source path",
    ("toolkit/finetune/run.py", "__getitem__"): "argument dispatch: an opened Dataset or a source path",
    ("toolkit/finetune/run.py", "__len__"): "argument dispatch: an opened Dataset or a source path",
    ("toolkit/train/engine.py", "full_tensor"): "torch API: a DTensor grad norm under FSDP2",
}


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, f"import loop(s): {[sorted(c) for c in found]}"


def test_only_builtins_imports_the_bundled_modalities_and_adapters():
    g = graph()
    core = {m: deps for m, deps in g.items() if not m.startswith(BUNDLED)}
    offenders = {m: sorted(d for d in deps if d.startswith(BUNDLED)) for m, deps in core.items()}
    offenders = {m: d for m, d in offenders.items() if d}
    assert offenders == {"omnipatch.builtins": ["omnipatch.adapters", "omnipatch.modalities"]}


def test_contract_modules_import_nothing_above_them():
    g = graph()
    assert g["omnipatch.modality"] <= {"omnipatch.batch", "omnipatch.registry", "omnipatch.errors", "omnipatch.outputs",
                                       "omnipatch.options"}
    assert g["omnipatch.options"] <= {"omnipatch.errors"}  # how a modality declares its typed options
    assert g["omnipatch.outputs"] <= {"omnipatch.errors"}  # the Outputs / Embeddings part of the contract
    assert g["omnipatch.registry"] <= {"omnipatch.errors"}
    assert not any(d.startswith(BUNDLED) for d in g["omnipatch.adapter"] | g["omnipatch.tokens"])


def test_no_modality_name_in_core_code():
    hits = modality_names()
    unknown = [h for h in hits if (h[0], h[2]) not in KNOWN_NAMES]
    assert not unknown, f"modality names in toolkit/ code (move them into the modality / the contract): {unknown}"
    stale = set(KNOWN_NAMES) - {(f, w) for f, _, w in hits}
    assert not stale, f"gone from the code, delete from KNOWN_NAMES: {sorted(stale)}"


def test_no_hasattr_guess_in_core_code():
    hits = hasattr_guesses()
    unknown = [h for h in hits if (h[0], h[2]) not in KNOWN_HASATTR]
    assert not unknown, f"hasattr guesses in toolkit/ (declare it in the contract instead): {unknown}"
    stale = set(KNOWN_HASATTR) - {(f, a) for f, _, a in hits}
    assert not stale, f"gone from the code, delete from KNOWN_HASATTR: {sorted(stale)}"


def test_the_scanners_see_what_they_look_for(tmp_path, monkeypatch):
    # the rule itself: code hits, words for humans do not
    import tests.architecture.names as names

    (tmp_path / "m.py").write_text(
        '"""An image docstring."""\n'
        'def f(volume_size, x):\n'
        '    """audio"""\n'
        '    if x == "climate":\n'
        '        raise ValueError("tabular " + f"{x} video")\n'
        '    print("pointcloud")\n'
        '    return hasattr(x, "grid")\n')
    monkeypatch.setattr(names, "CORE", tmp_path)
    monkeypatch.setattr(names, "ROOT", tmp_path)
    assert sorted(w for _, _, w in names.modality_names()) == ["climate", "volume"]
    assert [a for _, _, a in names.hasattr_guesses()] == ["grid"]


def test_registries_load_the_builtins_lazily_on_first_use():
    code = ("import sys; from omnipatch.modality import ADAPTERS, MODALITIES; "
            "assert 'omnipatch.modalities' not in sys.modules and 'omnipatch.adapters' not in sys.modules; "
            "spec = MODALITIES.get('image'); assert ADAPTERS.get(spec.adapter).channels_kwarg == 'in_chans'; "
            "assert 'omnipatch.builtins' in sys.modules; print(len(MODALITIES), len(ADAPTERS))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    n_mod, n_ad = map(int, out.stdout.split())
    assert n_mod >= 7 and n_ad >= 8


def test_matplotlib_is_set_up_in_one_place():
    """Pictures draw through ``omnipatch.plots`` (``pyplot`` / ``finish``), nowhere else."""
    import re

    pattern = re.compile(r"^\s*(import matplotlib|from matplotlib|.*matplotlib\.use\()", re.M)
    hits = sorted(str(p.relative_to(ROOT)) for d in ("toolkit", "adapters", "modalities", "examples", "benchmarks")
                  for p in (ROOT / d).rglob("*.py") if pattern.search(p.read_text()))
    assert hits == ["toolkit/plots.py"], hits
