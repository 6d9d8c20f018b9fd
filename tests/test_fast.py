import torch

from codec.fast import FrozenGDN, SubPixelConv, accelerate
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
