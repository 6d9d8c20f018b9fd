import numpy as np
import pytest
import torch
from PIL import Image

from codec.models import ModelConfig
from codec.training import checkpoint
from codec.training.data import CropSampler, list_images, load_uint8, split
from codec.training.loop import TrainConfig, train


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    for i in range(6):
        a = rng.integers(0, 256, (80, 96, 3)).astype(np.uint8)
        Image.fromarray(a).save(d / f"{i}.png")
    return d


def cfg(folder, out, steps, **kw):
    return TrainConfig(data=[str(folder)], out=str(out), model=ModelConfig(N=8, M=12), crop=64,
                       batch=2, steps=steps, val_every=2, progress=False, ckpt_every_s=1e9, threads=1, **kw)


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


def test_bf16_on_the_cpu_runs_the_transforms_in_bf16_and_trains_fp32_weights():
    from codec.models import HyperpriorCodec
    from codec.training.loop import _optimizers, train_step
    torch.manual_seed(0)
    net = HyperpriorCodec(ModelConfig(N=8, M=12)).to(memory_format=torch.channels_last)
    opt, aux_opt = _optimizers(net, TrainConfig())
    seen = []
    net.g_a[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x, q = torch.rand(2, 3, 64, 64), torch.tensor([2.0, 6.0])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    losses = [train_step(net, net, opt, aux_opt, x, q, 1.0, bf16=True)[0]["loss"].item() for _ in range(20)]
    assert seen[0] == torch.bfloat16 and all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert all(v.dtype == before[k].dtype for k, v in net.state_dict().items())
    assert not torch.equal(net.g_a[0].weight, before["g_a.0.weight"])
    seen.clear()
    train_step(net, net, opt, aux_opt, x, q, 1.0)
    assert seen[0] == torch.float32   # off unless asked (on the CPU)


@pytest.mark.parametrize("bf16", [False, True])
def test_resume_continues_bit_for_bit(folder, tmp_path, bf16):
    straight = checkpoint.load(train(cfg(folder, tmp_path / "a", 4, bf16=bf16), log=lambda *_: None))
    train(cfg(folder, tmp_path / "b", 2, bf16=bf16), log=lambda *_: None)
    resumed = checkpoint.load(train(cfg(folder, tmp_path / "b", 4, bf16=bf16), resume=True, log=lambda *_: None))
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


def test_crop_must_fit_the_stride(folder, tmp_path):
    tc = cfg(folder, tmp_path / "e", 1)
    tc.crop = 48
    with pytest.raises(ValueError, match="multiple of 64"):
        train(tc, log=lambda *_: None)


def test_split_holds_out_every_twentieth():
    paths = [f"{i:03d}" for i in range(45)]
    train_, val = split(paths)
    assert val == ["000", "020", "040"] and len(train_) == 42 and not set(val) & set(train_)


def test_pack_cli_writes_and_refuses_to_overwrite(folder, tmp_path):
    from click.testing import CliRunner

    from cli.main import main
    out = tmp_path / "p.safetensors"
    r = CliRunner().invoke(main, ["pack", str(folder), "-o", str(out)])
    assert r.exit_code == 0 and out.exists(), r.output
    before = out.read_bytes()
    r = CliRunner().invoke(main, ["pack", str(folder), "-o", str(out)])
    assert r.exit_code == 1 and "--force" in r.output and out.read_bytes() == before
    r = CliRunner().invoke(main, ["pack", str(folder), "-o", str(out), "--short-side", "40", "-f"])
    assert r.exit_code == 0 and out.read_bytes() != before  # images re-encoded at a 40-pixel short side


def test_pack_sampler_trains_without_image_folders(folder, tmp_path):
    from codec.training.pack import PackSampler, make_pack
    p = make_pack([folder], tmp_path / "pack.safetensors")
    s = PackSampler(p, 64)
    x = s.sample(4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 3, 64, 64) and 0 <= x.min() and x.max() <= 1
    # the pack's sampler draws exactly the crops training from the folder draws
    images = [load_uint8(q) for q in split(list_images([folder]))[0]]
    assert torch.equal(x, CropSampler(images, 64).sample(4, torch.Generator().manual_seed(0)))
    assert len(s.val) == len(split(list_images([folder]))[1])
    tc = cfg(folder, tmp_path / "run", 2)
    tc.data, tc.pack = [], str(p)
    assert checkpoint.load(train(tc, log=lambda *_: None))["step"] == 2


def test_ddp_on_cpu_with_two_processes(folder, tmp_path):
    import socket
    import subprocess
    import sys
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(port),
           "-m", "cli.main", "train", str(folder), "--out", str(out), "--N", "8", "--M", "12",
           "--crop", "64", "--batch", "2", "--steps", "3", "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    st = checkpoint.load(checkpoint.latest(out))
    assert st["step"] == 3 and len(st["gens"]) == 2
    assert not torch.equal(st["gens"][0], st["gens"][1])  # each rank draws its own crops


def test_compact_checkpoint_resumes_the_run(folder, tmp_path):
    from codec.training.compact import save_compact
    full = checkpoint.load(train(cfg(folder, tmp_path / "f", 2), log=lambda *_: None))
    run2 = tmp_path / "g"
    paths = save_compact(full, run2 / "compact", cap=20_000)
    assert len(paths) > 1 and all(p.stat().st_size < 40_000 for p in paths)
    st = checkpoint.load(checkpoint.latest(run2))
    assert st["step"] == 2
    for k, v in full["model"].items():
        expect = v.half().float() if v.is_floating_point() else v
        assert torch.equal(st["model"][k], expect), k
    resumed = checkpoint.load(train(cfg(folder, run2, 4), resume=True, log=lambda *_: None))
    assert resumed["step"] == 4
    # a compact folder exports like a checkpoint file; another folder is refused in one line
    from click.testing import CliRunner

    from cli.main import main
    from codec import weights
    r = CliRunner().invoke(main, ["export", str(run2 / "compact"), "-o", str(tmp_path / "c.safetensors"),
                                  "--id", "c"])
    assert r.exit_code == 0, r.output
    assert weights.load(tmp_path / "c.safetensors").meta["steps"] == 2
    r = CliRunner().invoke(main, ["export", str(tmp_path), "-o", str(tmp_path / "d.safetensors"), "--id", "d"])
    assert r.exit_code == 1 and "not a compact checkpoint" in r.output and len(r.output.splitlines()) == 1


def _fit(folder, out, steps, resume):
    from codec.heads.restore import RestoreConfig, RestoreNet
    from codec.training.heads import HeadTrainConfig, fit, restore_loss
    torch.manual_seed(0)
    net = RestoreNet(RestoreConfig((4, 8, 8, 8)))
    tc = HeadTrainConfig(data=[str(folder)], out=str(out), crop=32, batch=2, steps=steps,
                         ckpt_every_s=1e9, log_every=1)
    return fit(net, restore_loss, tc, resume=resume, log=lambda *_: None)


def test_head_training_resumes_bit_for_bit(folder, tmp_path):
    straight = checkpoint.load(_fit(folder, tmp_path / "a", 4, False))
    _fit(folder, tmp_path / "b", 2, False)
    resumed = checkpoint.load(_fit(folder, tmp_path / "b", 4, True))
    assert resumed["step"] == straight["step"] == 4
    for k, v in straight["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    header = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert header[0].startswith("step,time,lr,loss") and len(header) == 5


def test_train_head_cli_then_export(folder, tmp_path):
    from click.testing import CliRunner

    from cli.main import main
    from codec.heads import vae
    r = CliRunner().invoke(main, ["train-head", "vae", str(folder), "--out", str(tmp_path / "run"),
                                  "--crop", "32", "--batch", "2", "--steps", "2"])
    assert r.exit_code == 0, r.output
    ck = r.stdout.split()[-1]
    r = CliRunner().invoke(main, ["export", ck, "-o", str(tmp_path / "v.safetensors")])
    assert r.exit_code == 0, r.output
    net = vae.load(tmp_path / "v.safetensors")
    assert net.meta["steps"] == 2 and isinstance(net, vae.ImageVAE)


def test_head_training_starts_from_weights_with_init(folder, tmp_path):
    from click.testing import CliRunner

    from cli.main import main
    from codec.heads import vae
    from codec.heads.restore import RestoreConfig, RestoreNet
    from codec.heads.store import save_head
    from codec.training.heads import HeadTrainConfig, fit, restore_loss
    torch.manual_seed(1)
    start = RestoreNet(RestoreConfig((4, 8, 8, 8)))
    save_head(start, tmp_path / "start.safetensors", "restore")
    tc = HeadTrainConfig(data=[str(folder)], out=str(tmp_path / "run"), crop=32, batch=2, steps=0,
                         init=str(tmp_path / "start.safetensors"))
    got = checkpoint.load(fit(RestoreNet(RestoreConfig((4, 8, 8, 8))), restore_loss, tc, log=lambda *_: None))
    for k, v in start.state_dict().items():
        want = v.half().float() if v.is_floating_point() else v
        assert torch.equal(got["model"][k], want), k
    save_head(vae.ImageVAE(vae.VAEConfig()), tmp_path / "v.safetensors", "vae")
    r = CliRunner().invoke(main, ["train-head", "restore", str(folder), "--out", str(tmp_path / "r2"),
                                  "--steps", "1", "--init", str(tmp_path / "v.safetensors")])
    assert r.exit_code != 0 and "not a weights file of this head" in r.output
    assert "Traceback" not in r.output


def test_export_reads_the_head_kind_from_the_checkpoint_when_the_run_did_not_record_it(folder, tmp_path):
    """A run started from the library (HeadTrainConfig without ``kind``) still exports."""
    from codec.heads import restore
    from codec.training.heads import export_head, head_kind
    ck = _fit(folder, tmp_path / "r", 1, False)
    assert head_kind(checkpoint.load(ck)["head_config"]) == "restore"
    meta = export_head(ck, tmp_path / "r.safetensors")
    assert meta["steps"] == 1 and isinstance(restore.load(tmp_path / "r.safetensors"), restore.RestoreNet)
    with pytest.raises(ValueError, match="no known head"):
        head_kind('{"width": 3}')


def test_warmup_ramps_the_learning_rate_from_step_zero():
    from codec.training.loop import lr_at
    tc = TrainConfig(lr=1e-4, warmup=100, decay_at=500, decay_factor=0.1)
    assert lr_at(tc, 0) == pytest.approx(1e-6) and lr_at(tc, 49) == pytest.approx(5e-5)
    assert lr_at(tc, 99) == pytest.approx(1e-4) and lr_at(tc, 400) == pytest.approx(1e-4)
    assert lr_at(tc, 500) == pytest.approx(1e-5)
    assert lr_at(TrainConfig(lr=1e-4), 0) == 1e-4


def test_freeze_trains_only_the_rest(folder, tmp_path):
    from dataclasses import replace
    tc = cfg(folder, tmp_path / "f", 3)
    tc = replace(tc, model=ModelConfig(arch="vq", N=8, M=12, codebook=8, vq_dim=4, lambdas=(0.01, 0.05)),
                 freeze=("g_a", "vq", "prior_logits"), lr=1e-2)
    torch.manual_seed(0)
    first = checkpoint.load(train(replace(tc, steps=1, out=str(tmp_path / "f1")), log=lambda *_: None))["model"]
    path = train(tc, log=lambda *_: None)
    last = checkpoint.load(path)["model"]
    from codec.training.export import export
    assert export(path, tmp_path / "w.safetensors", "t")["frozen"] == ["g_a", "vq", "prior_logits"]
    for k, v in first.items():
        if k.startswith(("g_a", "vq.codebooks", "prior_logits")):
            assert torch.equal(v, last[k]), k
    assert not torch.equal(first["g_s.0.weight"], last["g_s.0.weight"])


def test_export_keeps_the_history_of_the_weights_a_run_started_from(folder, tmp_path):
    """A run from --init exports the start file's facts under "before" (the
    model card lists every training of the lineage) and its soft VQ rate."""
    from dataclasses import replace

    from codec.training.export import export
    tc = replace(cfg(folder, tmp_path / "a", 2),
                 model=ModelConfig(arch="vq", N=8, M=12, codebook=8, vq_dim=4, lambdas=(0.01, 0.05)))
    first = export(train(tc, log=lambda *_: None), tmp_path / "a.safetensors", "t")
    assert "before" not in first and "vq_soft_rate" not in first
    tc = replace(tc, out=str(tmp_path / "b"), steps=1, init=str(tmp_path / "a.safetensors"), vq_soft_rate=0.1)
    second = export(train(tc, log=lambda *_: None), tmp_path / "b.safetensors", "t")
    assert second["init_from"] == "a.safetensors" and second["vq_soft_rate"] == 0.1
    assert second["before"]["steps"] == 2 and second["before"]["checkpoint"] == first["checkpoint"]


def test_model_card_lists_the_lineage_oldest_first_and_finds_the_newest_refit():
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "model_card", Path(__file__).resolve().parents[1] / "scripts/model_card.py")
    card = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(card)
    old = {"steps": 8, "prior_refit": {"note": "old", "codebooks": {"iterations": 1}}}
    mid = {"steps": 3, "before": old, "prior_refit": {"note": "mid"}, "init_from": "a", "init": "from k-means"}
    new = {"steps": 1, "before": mid, "frozen": ["vq", "prior_logits"]}
    assert [m["steps"] for m in card.lineage(new)] == [8, 3, 1]
    refit, after = card.latest_refit(new)
    assert refit["note"] == "mid" and after == [new]
    assert card.latest_refit(new, codebooks=True) == (old["prior_refit"], [mid, new])
    assert card.latest_refit({"steps": 2}) == (None, [])
    assert "from k-means" in card._stage(mid) and "from k-means" not in card._stage(mid, first=False)


def test_freeze_refuses_unknown_names(folder, tmp_path):
    from dataclasses import replace
    with pytest.raises(ValueError, match="no parameters named nope"):
        train(replace(cfg(folder, tmp_path / "u", 1), freeze=("nope",)), log=lambda *_: None)


def test_training_from_weights_drops_what_is_built_from_them(folder, tmp_path, context_model):
    """--init from a shipped-style file: its context model and integer h_s
    belong to the old transforms, so the run trains without them."""
    from safetensors.torch import load_file

    from codec import weights
    tensors = load_file(str(context_model))
    assert any(k.startswith("context.") for k in tensors)
    tc = cfg(folder, tmp_path / "run", 1)
    tc.init = str(context_model)
    st = checkpoint.load(train(tc))
    assert not any(k.startswith(weights.DERIVED_PREFIXES) for k in st["model"])
    kept = weights.trainable_state(tensors)
    assert kept and all(k in st["model"] for k in kept)


def test_training_from_weights_keeps_the_files_model_settings(folder, tmp_path):
    """aecodec train --init: the architecture options not given, a VQ rate
    weight and a VQ context model are the file's; the options given win."""
    import json

    from click.testing import CliRunner

    from cli.main import main
    from codec import weights
    from codec.models import VQCodec
    vq = ModelConfig(arch="vq", N=8, M=12, vq_dim=4, codebook=16, lambdas=(0.002, 0.01), context=True, vq_rd=0.25)
    start = weights.save(VQCodec(vq), tmp_path / "vq.safetensors", "vq-tiny")
    r = CliRunner().invoke(main, ["train", str(folder), "--out", str(tmp_path / "run"), "--init", str(start),
                                  "--steps", "1", "--crop", "64", "--batch", "2", "--no-progress",
                                  "--freeze", "g_a,vq,prior_logits"])
    assert r.exit_code == 0, r.output
    got = ModelConfig.from_json(checkpoint.load(checkpoint.latest(tmp_path / "run"))["model_config"])
    assert got == vq
    r = CliRunner().invoke(main, ["train", str(folder), "--out", str(tmp_path / "run2"), "--init", str(start),
                                  "--steps", "1", "--crop", "64", "--batch", "2", "--no-progress",
                                  "--lambdas", "0.004,0.02"])
    assert r.exit_code == 0, r.output
    got = json.loads(checkpoint.load(checkpoint.latest(tmp_path / "run2"))["model_config"])
    assert got["lambdas"] == [0.004, 0.02] and got["vq_rd"] == 0.25
    (tmp_path / "junk.safetensors").write_bytes(b"not a weights file")
    r = CliRunner().invoke(main, ["train", str(folder), "--out", str(tmp_path / "run3"), "--init",
                                  str(tmp_path / "junk.safetensors"), "--steps", "1"])
    assert r.exit_code != 0 and "--init" in r.output and "Traceback" not in r.output


def test_post_trains_the_files_filter_with_the_codec(folder, tmp_path, post_model):
    """train --post from a file with a post-filter: the filter is kept (not
    dropped as stale), its distortion is the filtered picture's, its weights
    move with the transforms', a resumed run goes on bit for bit, and the
    exported file has the trained filter."""
    from dataclasses import replace

    from codec import weights
    start = weights.load(post_model)
    assert start.net.has_post
    tc = replace(cfg(folder, tmp_path / "p", 2), init=str(post_model), post=True, model=start.config)
    first = checkpoint.load(train(tc, log=lambda *_: None))
    post_keys = [k for k in first["model"] if k.startswith(weights.POST_PREFIX)]
    assert post_keys == [k for k in start.net.state_dict() if k.startswith(weights.POST_PREFIX)]
    assert any(not torch.equal(first["model"][k], start.net.state_dict()[k]) for k in post_keys)
    last = post_keys[-2]  # the last convolution's weight: random in the file, zero in a new filter
    assert (first["model"][last] - start.net.state_dict()[last]).abs().max() < 0.01 < \
        start.net.state_dict()[last].abs().max()
    straight = checkpoint.load(train(replace(tc, out=str(tmp_path / "s"), steps=4), log=lambda *_: None))
    resumed = checkpoint.load(train(replace(tc, steps=4), resume=True, log=lambda *_: None))
    for k, v in straight["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    from codec.training.export import export
    meta = export(checkpoint.latest(tmp_path / "p"), tmp_path / "w.safetensors", "tiny-post")
    out = weights.load(tmp_path / "w.safetensors")
    assert meta["post_with_codec"] and out.net.has_post
    assert torch.equal(out.net.post.body[-1].weight, resumed["model"][last].half().float())
    # without --post the same start trains without the filter (it was made for the old transforms)
    plain = checkpoint.load(train(replace(tc, out=str(tmp_path / "n"), post=False, steps=1), log=lambda *_: None))
    assert not any(k.startswith(weights.POST_PREFIX) for k in plain["model"])


def test_post_forward_filters_the_picture_only_when_asked(post_model):
    from codec import weights
    net = weights.load(post_model).net
    x, q = torch.rand(1, 3, 64, 64), torch.tensor([4.0])
    with torch.no_grad():
        plain, filtered = net(x, q)["x_hat"], net(x, q, post=True)["x_hat"]
    assert torch.equal(filtered, net.post(plain, q)) and not torch.equal(plain, filtered)


def test_post_is_refused_for_models_without_a_scalar_filter(folder, tmp_path):
    from dataclasses import replace
    tc = replace(cfg(folder, tmp_path / "v", 1), post=True,
                 model=ModelConfig(arch="vq", N=8, M=12, vq_dim=4, codebook=16, lambdas=(0.002, 0.01)))
    with pytest.raises(ValueError, match="post-filter trains with scalar models"):
        train(tc, log=lambda *_: None)
