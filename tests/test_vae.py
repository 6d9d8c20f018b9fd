"""The VAE head: a proper likelihood, sampling and interpolation."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cli.main import main
from codec.heads import vae
from codec.heads.store import save_head


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory):
    torch.manual_seed(0)
    net = vae.ImageVAE(vae.VAEConfig(N=8, M=4)).eval()
    return save_head(net, tmp_path_factory.mktemp("vae") / "v.safetensors", "vae")


def test_discretized_logistic_is_a_distribution_over_256_values():
    x = torch.arange(256, dtype=torch.float64).view(1, 256) / 255
    for mean, log_s in ((0.3, -3.0), (0.0, -5.0), (0.99, -1.0)):
        lp = vae.discretized_logistic_logp(x, torch.full_like(x, mean), torch.full_like(x, log_s))
        assert float(lp.exp().sum()) == pytest.approx(1.0, abs=1e-4)


def test_negative_elbo_is_at_most_8_bits_for_an_untrained_model_plus_kl(tiny_vae):
    net = vae.load(tiny_vae)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = net(x)
    assert (out["kl_bpd"] >= 0).all() and (out["nll_bpd"] > 0).all()
    assert vae.negative_elbo_bpd(net, x) == pytest.approx(float((out["nll_bpd"] + out["kl_bpd"]).mean()), rel=0.05)


def test_sampling_is_seeded(tiny_vae):
    a = vae.sample_grid(4, seed=1, size=32, weights=tiny_vae)
    b = vae.sample_grid(4, seed=1, size=32, weights=tiny_vae)
    c = vae.sample_grid(4, seed=2, size=32, weights=tiny_vae)
    assert a.shape == (2 + 2 * 34, 2 + 2 * 34, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_interpolation_strip_starts_and_ends_with_the_inputs(tiny_vae, photo):
    strip = vae.interpolate(photo, photo[::-1].copy(), steps=3, size=32, weights=tiny_vae)
    assert strip.shape == (36, 2 + 5 * 34, 3)
    first = vae.to_uint8(vae.square(photo, 32))[0]
    assert np.array_equal(strip[2:34, 2:34], first)


def test_sample_and_interpolate_cli(tiny_vae, photo_png, tmp_path):
    out = tmp_path / "grid.png"
    r = CliRunner().invoke(main, ["sample", "-n", "4", "--size", "32", "-o", str(out), "--weights", str(tiny_vae)])
    assert r.exit_code == 0, r.output and Image.open(out).size == (70, 70)
    r = CliRunner().invoke(main, ["sample", "--size", "30", "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "multiple of 16" in r.output
    r = CliRunner().invoke(main, ["interpolate", str(photo_png), str(tmp_path / "missing.png"), "-o",
                                  str(tmp_path / "s.png"), "--weights", str(tiny_vae)])
    assert r.exit_code == 1 and "no such file" in r.stderr
    r = CliRunner().invoke(main, ["interpolate", str(photo_png), str(photo_png), "--steps", "3", "--size", "32",
                                  "-o", str(tmp_path / "s.png"), "--weights", str(tiny_vae)])
    assert r.exit_code == 0, r.output
