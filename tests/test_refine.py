import numpy as np
import pytest
import torch

import codec
from codec import pipeline, tiling
from codec.refine import LR, objective, refine, step_size
from codec.tiling import _to_tensor


def _objective(net, rgb, y, q):
    x = _to_tensor(rgb).contiguous()
    qt = torch.tensor([float(q)])
    with torch.no_grad():
        loss, bpp, mse = objective(net, y * net.gains(qt)["y"], x, torch.ones(1, 1, *rgb.shape[:2]), qt)
    return float(loss)


def test_refinement_never_raises_the_objective_and_decodes_exactly(tiny_model, photo):
    lm = pipeline.load_model(str(tiny_model))
    rgb = np.ascontiguousarray(photo[:64, :64])
    with torch.inference_mode():
        y0 = tiling.analyse(lm.net, rgb, 0)
        y1 = refine(lm.net, rgb, y0, 5.0, steps=6, lr=0.05)
    assert y1.shape == y0.shape and not torch.equal(y0, y1)
    assert _objective(lm.net, rgb, y1.clone(), 5.0) <= _objective(lm.net, rgb, y0.clone(), 5.0)
    res = codec.encode(photo, quality=5, model=tiny_model, effort=3)
    assert np.array_equal(codec.decode(res.data, model=tiny_model).rgb, res.picture.rgb)


def test_step_size_is_fixed_up_to_the_reference_lambda_and_grows_above_it(tiny_model):
    net = pipeline.load_model(str(tiny_model)).net
    q = [torch.tensor([v]) for v in torch.linspace(-1.0, float(net.cfg.levels), 12).tolist()]
    lmbda = [float(net.lmbda(v)[0]) for v in q]
    steps = [step_size(net, v) for v in q]
    for lm_, st in zip(lmbda, steps):
        assert st == LR if lm_ <= 0.013 else st > LR
    assert steps == sorted(steps) and steps[-1] > LR  # the tiny model's qualities reach past lambda 0.013


def test_windowed_refinement_covers_every_latent_position(tiny_model):
    lm = pipeline.load_model(str(tiny_model))
    rgb = np.random.default_rng(0).integers(0, 256, (100, 150, 3)).astype(np.uint8)  # pads to 128 x 192
    with torch.inference_mode():
        y0 = tiling.analyse(lm.net, rgb, 0)
        whole = refine(lm.net, rgb, y0, 4.0, steps=2, lr=0.05, window=0)
        tiles = refine(lm.net, rgb, y0, 4.0, steps=2, lr=0.05, window=64)
    assert tiles.shape == whole.shape == y0.shape
    # every 64-pixel window moved its own part of the latent
    for t in range(0, 128, 64):
        for l in range(0, 192, 64):
            part = (slice(None), slice(None), slice(t // 16, t // 16 + 4), slice(l // 16, l // 16 + 4))
            assert not torch.equal(tiles[part], y0[part])


def test_effort_is_checked(tiny_model, photo):
    with pytest.raises(ValueError, match="effort must be a whole number"):
        codec.encode(photo, model=tiny_model, effort=-1)


@pytest.fixture(scope="module")
def vq_model(tmp_path_factory, photo):
    """A tiny VQ codec with a rate weight: k-means codebooks and counted prior on the photo's latent."""
    from codec import weights
    from codec.models import ModelConfig, VQCodec
    torch.manual_seed(0)
    net = VQCodec(ModelConfig(arch="vq", N=8, M=12, vq_dim=4, codebook=16, lambdas=(0.002, 0.01, 0.05),
                              vq_rd=(2e-4, 1e-4, 5e-5))).eval()
    with torch.no_grad():
        counts = net.vq.kmeans_init(net.g_a(_to_tensor(photo)), gen=torch.Generator().manual_seed(0))
    net.set_prior(counts)
    return weights.save(net, tmp_path_factory.mktemp("vq") / "vq.safetensors", "vq-tiny")


def test_vq_refinement_never_raises_the_objective_and_decodes_exactly(vq_model, photo):
    lm = pipeline.load_model(str(vq_model))
    rgb = np.ascontiguousarray(photo[:64, :64])
    x, valid, q = _to_tensor(rgb).contiguous(), torch.ones(1, 1, 64, 64), torch.tensor([3.0])
    with torch.inference_mode():
        y0 = tiling.analyse(lm.net, rgb, 0)
        y1 = refine(lm.net, rgb, y0, 3.0, steps=6, lr=0.2)
        j0, j1 = (float(objective(lm.net, y.clone(), x, valid, q)[0]) for y in (y0, y1))
    assert not torch.equal(y0, y1) and j1 < j0
    for quality in (1, 3):
        res = codec.encode(photo, quality=quality, model=vq_model, effort=3)
        assert np.array_equal(codec.decode(res.data, model=vq_model).rgb, res.picture.rgb)


def test_refined_files_are_reproducible(tiny_model, photo):
    """SGA draws its random roundings from a fixed seed: the same image, the same file."""
    a = codec.compress(photo, quality=4, model=tiny_model, effort=4)
    b = codec.compress(photo, quality=4, model=tiny_model, effort=4)
    assert a == b and a != codec.compress(photo, quality=4, model=tiny_model)


def test_sga_rounding_anneals_to_the_nearest_integer():
    from codec.refine import sga_round
    v = torch.tensor([0.1, 0.4, 0.6, 0.9, -1.3, 2.3])
    gen = torch.Generator().manual_seed(0)
    soft = sga_round(v, 0.5, gen)
    assert ((soft >= torch.floor(v)) & (soft <= torch.ceil(v))).all()
    cold = torch.stack([sga_round(v, 0.01, gen) for _ in range(20)]).mean(0)
    assert torch.allclose(cold, torch.round(v), atol=0.06)


@pytest.mark.parametrize("q", [2.0, 6.0])
def test_the_rate_refined_for_is_the_context_models(context_model, photo, q):
    """With a context model the file's y is coded pass by pass under corrected
    means and scales: the objective's rate is that one (near the file's size),
    not the hyperprior's (far from it for this random context model). ``size``:
    the file's streams, without the header."""
    lm = pipeline.load_model(str(context_model))
    rgb = np.ascontiguousarray(photo[:64, :64])
    from codec import container
    size = sum(map(len, container.unpack(codec.encode(rgb, quality=q, model=context_model).data)[1]))
    with torch.inference_mode():
        y = tiling.analyse(lm.net, rgb, 0)
    qt = torch.tensor([q])
    est = {}
    for use in (False, True):
        lm.net.context.present = use   # without it: the hyperprior's rate
        with torch.no_grad():
            _, bpp, _ = objective(lm.net, y * lm.net.gains(qt)["y"], _to_tensor(rgb).contiguous(),
                                  torch.ones(1, 1, 64, 64), qt)
        est[use] = float(bpp) * 64 * 64 / 8
    assert abs(est[True] - size) < 0.25 * size and abs(est[True] - size) < abs(est[False] - size)
