import dataclasses
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

import codec
from codec import container, io, pipeline
from codec.container import ContainerError


def test_round_trip_is_exact(tiny_model, photo):
    res = codec.encode(photo, quality=4, model=tiny_model)
    pic = codec.decode(res.data, model=tiny_model)
    assert np.array_equal(pic.rgb, res.picture.rgb)
    assert res.bpp == pytest.approx(8 * len(res.data) / (96 * 80))
    assert res.psnr == pytest.approx(io.psnr(pic.rgb, photo))


@pytest.mark.parametrize("size", [(1, 1), (1, 70), (65, 3), (64, 64), (130, 67)])
def test_any_size_pads_and_crops(tiny_model, size):
    w, h = size
    a = np.random.default_rng(0).integers(0, 256, (h, w, 3)).astype(np.uint8)
    out = codec.decompress(codec.compress(a, model=tiny_model), model=tiny_model)
    assert out.size == (w, h) and out.mode == "RGB"


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA"])
def test_modes_survive_and_alpha_is_lossless(tiny_model, photo, mode):
    im = Image.fromarray(photo).convert(mode)
    if "A" in mode:
        alpha = Image.fromarray(np.random.default_rng(0).integers(0, 256, photo.shape[:2]).astype(np.uint8))
        im.putalpha(alpha)
    out = codec.decompress(codec.compress(im, model=tiny_model), model=tiny_model)
    assert out.mode == mode and out.size == im.size
    if "A" in mode:
        assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(im.getchannel("A")))


def test_decoding_with_other_weights_names_both(tiny_model, other_model, photo):
    data = codec.compress(photo, model=tiny_model)
    with pytest.raises(pipeline.DecodeError, match="tiny-test.*other-test"):
        codec.decode(data, model=other_model)


def test_unknown_model_in_file_without_weights(tiny_model, photo):
    data = codec.compress(photo, model=tiny_model)
    with pytest.raises(pipeline.DecodeError, match="does not ship"):
        codec.decode(data)


def test_quality_out_of_range(tiny_model, photo):
    with pytest.raises(ValueError, match="between -1 and 8"):
        codec.compress(photo, quality=9, model=tiny_model)
    with pytest.raises(ValueError, match="between -1 and 8"):
        codec.compress(photo, quality=-1.5, model=tiny_model)


def test_qualities_below_one_extrapolate_the_gains(tiny_model, photo):
    from codec.models import interp_levels
    table = torch.tensor([[1.0], [3.0], [4.0]])
    got = interp_levels(table, torch.tensor([0.0, 0.5, 1.0, 2.5, 3.0]))[:, 0].tolist()
    assert got == [-1.0, 0.0, 1.0, 3.5, 4.0]
    net = pipeline.load_model(str(tiny_model)).net
    gm, g0, g1 = (net.gains(torch.tensor([float(q)]))["y"] for q in (-1, 0, 1))
    assert (gm < g0).all() and (g0 < g1).all()  # coarser quantizers than the lowest trained level
    sizes = [len(codec.compress(photo, quality=q, model=tiny_model)) for q in (-1, 0, 1, 8)]
    assert sizes[0] <= sizes[1] <= sizes[2] < sizes[3]
    res = codec.encode(photo, quality=-1, model=tiny_model)
    assert res.header.quality == -1 and np.array_equal(codec.decode(res.data, model=tiny_model).rgb, res.picture.rgb)


def test_target_bpp_is_met(tiny_model, photo):
    lo = codec.encode(photo, quality=1, model=tiny_model).bpp
    hi = codec.encode(photo, quality=8, model=tiny_model).bpp
    target = (lo + hi) / 2
    r = pipeline.encode_target(photo, target_bpp=target, model=tiny_model)
    assert r.bpp <= target and 1 < r.header.quality < 8


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None, "high", True])
def test_a_quality_that_is_not_a_number_is_refused_by_name(tiny_model, photo, bad):
    with pytest.raises(ValueError, match=f"quality must be a number, got {bad!r}"):
        codec.compress(photo, quality=bad, model=tiny_model)


def test_an_unreachable_target_gives_the_nearest_end_and_says_so(tiny_model, photo):
    with pytest.warns(UserWarning, match="no quality reaches 0.0001 bpp: the lowest"):
        r = pipeline.encode_target(photo, target_bpp=1e-4, model=tiny_model)
    assert r.header.quality == -1
    with pytest.warns(UserWarning, match="no quality reaches 99 dB: the highest"):
        r = pipeline.encode_target(photo, target_psnr=99, model=tiny_model)
    assert r.header.quality == 8


def test_the_default_precision_is_fp32_for_a_model_with_a_post_filter(tiny_model, post_model, photo):
    from codec.tiling import native_bf16
    assert codec.encode(photo, quality=4, model=post_model).header.precision == "fp32"
    plain = codec.encode(photo, quality=4, model=tiny_model).header.precision
    assert plain == ("bf16" if native_bf16() else "fp32")


def test_precisions_differ_slightly_and_bad_precision_is_refused(tiny_model, photo):
    a = codec.encode(photo, quality=6, model=tiny_model, precision="fp32")
    b = codec.encode(photo, quality=6, model=tiny_model, precision="bf16")
    assert a.data[:10] == b.data[:10] and a.header.flags == container.FLAG_Y_TABLES | container.FLAG_ROWS
    assert b.header.flags == container.FLAG_BF16 | container.FLAG_Y_TABLES | container.FLAG_ROWS
    diff = np.abs(a.picture.rgb.astype(int) - b.picture.rgb)
    assert diff.max() <= 8 and abs(a.psnr - b.psnr) < 0.2
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        codec.encode(photo, model=tiny_model, precision="fp16")


def test_corrupt_payload_never_decodes_silently(tiny_model, photo):
    data = codec.compress(photo, model=tiny_model)
    bad = bytearray(data)
    bad[-1] ^= 0xFF
    with pytest.raises(ContainerError):
        codec.decode(bytes(bad), model=tiny_model)


DECODE_SCRIPT = textwrap.dedent("""
    import sys, hashlib, torch
    torch.set_num_threads(int(sys.argv[3]))
    import codec
    pic = codec.decode(open(sys.argv[1], "rb").read(), model=sys.argv[2])
    print(hashlib.sha256(pic.rgb.tobytes()).hexdigest())
""")


def decoded_elsewhere(res, model, tmp_path, threads: int) -> bool:
    """Does a fresh process with ``threads`` torch threads decode ``res``
    (an EncodeResult) to exactly its picture?"""
    import hashlib
    f = tmp_path / f"x{threads}.aec"
    f.write_bytes(res.data)
    out = subprocess.run([sys.executable, "-c", DECODE_SCRIPT, str(f), str(model), str(threads)],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip() == hashlib.sha256(res.picture.rgb.tobytes()).hexdigest()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_decoding_in_another_process_is_bit_exact(tiny_model, photo, tmp_path, threads, precision):
    res = codec.encode(photo, quality=6, model=tiny_model, precision=precision)
    assert res.header.precision == precision
    f = tmp_path / "x.aec"
    f.write_bytes(res.data)
    out = subprocess.run([sys.executable, "-c", DECODE_SCRIPT, str(f), str(tiny_model), str(threads)],
                         capture_output=True, text=True, check=True)
    import hashlib
    assert out.stdout.strip() == hashlib.sha256(res.picture.rgb.tobytes()).hexdigest()


from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def valid_file(tiny_model):
    a = np.random.default_rng(5).integers(0, 256, (40, 70, 3)).astype(np.uint8)
    return codec.compress(a, quality=7, model=tiny_model)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, 10**6))
def test_fuzz_decoder_mutations_give_clear_errors(tiny_model, valid_file, edits, cut):
    """Mutated or truncated files either decode to the right size or raise
    one of the library's error types -- never anything else."""
    data = bytearray(valid_file)
    for pos, val in edits:
        data[pos % len(data)] = val
    data = bytes(data[: max(1, cut % (len(data) + 1))])
    try:
        pic = codec.decode(data, model=tiny_model)
    except (ContainerError, pipeline.DecodeError, io.ImageError):
        return
    assert pic.rgb.shape == (40, 70, 3)


@pytest.mark.parametrize("model", ["hyperprior-vr", "binary-hp"])
def test_shipped_default_model_round_trips_across_processes(photo, tmp_path, model):
    """The shipped weights load, code a real photo crop, and decode bit-exactly
    in another process with another thread count (binary-hp: the same weights
    read as a binary latent)."""
    from codec import registry
    if not registry.get(model).path.exists():
        pytest.skip("default weights not installed")
    res = codec.encode(photo, quality=5.5, model=model)
    assert res.header.model == model and res.header.latent_kind == registry.get(model).latent_kind
    f = tmp_path / "x.aec"
    f.write_bytes(res.data)
    import hashlib
    want = hashlib.sha256(res.picture.rgb.tobytes()).hexdigest()
    for threads in (1, 2):
        out = subprocess.run([sys.executable, "-c", DECODE_SCRIPT, str(f), model, str(threads)],
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == want
    assert res.psnr > 20 and res.bpp < 8


def test_files_with_per_symbol_gaussians_still_decode(tiny_model, photo):
    """aecodec 0.1 wrote y under one quantized Gaussian per symbol (flags bit 1 clear)."""
    from codec import tiling
    new = codec.encode(photo, quality=5, model=tiny_model, tile=0)
    lm = pipeline.load_model(tiny_model)
    streams, recon = tiling.encode(lm.net, photo, 5.0, 0, precision=new.header.precision, y_tables=False)
    assert np.array_equal(recon[:80, :96], new.picture.rgb)       # the same latents and pixels...
    assert streams[2] != container.unpack(new.data)[1][2]        # ...coded another way
    old = dataclasses.replace(new.header, flags=new.header.flags & ~container.FLAG_Y_TABLES,
                              stream_lengths=[len(s) for s in streams])
    data = container.pack(old, streams)
    assert np.array_equal(pipeline.decode(data, model=tiny_model).rgb, new.picture.rgb)
