import numpy as np
import torch

from codec.heads.views import SYMMETRIES, turn, turn_back


def test_the_eight_symmetries_are_distinct_and_turn_back():
    a = np.arange(12).reshape(3, 4)
    seen = set()
    for k, flip in SYMMETRIES:
        t = turn(a, k, flip)
        seen.add(t.tobytes() + bytes(t.shape))
        assert np.array_equal(turn_back(t, k, flip), a)
    assert len(seen) == 8
    assert all(k in (0, 2) for k, _ in SYMMETRIES[:4])      # the first four keep the shape


def test_numpy_and_torch_agree_on_any_axes():
    a = np.random.default_rng(0).random((2, 3, 5, 6)).astype(np.float32)
    for k, flip in SYMMETRIES:
        t = turn(torch.from_numpy(a), k, flip, (2, 3))
        assert np.array_equal(t.numpy(), turn(a, k, flip, (2, 3)))
        assert torch.equal(turn_back(t, k, flip, (2, 3)), torch.from_numpy(a))
    hw3 = a[0].transpose(1, 2, 0)                                 # (H, W, C): rows and columns first
    assert np.array_equal(turn(hw3, 1, True), turn(a[0], 1, True, (1, 2)).transpose(1, 2, 0))
