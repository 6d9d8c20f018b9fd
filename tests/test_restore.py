"""The restoration head: denoising and masked inpainting."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cli.main import main
from codec.heads import restore
from codec.heads.store import save_head


@pytest.fixture(scope="module")
def tiny_restore(tmp_path_factory):
    torch.manual_seed(0)
    net = restore.RestoreNet(restore.RestoreConfig((4, 8, 8, 8))).eval()
    return save_head(net, tmp_path_factory.mktemp("restore") / "r.safetensors", "restore")


def test_corruption_draws_noise_levels_and_holes_in_range():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 3, 64, 64)
    noisy, known, sigma = restore.corrupt(x, g)
    assert ((sigma >= 0) & (sigma <= restore.SIGMA_MAX)).all() and (sigma == 0).any() and (sigma > 0).any()
    holes = (known == 0).flatten(1).any(1)
    assert holes.any() and not holes.all()
    # noisy crops are 8-bit images: clipped, on the 1/255 grid, and without noise only rounded
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert torch.equal(noisy, (noisy * 255).round() / 255)
    assert torch.equal(noisy[sigma == 0], (x[sigma == 0] * 255).round() / 255)
    big = sigma > 30
    assert (noisy[big] == 0).any() and (noisy[big] == 1).any()


def test_estimate_sigma_finds_the_noise_level():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:200, 0:200]
    clean = np.stack([x, y, (x + y) / 2], -1) * 0.6 + 30
    for s in (5, 15, 30):
        noisy = np.clip(clean + rng.normal(0, s, clean.shape), 0, 255).round().astype(np.uint8)
        assert restore.estimate_sigma(noisy) == pytest.approx(s, rel=0.15)


def test_tiled_run_equals_one_pass(tiny_restore, photo):
    net = restore.load(tiny_restore)
    known = np.ones(photo.shape[:2], bool)
    whole = restore.run(net, photo, known, 10.0, tile=1024)
    tiled = restore.run(net, photo, known, 10.0, tile=32, margin=32)
    # a 32-pixel margin covers the net's receptive field up to rounding
    assert whole.shape == photo.shape and np.abs(whole.astype(int) - tiled).max() <= 1


def test_self_ensemble_averages_the_turned_copies(tiny_restore, photo):
    net = restore.load(tiny_restore)
    img = photo[:48, :40]                       # not square: turned copies are 40 x 48
    known = np.ones(img.shape[:2], bool)
    one = restore.run(net, img, known, 20.0)
    assert np.array_equal(restore.run(net, img, known, 20.0, ensemble=1), one)
    flipped = restore.run(net, np.ascontiguousarray(img[:, ::-1]), known, 20.0)[:, ::-1]
    two = restore.run(net, img, known, 20.0, ensemble=2)
    want = (one.astype(int) + flipped) / 2      # the mean of the two roundings is within 1 of it
    assert two.shape == img.shape and np.abs(two - want).max() <= 1 and not np.array_equal(two, one)
    # eight copies are the whole symmetry group: turning the input turns the output
    eight = restore.run(net, img, known, 20.0, ensemble=8)
    turned = restore.run(net, np.ascontiguousarray(np.rot90(img)), known.T, 20.0, ensemble=8)
    assert np.abs(np.rot90(eight).astype(int) - turned).max() <= 1
    with pytest.raises(ValueError, match="ensemble must be"):
        restore.run(net, img, known, 20.0, ensemble=3)


def test_inpaint_changes_only_the_hole(tiny_restore, photo):
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[20:40, 30:50] = 255
    out = restore.inpaint(photo, mask, weights=tiny_restore).rgb
    assert np.array_equal(out[mask == 0], photo[mask == 0])
    assert out.shape == photo.shape


def test_mask_of_another_size_is_refused(tiny_restore, photo):
    with pytest.raises(ValueError, match="mask is 10x10"):
        restore.inpaint(photo, np.zeros((10, 10), np.uint8), weights=tiny_restore)


def test_weights_of_another_kind_are_refused(tiny_restore, tmp_path):
    with pytest.raises(ValueError, match="not a vae weights file"):
        from codec.heads import vae
        vae.load(tiny_restore)


def test_denoise_and_inpaint_cli(tiny_restore, photo_png, tmp_path):
    out = tmp_path / "clean.png"
    r = CliRunner().invoke(main, ["denoise", str(photo_png), "-o", str(out), "--sigma", "20",
                                  "--weights", str(tiny_restore)])
    assert r.exit_code == 0, r.output
    assert Image.open(out).size == Image.open(photo_png).size
    r = CliRunner().invoke(main, ["denoise", str(photo_png), "-o", str(out), "--weights", str(tiny_restore)])
    assert r.exit_code == 1 and "already exists" in r.stderr
    out2 = tmp_path / "clean2.png"
    r = CliRunner().invoke(main, ["denoise", str(photo_png), "-o", str(out2), "--sigma", "20", "--ensemble", "2",
                                  "--weights", str(tiny_restore)])
    assert r.exit_code == 0 and Image.open(out2).size == Image.open(out).size
    r = CliRunner().invoke(main, ["denoise", str(photo_png), "--ensemble", "3"])
    assert r.exit_code == 2 and "--ensemble" in r.output
    r = CliRunner().invoke(main, ["denoise", str(photo_png), "--sigma", "loud"])
    assert r.exit_code == 2 and "noise level" in r.output
    mask = tmp_path / "mask.png"
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(mask)
    r = CliRunner().invoke(main, ["inpaint", str(photo_png), "--mask", str(mask), "-o", str(tmp_path / "i.png"),
                                  "--weights", str(tiny_restore)])
    assert r.exit_code == 1 and "mask is 5x5" in r.stderr and not (tmp_path / "i.png").exists()


def test_compress_denoise_codes_the_clean_estimate(photo, tmp_path):
    """With the shipped weights: noise costs bits, and --denoise drops it."""
    import json
    rng = np.random.default_rng(0)
    noisy = np.clip(photo + rng.normal(0, 25, photo.shape), 0, 255).round().astype(np.uint8)
    src = tmp_path / "noisy.png"
    Image.fromarray(noisy).save(src)
    plain = CliRunner().invoke(main, ["compress", str(src), "-o", str(tmp_path / "a.aec"), "--json"])
    den = CliRunner().invoke(main, ["compress", str(src), "-o", str(tmp_path / "b.aec"), "--json", "--denoise"])
    assert plain.exit_code == 0 and den.exit_code == 0, den.output
    a, b = json.loads(plain.stdout), json.loads(den.stdout)
    assert b["denoised"] and not a["denoised"]
    assert b["bytes"] < a["bytes"]
    clean = CliRunner().invoke(main, ["decompress", str(tmp_path / "b.aec"), "-o", str(tmp_path / "b.png")])
    assert clean.exit_code == 0
    from codec import io as cio
    back = np.asarray(Image.open(tmp_path / "b.png"))
    assert cio.psnr(back, photo) > cio.psnr(noisy, photo)
