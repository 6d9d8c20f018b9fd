import dataclasses

import numpy as np
import pytest

import codec
from codec import container, fast, pipeline, tiling


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


def test_files_split_by_channels_still_decode_that_way(post_model, big, monkeypatch):
    """Files written before flags bit 4 ran the synthesis layer by layer on
    halves of the channels; they decode that way, new files by row parts."""
    new = pipeline.encode(big, 5, post_model, tile=64, post_views=1)   # views need the row split
    assert new.header.split == "rows" and new.header.flags & container.FLAG_ROWS
    net = pipeline.load_model(post_model).net
    streams, recon = tiling.encode(net, big, 5.0, 64, precision=new.header.precision, y_tables=True,
                                   post=True, split="channels")
    recon = recon[:150, :200]
    new_streams = container.unpack(new.data)[1]
    assert streams[0] == new_streams[0] and streams[2:] == new_streams[2:]  # the same latents
    assert np.abs(recon.astype(int) - new.picture.rgb).max() <= 1          # the same map, other rounding
    old = dataclasses.replace(new.header, flags=new.header.flags & ~container.FLAG_ROWS,
                              recon_crc=tiling.crc_rows(recon), stream_lengths=[len(s) for s in streams])
    data = container.pack(old, streams)

    def no_rows(*args, **kwargs):
        raise AssertionError("cut into rows")
    monkeypatch.setattr(fast, "run_rows", no_rows)
    assert np.array_equal(pipeline.decode(data, post_model).rgb, recon)
    with pytest.raises(AssertionError, match="cut into rows"):
        pipeline.decode(new.data, post_model)
    with pytest.raises(ValueError, match="split must be one of"):
        tiling.encode(net, big, 5.0, 64, split="columns")
