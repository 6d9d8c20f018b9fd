import pytest
import torch

from codec.models import HyperpriorCodec, ModelConfig


def tiny(seed=0):
    torch.manual_seed(seed)
    net = HyperpriorCodec(ModelConfig(N=8, M=12))
    with torch.no_grad():
        net.log_gain.add_(1.5)
        net.log_inv_gain.sub_(1.5)
    net.eval()
    net.update_tables()
    return net


def test_compression_consistent_with_quantization():
    """compress's y_hat is round(y - mean) + mean with the hyper-decoder's means."""
    net = tiny()
    x = torch.rand(1, 3, 64, 128)
    g = net.gains(torch.tensor([5.0]))
    y = net.g_a(x) * g["y"]
    strings, y_hat = net.latent.compress(y, g["z"], g["z_inv"])
    z_hat = net.latent.z.decompress(strings[0], (8, 1, 2))
    scales, means = net.latent._params64(z_hat, g["z_inv"])
    assert torch.equal(y_hat, torch.round(y.double() - means) + means)
    assert torch.equal(net.latent.decompress(strings, (8, 1, 2), g["z_inv"]), y_hat)


def _rgb(h, w):
    return (torch.rand(h, w, 3) * 255).round().to(torch.uint8).numpy()


def test_decompress_reproduces_compress_exactly():
    from codec import tiling
    net = tiny()
    rgb = _rgb(128, 64)
    for q in (1.0, 2.5, 8.0):
        strings, recon = tiling.encode(net, rgb, q, 0)
        assert (tiling.decode(net, strings, 128, 64, q, 0, 128, 64) == recon).all()


def test_higher_quality_spends_more_bits():
    from codec import tiling
    net = tiny()
    rgb = _rgb(64, 64)
    sizes = [sum(map(len, tiling.encode(net, rgb, q, 0)[0])) for q in (1.0, 8.0)]
    assert sizes[0] < sizes[1]


def test_fractional_quality_interpolates_gains():
    net = tiny()
    g1, g2, g15 = (net.gains(torch.tensor([q]))["y"] for q in (1.0, 2.0, 1.5))
    assert torch.allclose(g15, (g1 * g2).sqrt())


def test_training_forward_gives_likelihoods_in_unit_interval():
    net = tiny().train()
    out = net(torch.rand(2, 3, 64, 64), torch.tensor([1.0, 8.0]))
    for lik in out["likelihoods"].values():
        assert (lik > 0).all() and (lik <= 1).all()
    assert out["x_hat"].shape == (2, 3, 64, 64)


def _symbols(seed=0, n=6000):
    import numpy as np
    from codec.priors import scale_table
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, 64, n).astype(np.int32)
    sym = np.clip(np.round(rng.normal(0, scale_table()[idx])), -4095, 4095).astype(np.int32)
    sym[::211] = rng.integers(-4095, 4096, len(sym[::211]))   # escapes beyond most tables
    return sym, idx


def test_binarized_symbols_round_trip_with_escapes_and_all_zero():
    import numpy as np
    from codec.latent_codecs import decode_binarized, encode_binarized
    sym, idx = _symbols()
    data, raw = encode_binarized(sym, idx)
    assert np.array_equal(decode_binarized(data, idx), sym)
    zeros = np.zeros(500, np.int32)
    data0, raw0 = encode_binarized(zeros, idx[:500])
    assert np.array_equal(decode_binarized(data0, idx[:500]), zeros) and raw0 == 500
    assert np.array_equal(decode_binarized(encode_binarized(zeros[:0], idx[:0])[0], idx[:0]), zeros[:0])


def test_binarized_coding_costs_what_the_tables_cost_and_less_than_its_raw_bits():
    import numpy as np
    from codec import coding
    from codec.latent_codecs import _y_models, encode_binarized
    from codec.priors import scale_table
    rng = np.random.default_rng(1)
    idx = rng.integers(5, 40, 40000).astype(np.int32)
    sym = np.round(rng.normal(0, scale_table()[idx])).astype(np.int32)
    data, raw = encode_binarized(sym, idx)
    models, halves = _y_models()
    tables = coding.encode_grouped(sym + halves[idx], idx, models, 2 * halves + 1, np.zeros(0, np.int32), 8191)
    assert abs(len(data) / len(tables) - 1) < 0.01
    assert 8 * len(data) < 0.8 * raw          # predictable bits cost less than a bit each


def test_binarized_codec_on_the_scalar_weights_gives_the_scalar_pixels(tmp_path):
    import numpy as np
    from codec import pipeline, weights
    net = tiny()
    f = weights.save(net, tmp_path / "t.safetensors", "t")
    scalar = weights.load(f)
    binary = weights.load(f, arch="binarized-hyperprior", model_id="t-bits")
    assert binary.net.latent_kind == "binary" and binary.weights_hash == scalar.weights_hash
    img = (np.random.default_rng(2).random((48, 80, 3)) * 255).astype(np.uint8)
    a = pipeline.encode(img, 3, model=scalar)
    b = pipeline.encode(img, 3, model=binary)
    assert np.array_equal(a.picture.rgb, b.picture.rgb) and b.header.latent_kind == "binary"
    assert abs(len(a.data) - len(b.data)) <= 0.02 * len(a.data) + 16
    assert np.array_equal(pipeline.decode(b.data, model=binary).rgb, b.picture.rgb)
    with pytest.raises(pipeline.DecodeError, match="made by model 't-bits'"):
        pipeline.decode(b.data, model=scalar)


def test_binarized_decoder_on_garbage_ends_with_symbols_or_a_coding_error():
    import numpy as np
    from codec import coding
    from codec.latent_codecs import decode_binarized
    rng = np.random.default_rng(7)
    idx = rng.integers(0, 64, 400).astype(np.int32)
    for n in (0, 1, 5, 40, 400):
        data = rng.integers(0, 256, 4 * n, dtype=np.uint8).tobytes()
        try:
            sym = decode_binarized(data, idx)
        except coding.CodingError:
            continue
        assert sym.shape == (400,) and sym.dtype == np.int32
