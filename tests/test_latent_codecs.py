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
