"""The autoencoder backbone shared by every codec and head.

Analysis/synthesis transforms of Ballé et al. 2018 ("Variational image
compression with a scale hyperprior", ICLR) with the mean-scale hyper
transforms of Minnen et al. 2018 ("Joint autoregressive and hierarchical
priors", NeurIPS), built from CompressAI's layers::

    x (3, H, W) --g_a--> y (M, H/16, W/16) --h_a--> z (N, H/64, W/64)
    x_hat      <--g_s--  y_hat              <--h_s-- z_hat
                                   (h_s gives the means and scales of y)

``N`` is the width of the hidden layers, ``M`` the number of latent channels.
"""

from __future__ import annotations

from torch import nn

from . import _compressai  # noqa: F401  (light import of compressai; see there)
from compressai.layers import GDN  # noqa: E402


def conv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.Conv2d:
    """Same-padded convolution (as ``compressai.models.utils.conv``, whose
    package import would load CompressAI's whole model zoo)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2)


def deconv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution that multiplies the size by ``stride`` exactly."""
    return nn.ConvTranspose2d(in_ch, out_ch, kernel_size, stride=stride,
                              output_padding=stride - 1, padding=kernel_size // 2)


#: Total down-sampling of g_a followed by h_a: images are padded to this.
STRIDE = 64


def analysis(N: int, M: int, in_ch: int = 3) -> nn.Sequential:
    """g_a: four stride-2 5x5 convolutions with GDN between them."""
    return nn.Sequential(
        conv(in_ch, N), GDN(N),
        conv(N, N), GDN(N),
        conv(N, N), GDN(N),
        conv(N, M),
    )


def synthesis(N: int, M: int, out_ch: int = 3) -> nn.Sequential:
    """g_s: the mirror of g_a with inverse GDN."""
    return nn.Sequential(
        deconv(M, N), GDN(N, inverse=True),
        deconv(N, N), GDN(N, inverse=True),
        deconv(N, N), GDN(N, inverse=True),
        deconv(N, out_ch),
    )


def hyper_analysis(N: int, M: int) -> nn.Sequential:
    """h_a: y -> z, two stride-2 convolutions (Minnen 2018)."""
    return nn.Sequential(
        conv(M, N, stride=1, kernel_size=3), nn.LeakyReLU(inplace=True),
        conv(N, N, stride=2, kernel_size=5), nn.LeakyReLU(inplace=True),
        conv(N, N, stride=2, kernel_size=5),
    )


def hyper_synthesis(N: int, M: int) -> nn.Sequential:
    """h_s: z_hat -> (scales, means) of y, 2*M channels (Minnen 2018)."""
    return nn.Sequential(
        deconv(N, M, stride=2, kernel_size=5), nn.LeakyReLU(inplace=True),
        deconv(M, M * 3 // 2, stride=2, kernel_size=5), nn.LeakyReLU(inplace=True),
        conv(M * 3 // 2, M * 2, stride=1, kernel_size=3),
    )
