"""Shared fixtures: a tiny randomly initialised model saved as a weights
file, and small real images cut from a Kodak picture (or synthesised)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def make_tiny_model(path, seed=0, model_id="tiny-test", N=8, M=12):
    import torch

    from codec import weights
    from codec.models import HyperpriorCodec, ModelConfig

    torch.manual_seed(seed)
    net = HyperpriorCodec(ModelConfig(N=N, M=M))
    # Random gains spread the latent so the tiny model codes non-trivial symbols.
    with torch.no_grad():
        net.log_gain.add_(1.5)
        net.log_inv_gain.sub_(1.5)
    net.eval()
    weights.save(net, path, model_id)
    return Path(path)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny.safetensors")


@pytest.fixture(scope="session")
def other_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("models2") / "other.safetensors", seed=1,
                           model_id="other-test")


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A 96x80 RGB crop of a real photo (synthetic texture if Kodak is absent)."""
    src = KODAK / "kodim23.png"
    if src.exists():
        from PIL import Image
        return np.asarray(Image.open(src).convert("RGB"))[200:280, 300:396].copy()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:80, 0:96]
    base = np.stack([x * 2, y * 3, (x + y) * 1.5], -1) + rng.normal(0, 10, (80, 96, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


@pytest.fixture
def photo_png(tmp_path, photo):
    from PIL import Image
    p = tmp_path / "photo.png"
    Image.fromarray(photo).save(p)
    return p
