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


def add_tiny_context(net, seed=0, spread=0.3, wide_taps=None):
    """Give ``net`` a context model with random (not zero) corrections,
    integer layers calibrated on g_a of random images; ``wide_taps``: the
    layers with more inputs per output than this are wide (integer.py; the
    tiny model's first layer has 342, the default model's 4,338; its every
    tap is then random, as a trained first layer's are), None: none."""
    import torch

    from codec.training.context import calibration_inputs

    torch.manual_seed(seed)
    net.context.enable()
    with torch.no_grad():
        if wide_taps is not None:
            first = net.context.net[0].weight
            first.normal_(0, first[0].numel() ** -0.5)
        last = net.context.net[-1]
        last.weight.normal_(0, spread / last.weight.shape[1] ** 0.5)
        last.bias.normal_(0, spread)
        bank = net.g_a(torch.rand(4, 3, 64, 64))
    net.context.build_integer(calibration_inputs(net, net.context, bank, chunk=4), wide_taps=wide_taps)
    return net


def make_context_model(path, seed=0, model_id="tiny-context", wide_taps=None, M=12):
    """The tiny model of make_tiny_model plus a random context model."""
    from codec import weights

    lm = weights.load(make_tiny_model(path, seed, model_id, M=M))
    weights.save(add_tiny_context(lm.net, seed, wide_taps=wide_taps), path, model_id)
    return Path(path)


def add_tiny_post(net, seed=0, spread=0.05):
    """Give ``net`` a post-filter whose last layer is random (not zero), so it changes pixels."""
    import torch

    torch.manual_seed(seed)
    net.post.present = True
    with torch.no_grad():
        net.post.body[-1].weight.normal_(0, spread)
        net.post.body[-1].bias.normal_(0, spread)
    return net


def make_post_model(path, seed=0, model_id="tiny-post"):
    """The tiny model of make_tiny_model plus a random post-filter."""
    from codec import weights

    lm = weights.load(make_tiny_model(path, seed, model_id))
    weights.save(add_tiny_post(lm.net, seed), path, model_id)
    return Path(path)


@pytest.fixture(scope="session")
def full_model(tmp_path_factory):
    """A tiny model with everything the default decoder has: context model and post-filter."""
    from codec import weights
    path = make_context_model(tmp_path_factory.mktemp("full") / "full.safetensors", model_id="tiny-full")
    weights.save(add_tiny_post(weights.load(path).net), path, "tiny-full")
    return path


def photo_folder(tmp_path, photo, n=4):
    """``n`` shifted copies of ``photo`` as PNGs in a new folder (a training set)."""
    from PIL import Image
    d = tmp_path / "imgs"
    d.mkdir(exist_ok=True)
    for i in range(n):
        Image.fromarray(np.roll(photo, 7 * i, axis=1)).save(d / f"{i}.png")
    return d


@pytest.fixture(scope="session")
def post_model(tmp_path_factory):
    return make_post_model(tmp_path_factory.mktemp("post") / "post.safetensors")


@pytest.fixture(scope="session")
def context_model(tmp_path_factory):
    return make_context_model(tmp_path_factory.mktemp("ctx") / "ctx.safetensors")


@pytest.fixture(scope="session")
def wide_context_model(tmp_path_factory):
    """A context model whose first layer is wide, as the default model's is:
    M = 96, so its y_hat inputs alone fill two groups (integer.GROUP)."""
    return make_context_model(tmp_path_factory.mktemp("ctxw") / "ctxw.safetensors", model_id="tiny-context-wide",
                              wide_taps=200, M=96)


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
