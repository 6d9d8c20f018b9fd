import torch

from codec.fast import FrozenGDN, SubPixelConv, TwoWay, accelerate, run_rows
from codec.tiling import ROWS_MARGIN
from codec.transforms import analysis, synthesis


def test_subpixel_conv_is_the_same_linear_map_as_the_transposed_conv():
    torch.manual_seed(0)
    d = torch.nn.ConvTranspose2d(6, 3, 5, stride=2, padding=2, output_padding=1)
    x = torch.randn(2, 6, 7, 9)
    assert torch.allclose(SubPixelConv(d)(x), d(x), atol=1e-5)


def _perturbed(t):
    """``t`` with its weights moved off their initial values (GDN's start as the identity)."""
    with torch.no_grad():
        for p in t.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return t


def test_accelerated_transforms_match_the_training_ones():
    torch.manual_seed(0)
    for t, shape in ((synthesis(8, 12), (1, 12, 4, 6)), (analysis(8, 12), (1, 3, 64, 96))):
        _perturbed(t)
        x = torch.randn(shape).abs()
        with torch.no_grad():
            assert torch.allclose(accelerate(t)(x), t(x), atol=1e-4)
    assert any(isinstance(m, FrozenGDN) for m in accelerate(synthesis(8, 12)))


def test_two_way_split_is_the_same_map_and_the_same_bits_on_one_or_two_threads():
    torch.manual_seed(0)
    t = _perturbed(synthesis(8, 12))
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 5e-2)):
        fast = accelerate(t).to(dtype)
        for h, w in ((5, 7), (1, 3), (2, 2)):  # the row halves of GDN and the last layer, odd and tiny
            x = torch.randn(1, 12, h, w).abs().to(dtype).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                one, two = TwoWay(fast)(x), TwoWay(fast)(x, parallel=True)
                assert one.shape == (1, 3, 16 * h, 16 * w) and torch.equal(one, two)
                assert torch.allclose(one.float(), t(x.float()), atol=tol)


def _threads(n, fn):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)


def test_row_parts_give_the_same_bits_on_one_or_two_threads_and_no_seam():
    torch.manual_seed(0)
    t = _perturbed(synthesis(8, 12))
    fast = accelerate(t)
    for h in (1, 2, 5, 8):  # a cut at the top (one row: run whole), odd and even heights
        x = torch.randn(1, 12, h, 7).abs().contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            one = _threads(1, lambda: run_rows(fast, x, h // 2, ROWS_MARGIN, 16))
            two = _threads(2, lambda: run_rows(fast, x, h // 2, ROWS_MARGIN, 16))
            assert one.shape == (1, 3, 16 * h, 16 * 7) and torch.equal(one, two)
            # the margin holds g_s's whole receptive field: the parts join into the whole map
            assert torch.allclose(one, fast(x), atol=1e-5)
    with torch.inference_mode():  # one latent row less, and the cut shows
        seam = run_rows(fast, x, 4, ROWS_MARGIN - 1, 16)
    assert not torch.allclose(seam, fast(x), atol=1e-3)
