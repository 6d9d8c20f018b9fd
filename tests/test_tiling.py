import numpy as np
import pytest

import codec
from codec import pipeline, tiling


@pytest.fixture(scope="module")
def big(photo):
    """A 150x200 image: with 64-pixel tiles, a 3x4 grid with ragged edges."""
    return np.tile(photo, (2, 3, 1))[:150, :200].copy()


def test_rects_cover_the_image_once():
    rs = tiling.rects(192, 256, 128)
    cover = np.zeros((192, 256), int)
    for t, l, h, w in rs:
        cover[t:t + h, l:l + w] += 1
    assert (cover == 1).all() and len(rs) == 4
    assert tiling.rects(100, 70, 0) == [(0, 0, 100, 70)]


def test_tiled_round_trip_is_exact(tiny_model, big):
    res = pipeline.encode(big, 5, tiny_model, tile=64)
    assert res.header.tile == 1 and len(res.header.stream_lengths) == 2 + 12
    assert np.array_equal(codec.decode(res.data, model=tiny_model).rgb, res.picture.rgb)


def test_tiles_leave_no_seams(tiny_model, big):
    """Context margins make tiled coding equal whole-image coding up to rounding."""
    whole = pipeline.encode(big, 5, tiny_model, tile=0).picture.rgb.astype(int)
    tiled = pipeline.encode(big, 5, tiny_model, tile=64).picture.rgb.astype(int)
    assert np.abs(whole - tiled).max() <= 1
    assert (whole != tiled).mean() < 0.01


def test_region_decode_equals_the_crop_of_a_full_decode(tiny_model, big):
    data = pipeline.encode(big, 5, tiny_model, tile=64).data
    full = codec.decode(data, model=tiny_model).rgb
    part = pipeline.decode(data, tiny_model, region=(70, 10, 50, 40))
    assert np.array_equal(part.rgb, full[10:50, 70:120])
    with pytest.raises(ValueError, match="not inside"):
        pipeline.decode(data, tiny_model, region=(190, 0, 20, 10))


def test_bad_tile_size_is_refused(tiny_model, big):
    with pytest.raises(ValueError, match="multiple of 64"):
        pipeline.encode(big, 5, tiny_model, tile=100)


def test_synthesis_output_is_what_a_one_tile_decode_rounds(context_model, big):
    """The post-filter's training bank (tiling.synthesis_output) holds g_s's
    output for exactly the latent the decoder rebuilds, context model included."""
    from codec import weights
    net = weights.load(context_model).net
    out = tiling.synthesis_output(net, big, 4.5, y_context=True)
    _, recon = tiling.encode(net, big, 4.5, 0, y_context=True)
    assert out.shape[-2:] == recon.shape[:2] and out.dtype.is_floating_point
    assert np.array_equal(tiling._to_uint8(out.clamp(0, 1)), recon)
    _, plain = tiling.encode(net, big, 4.5, 0, y_context=False)
    assert not np.array_equal(plain, recon)  # the context model moves the latent g_s sees
