import numpy as np
import pytest
import torch
from PIL import Image

from codec.models import ModelConfig
from codec.training import checkpoint
from codec.training.data import CropSampler, split
from codec.training.loop import TrainConfig, train


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    for i in range(6):
        a = rng.integers(0, 256, (80, 96, 3)).astype(np.uint8)
        Image.fromarray(a).save(d / f"{i}.png")
    return d


def cfg(folder, out, steps):
    return TrainConfig(data=[str(folder)], out=str(out), model=ModelConfig(N=8, M=12), crop=64,
                       batch=2, steps=steps, val_every=2, progress=False, ckpt_every_s=1e9, threads=1)


def test_loss_decreases_on_a_fixed_batch():
    from codec.models import HyperpriorCodec
    from codec.training.losses import rd_loss
    torch.manual_seed(0)
    net = HyperpriorCodec(ModelConfig(N=8, M=12))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.rand(2, 3, 64, 64)
    q = torch.tensor([4.0, 4.0])
    first = None
    for _ in range(30):
        loss = rd_loss(net(x, q), x, net.lmbda(q))["loss"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first


def test_resume_continues_bit_for_bit(folder, tmp_path):
    straight = checkpoint.load(train(cfg(folder, tmp_path / "a", 4), log=lambda *_: None))
    train(cfg(folder, tmp_path / "b", 2), log=lambda *_: None)
    resumed = checkpoint.load(train(cfg(folder, tmp_path / "b", 4), resume=True, log=lambda *_: None))
    assert resumed["step"] == straight["step"] == 4
    for k, v in straight["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    assert (tmp_path / "b" / "log.csv").read_text().count("\n") > 1


def test_checkpoints_load_without_unpickling_code(folder, tmp_path):
    path = train(cfg(folder, tmp_path / "c", 1), log=lambda *_: None)
    torch.load(path, weights_only=True)


def test_resume_refuses_another_architecture(folder, tmp_path):
    train(cfg(folder, tmp_path / "d", 1), log=lambda *_: None)
    other = cfg(folder, tmp_path / "d", 2)
    other.model = ModelConfig(N=8, M=16)
    with pytest.raises(ValueError, match="another model"):
        train(other, resume=True, log=lambda *_: None)


def test_crops_are_reproducible_and_in_range(folder):
    from codec.training.data import list_images, load_uint8
    imgs = [load_uint8(p) for p in list_images([folder])]
    s = CropSampler(imgs, 48)
    a = s.sample(3, torch.Generator().manual_seed(1))
    b = s.sample(3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (3, 3, 48, 48) and 0 <= a.min() and a.max() <= 1


def test_split_holds_out_every_twentieth():
    paths = [f"{i:03d}" for i in range(45)]
    train_, val = split(paths)
    assert val == ["000", "020", "040"] and len(train_) == 42 and not set(val) & set(train_)
