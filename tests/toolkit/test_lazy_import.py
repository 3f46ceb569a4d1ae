"""``import omnipatch`` must not import heavy modality libraries (as xarray's test_lazy_import)."""

import subprocess
import sys

HEAVY = ["nibabel", "xarray", "torchaudio", "open3d", "av", "soundfile", "pandas", "timm", "transformers"]


def test_import_omnipatch_is_lazy():
    code = (
        "import sys, omnipatch, omnipatch.model, omnipatch.train.engine, omnipatch.cli, omnipatch.init, omnipatch.init.run;"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at module level: {out.stdout.strip()}"
