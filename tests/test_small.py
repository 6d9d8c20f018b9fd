import numpy as np
import torch

from codec.small import metrics
from codec.small.data import augment, digits, grid_image
from codec.small.generative import GenConfig, Prior, train_aae, train_vae
from codec.small.onehot import OneHotConfig, train_onehot


def test_cluster_accuracy_is_invariant_to_relabelling():
    y = np.repeat(np.arange(10), 5)
    perm = np.random.default_rng(0).permutation(10)
    assert metrics.cluster_accuracy(y, perm[y], 10) == 1.0
    half = y.copy()
    half[::2] = 0
    assert metrics.cluster_accuracy(y, half, 10) < 1.0
    assert metrics.nmi(y, perm[y]) == 1.0


def test_digits_split_and_augment():
    xtr, ytr, xte, yte = digits()
    assert xtr.shape[1] == 64 and 0 <= xtr.min() and xtr.max() <= 1
    assert len(xtr) + len(xte) == 1797 and set(ytr) == set(range(10))
    a = augment(xtr[:5], torch.Generator().manual_seed(0))
    assert a.shape == (5, 64) and not torch.equal(a, xtr[:5])
    assert grid_image(xtr[:6], 2, 3, 2).shape == (40, 60)


def test_onehot_codes_are_one_hot_and_decode():
    xtr, *_ = digits()
    m, loss = train_onehot(xtr, OneHotConfig(steps=30, k=12))
    assert np.isfinite(loss)
    c = m.cluster(xtr[:50])
    assert c.min() >= 0 and c.max() < 12
    assert m.prototypes().shape == (12, 64)


def test_style_critic_trains_beside_the_autoencoder():
    xtr, *_ = digits()
    m, _ = train_onehot(xtr, OneHotConfig(steps=20, style=4, adversary=1.0))
    assert m.critic is not None
    _, style = m.encode(xtr[:3])
    assert style.shape == (3, 4)


def test_generators_sample_digit_shaped_images():
    xtr, ytr, *_ = digits()
    g = torch.Generator().manual_seed(0)
    for model in (train_vae(xtr, GenConfig(steps=20)), train_aae(xtr, GenConfig(steps=20, prior="mixture"))):
        s = model.sample(7, g)
        assert s.shape == (7, 64) and 0 <= s.min() and s.max() <= 1
    q = metrics.DigitClassifier(xtr, ytr).sample_quality(xtr[:100])
    assert q["confident_share"] > 0.5 and q["class_entropy_bits"] > 2.5


def test_mixture_prior_has_ten_separated_modes():
    p = Prior("mixture", 8)
    z = p.sample(2000, torch.Generator().manual_seed(0))
    d = torch.cdist(z, p.means).argmin(1)
    assert len(torch.unique(d)) == 10
