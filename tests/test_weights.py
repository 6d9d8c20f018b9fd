import torch

from codec import weights
from codec.models import HyperpriorCodec, ModelConfig


def test_save_load_round_trip_keeps_config_and_tables(tmp_path):
    torch.manual_seed(0)
    net = HyperpriorCodec(ModelConfig(N=8, M=12)).eval()
    p = weights.save(net, tmp_path / "m.safetensors", "m-test", {"steps": 3})
    lm = weights.load(p)
    assert lm.model_id == "m-test" and lm.meta == {"steps": 3} and lm.config == net.cfg
    eb_a = net.latent.z.entropy_bottleneck
    eb_b = lm.net.latent.z.entropy_bottleneck
    assert torch.equal(eb_a._quantized_cdf, eb_b._quantized_cdf)
    # fp16 storage: the loaded weights equal the fp16-rounded originals
    assert torch.equal(lm.net.g_a[0].weight, net.g_a[0].weight.half().float())
    assert lm.weights_hash == weights.file_hash(p) and len(lm.weights_hash) == 8


def test_identical_weights_give_identical_hashes(tmp_path):
    torch.manual_seed(0)
    net = HyperpriorCodec(ModelConfig(N=8, M=12)).eval()
    a = weights.save(net, tmp_path / "a.safetensors", "x")
    b = weights.save(net, tmp_path / "b.safetensors", "x")
    assert weights.file_hash(a) == weights.file_hash(b)


def test_fp16_file_keeps_the_architectures_constant_bounds(tmp_path):
    """fp16 rounds CompressAI's likelihood bound (1e-9) and GDN's pedestal to 0;
    a loaded model keeps its own values, so training from a shipped file
    cannot reach -log2(0)."""
    net = HyperpriorCodec(ModelConfig(N=8, M=12)).eval()
    lm = weights.load(weights.save(net, tmp_path / "m.safetensors", "m"))
    own, got = net.state_dict(), lm.net.state_dict()
    constants = [k for k in own if k.endswith(weights._CONSTANTS)]
    assert any(k.endswith("likelihood_lower_bound.bound") for k in constants)
    assert any(k.endswith(".pedestal") for k in constants)
    for k in constants:
        assert torch.equal(got[k], own[k]), k
    assert float(lm.net.latent.y.gaussian.likelihood_lower_bound.bound) > 0
