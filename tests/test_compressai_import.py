"""codec/_compressai.py: CompressAI's layers without its heavy package import."""

import subprocess
import sys


def test_codec_loads_without_torchvision_pandas_or_torch_geometric():
    code = ("import sys, codec.pipeline as p; p.load_model(); "
            "print(sorted(m for m in ('torchvision', 'pandas', 'torch_geometric') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_full_compressai_still_imports_afterwards():
    code = ("import codec.pipeline, compressai.models as m; "
            "net = m.MeanScaleHyperprior(8, 12); print(type(net).__name__)")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip().endswith("MeanScaleHyperprior")
