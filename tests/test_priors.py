import numpy as np
import torch

from codec import priors


def test_shipped_y_tables_are_what_the_generator_computes():
    shipped = priors.gaussian_tables()
    made = priors.make_gaussian_tables()
    assert len(shipped) == priors.LEVELS
    for a, b, h in zip(shipped, made, priors.table_halves()):
        assert np.array_equal(a, b)
        assert a.sum() == 2 ** priors.PRECISION and a.min() >= 1 and len(a) == 2 * h + 2
        assert a[h] == a.max()                        # zero is the mode


def test_scale_index_is_bucketize_over_the_table_including_exact_boundaries():
    table = priors.ScaleTable()
    bounds = torch.from_numpy(priors.scale_table()[:-1].copy())
    s = torch.cat([torch.exp(torch.rand(20000, dtype=torch.float64) * 9 - 4), bounds,
                   torch.nextafter(bounds, bounds + 1), torch.nextafter(bounds, bounds - 1),
                   torch.tensor([0.0, -1.0, 1e9, float("inf")], dtype=torch.float64)])
    assert np.array_equal(table.index(s), torch.bucketize(s, bounds).numpy())
    assert table.index(torch.tensor([float("nan")], dtype=torch.float64))[0] == priors.LEVELS - 1
