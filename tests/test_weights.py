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
