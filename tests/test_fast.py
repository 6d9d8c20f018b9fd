import torch

from codec.fast import FrozenGDN, SubPixelConv, TwoWay, accelerate
from codec.transforms import analysis, synthesis


def test_subpixel_conv_is_the_same_linear_map_as_the_transposed_conv():
    torch.manual_seed(0)
    d = torch.nn.ConvTranspose2d(6, 3, 5, stride=2, padding=2, output_padding=1)
    x = torch.randn(2, 6, 7, 9)
    assert torch.allclose(SubPixelConv(d)(x), d(x), atol=1e-5)


def test_accelerated_transforms_match_the_training_ones():
    torch.manual_seed(0)
    for t, shape in ((synthesis(8, 12), (1, 12, 4, 6)), (analysis(8, 12), (1, 3, 64, 96))):
        with torch.no_grad():
            for p in t.parameters():
                p.add_(0.05 * torch.randn_like(p))
        x = torch.randn(shape).abs()
        with torch.no_grad():
            assert torch.allclose(accelerate(t)(x), t(x), atol=1e-4)
    assert any(isinstance(m, FrozenGDN) for m in accelerate(synthesis(8, 12)))


def test_two_way_split_is_the_same_map_and_the_same_bits_on_one_or_two_threads():
    torch.manual_seed(0)
    t = synthesis(8, 12)
    with torch.no_grad():
        for p in t.parameters():
            p.add_(0.05 * torch.randn_like(p))
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 5e-2)):
        fast = accelerate(t).to(dtype)
        for h, w in ((5, 7), (1, 3), (2, 2)):  # the row halves of GDN and the last layer, odd and tiny
            x = torch.randn(1, 12, h, w).abs().to(dtype).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                one, two = TwoWay(fast)(x), TwoWay(fast)(x, parallel=True)
                assert one.shape == (1, 3, 16 * h, 16 * w) and torch.equal(one, two)
                assert torch.allclose(one.float(), t(x.float()), atol=tol)
