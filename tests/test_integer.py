"""The integer hyper-synthesis: exact integer arithmetic, close to float64."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codec import integer, pipeline, weights
from codec.transforms import hyper_synthesis


@pytest.fixture(scope="module")
def built():
    torch.manual_seed(0)
    h_s = hyper_synthesis(8, 12).eval()
    inputs = [torch.randn(2, 8, 6, 5, dtype=torch.float64) * 3 for _ in range(3)]
    hs_int = integer.IntegerHyperSynthesis(3)
    hs_int.build(h_s, inputs)
    first64 = copy.deepcopy(h_s[0]).double()
    return h_s, hs_int, inputs, lambda x: first64(x)


def test_every_partial_sum_is_an_exact_integer(built):
    h_s, hs_int, _, _ = built
    for k in (1, 2):
        w = getattr(hs_int, f"weight{k}")
        assert w.dtype == torch.int16
        out = 1 if isinstance(h_s[2 * k], torch.nn.ConvTranspose2d) else 0
        l1 = w.abs().sum(dim=tuple(d for d in range(4) if d != out)).double()
        assert (l1 * integer.ACT_MAX < integer.EXACT).all()


def test_float32_integer_convolution_equals_float64_on_any_thread_count(built):
    h_s, hs_int, _, _ = built
    a = torch.randint(-integer.ACT_MAX, integer.ACT_MAX + 1, (1, 12, 9, 11)).float()
    w = hs_int.weight1.float()
    ref = F.conv_transpose2d(a.double(), w.double(), None, 2, 2, 1)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            assert torch.equal(F.conv_transpose2d(a, w, None, 2, 2, 1).double(), ref)
    finally:
        torch.set_num_threads(threads)


def test_integer_h_s_is_close_to_float_h_s(built):
    h_s, hs_int, inputs, first = built
    with torch.no_grad():
        for x in inputs:
            ref = copy.deepcopy(h_s).double()(x)
            got = hs_int(h_s, x, first)
            assert got.dtype == torch.float64
            assert (got - ref).abs().max() < 0.02 * ref.abs().max()


def test_a_model_file_without_integer_layers_decodes_with_float64(tiny_model, photo, tmp_path):
    from safetensors.torch import load_file
    tensors = {k: v for k, v in load_file(str(tiny_model)).items() if not k.startswith("latent.hs_int.")}
    assert len(tensors) < len(load_file(str(tiny_model)))
    old = weights.write_safetensors(tensors, tmp_path / "old.safetensors", weights.file_metadata(tiny_model))
    lm = weights.load(old)
    assert not lm.net.latent.hs_int.ready and weights.load(tiny_model).net.latent.hs_int.ready
    res = pipeline.encode(photo, 4, model=old)
    assert np.array_equal(pipeline.decode(res.data, model=old).rgb, res.picture.rgb)


def test_building_without_data_is_deterministic(tiny_model):
    net = weights.load(tiny_model).net
    net.build_integer_hs()
    first = {k: v.clone() for k, v in net.latent.hs_int.state_dict().items()}
    net.build_integer_hs()
    assert first.keys() == net.latent.hs_int.state_dict().keys() and len(first) == 6
    for k, v in net.latent.hs_int.state_dict().items():
        assert torch.equal(v, first[k]), k


def test_training_drops_the_integer_layers_and_export_rebuilds_them(tiny_model, tmp_path):
    net = weights.load(tiny_model).net
    assert net.latent.hs_int.ready
    net.train()
    assert not net.latent.hs_int.ready                     # h_s is about to change
    with torch.no_grad():
        net.latent.h_s[-1].weight.mul_(1.5)
    net.eval()
    out = weights.save(net, tmp_path / "retrained.safetensors", "tiny-test")
    again = weights.load(out).net
    assert again.latent.hs_int.ready
    assert not torch.equal(again.latent.hs_int.scale2, weights.load(tiny_model).net.latent.hs_int.scale2)


def _small_net(cin=5, hidden=16, seed=1):
    """(3 x 3 conv, LeakyReLU, 1 x 1, LeakyReLU, 1 x 1), as the context model's network."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(cin, hidden, 3, padding=1), torch.nn.LeakyReLU(),
                               torch.nn.Conv2d(hidden, hidden, 1), torch.nn.LeakyReLU(),
                               torch.nn.Conv2d(hidden, 4, 1)).eval()


def test_integer_net_quantizes_its_input_too_and_stays_close():
    """IntegerNet: every layer on integers, the input included."""
    net = _small_net()
    inputs = [torch.randn(2, 5, 7, 9, dtype=torch.float64) * 4 for _ in range(3)]
    inet = integer.IntegerNet(3)
    inet.build(net, inputs)
    assert inet.ready and all(getattr(inet, f"weight{k}").dtype == torch.int16 for k in range(3))
    convs = list(net)[0::2]
    with torch.no_grad():
        for x in inputs:
            ref = copy.deepcopy(net).double()(x)
            got = inet(x, convs)
            assert got.dtype == torch.float64
            assert (got - ref).abs().max() < 0.03 * ref.abs().max()


def _same_on_1_and_2_threads(run) -> bool:
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(run())
        return torch.equal(outs[0], outs[1])
    finally:
        torch.set_num_threads(threads)


def test_integer_net_gives_the_same_bits_on_any_thread_count():
    net = _small_net()
    x = torch.randn(1, 5, 40, 40, dtype=torch.float64) * 4
    inet = integer.IntegerNet(3)
    inet.build(net, [x])
    assert _same_on_1_and_2_threads(lambda: inet(x, list(net)[0::2]))


def test_integer_net_saves_nothing_until_built():
    inet = integer.IntegerNet(3)
    assert not inet.ready and inet.state_dict() == {}
    inet.load_state_dict({})                                 # a file without it loads
    assert not inet.ready


def _wide_net():
    """A first layer as wide as the context model's: 3 x 3 over 480 channels."""
    return _small_net(480, 24, seed=2)


def test_wide_layers_keep_the_weights_precise_where_one_float32_budget_cannot():
    net = _wide_net()
    inputs = [torch.randn(2, 480, 6, 6, dtype=torch.float64) * 4 for _ in range(2)]
    errors = {}
    for wide in (False, True):
        inet = integer.IntegerNet(3)
        inet.build(net, inputs, wide_taps=integer.WIDE_TAPS if wide else None)
        w0 = inet.weight0
        assert w0.dtype == torch.int16 and integer.is_wide(w0) == wide == inet.wide(0)
        assert not inet.wide(1)                                 # 24 inputs per output: one budget
        sums = [w0[:, g].abs().sum(dim=(1, 2, 3)).double() * integer.ACT_MAX
                for g in ([slice(c, c + integer.GROUP) for c in range(0, 480, integer.GROUP)] if wide else [slice(None)])]
        assert all((s < integer.EXACT).all() for s in sums)     # each group's sums exact in float32
        with torch.no_grad():
            x = inputs[0]
            errors[wide] = float((inet(x, list(net)[0::2]) - copy.deepcopy(net).double()(x)).abs().max())
    assert errors[True] < errors[False] / 3


def test_a_wide_layer_gives_the_same_integers_in_any_order_and_on_any_thread_count():
    net = _wide_net()
    x = torch.randn(1, 480, 12, 12, dtype=torch.float64) * 4
    inet = integer.IntegerNet(3)
    inet.build(net, [x])
    conv = list(net)[0]
    whole = inet.first_sum(x, conv)
    a = integer.quantize_input(x, inet.act0).double()
    assert whole.dtype == torch.float64 and torch.equal(whole, F.conv2d(a, inet.weight0.double(), None, 1, 1))
    assert inet.wide(0)                                      # its sums may pass float32's exact integers
    # split across groups, as the context model's passes split it
    picked = torch.tensor([3, 70, 71, 300])
    rest = torch.tensor([c for c in range(480) if c not in picked.tolist()])
    parts = inet.first_sum(x[:, picked], conv, picked) + inet.first_sum(x[:, rest], conv, rest)
    assert torch.equal(parts, whole)
    assert torch.equal(inet.first_sum(x[:, :200], conv, slice(0, 200)) + inet.first_sum(x[:, 200:], conv, slice(200, None)),
                       whole)
    assert _same_on_1_and_2_threads(lambda: inet(x, list(net)[0::2]))


def test_integer_net_refuses_transposed_convolutions():
    net = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 4, 3), torch.nn.LeakyReLU(), torch.nn.Conv2d(4, 2, 1))
    with pytest.raises(ValueError, match="transposed"):
        integer.IntegerNet(2).build(net, [torch.randn(1, 4, 5, 5, dtype=torch.float64)])
