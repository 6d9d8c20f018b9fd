"""The channel and checkerboard context model (codec/context.py)."""

import copy
import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import codec
from codec import container, integer, pipeline, tiling, weights
from codec.context import PASSES, SLICES, ContextModel, pass_map
from codec.training import context as tc, parts

from test_pipeline import decoded_elsewhere


def test_pass_map_splits_slices_and_checkerboard():
    p = pass_map(12, 4, 6)
    assert p.shape == (12, 4, 6) and set(p.unique().tolist()) == set(range(PASSES))
    assert (p[:6] < 2).all() and (p[6:] >= 2).all()                 # slice 0 before slice 1
    assert p[0, 0, 0] == 0 and p[0, 0, 1] == 1 and p[0, 1, 1] == 0  # anchors: (i + j) even
    assert all((p == k).sum() == 12 * 24 // PASSES for k in range(PASSES))


def test_inputs_show_only_what_earlier_passes_decoded():
    M, h, w = 12, 4, 6
    y_hat = torch.randn(1, M, h, w).double()
    passes = pass_map(M, h, w)
    for p in range(1, PASSES):
        x = ContextModel.inputs(y_hat, passes, p, torch.zeros_like(y_hat), torch.zeros_like(y_hat))
        seen = x[0, :M] != 0
        assert torch.equal(seen, passes < p)
        assert x.shape[1] == 3 * M + SLICES


def test_untrained_context_model_codes_like_the_hyperprior(tiny_model, photo):
    """Its last layer starts at zero: the same symbols, means and indexes."""
    lm = weights.load(tiny_model)
    net = lm.net
    net.context.enable()
    with torch.no_grad():
        bank = net.g_a(torch.rand(2, 3, 64, 64))
    net.context.build_integer(tc.calibration_inputs(net, net.context, bank, chunk=2))
    assert net.has_context
    a, ra = tiling.encode(net, photo, 5.0, 0, y_tables=True, y_context=False)
    b, rb = tiling.encode(net, photo, 5.0, 0, y_tables=True, y_context=True)
    assert np.array_equal(ra, rb)
    assert abs(len(a[2]) - len(b[2])) <= 8   # the same symbols, coded in another order


def test_context_round_trip_is_exact_and_flagged(context_model, photo):
    res = codec.encode(photo, quality=6, model=context_model)
    assert res.header.context and res.header.flags & container.FLAG_Y_TABLES
    pic = codec.decode(res.data, model=context_model)
    assert np.array_equal(pic.rgb, res.picture.rgb)
    lm = weights.load(context_model)
    assert res.header.weights == lm.weights_hash != lm.base_hash


def test_context_changes_the_coding(context_model, tiny_model, photo):
    """A trained (here: random) context model moves means and indexes, so
    the symbols and the pixels differ from the hyperprior's."""
    with_ctx = codec.encode(photo, quality=6, model=context_model)
    lm = weights.load(context_model)
    streams, recon = tiling.encode(lm.net, photo, 6.0, tiling.DEFAULT_TILE, precision=with_ctx.header.precision)
    assert not np.array_equal(recon[:80, :96], with_ctx.picture.rgb)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("model", ["context_model", "wide_context_model"])
def test_context_decoding_in_another_process_is_bit_exact(model, photo, tmp_path, threads, request):
    path = request.getfixturevalue(model)
    res = codec.encode(photo, quality=7.5, model=path, tile=64)
    assert decoded_elsewhere(res, path, tmp_path, threads)


def test_a_wide_first_layer_codes_closer_to_the_float_network(wide_context_model, photo):
    """The same float network, its first layer built wide or under one
    float32 budget: the wide integer corrections are the nearer to the float ones."""
    wide = weights.load(wide_context_model).net
    narrow = copy.deepcopy(wide)
    with torch.no_grad():
        f = wide.g_a(torch.from_numpy(photo[:64, :64]).permute(2, 0, 1)[None].float() / 255)
        _, means, t, passes, y_hat = tc.hyper_view(wide, f, torch.tensor([4.0]))
    x = wide.context.inputs(y_hat.double(), passes, 1, means.double(), t.double())
    wide.context.build_integer([x])                          # both calibrated on the same input
    narrow.context.build_integer([x], wide_taps=None)
    assert wide.context.int.wide(0) and not narrow.context.int.wide(0) and not wide.context.int.wide(1)
    ref = torch.cat(wide.context(x.float(), 1), 1).double()
    err = {name: float((torch.cat(net.context.exact(x, 1), 1) - ref).abs().mean())
           for name, net in (("narrow", narrow), ("wide", wide))}
    assert err["wide"] < err["narrow"]


def test_files_from_before_the_context_model_still_decode(tmp_path, photo):
    """Adding a context model to a weights file keeps the hash that files
    coded without it carry (the base hash), so they decode as before."""
    from conftest import add_tiny_context, make_tiny_model
    path = make_tiny_model(tmp_path / "m.safetensors", model_id="m")
    old = codec.encode(photo, quality=5, model=path)
    before = weights.load(path)
    net = add_tiny_context(before.net)
    tensors = load_file(str(path))
    tensors.update(net.context.state_dict(prefix=weights.CONTEXT_PREFIX))
    weights.write_safetensors(tensors, path, weights.file_metadata(path))
    after = weights.load(path)
    assert after.base_hash == before.weights_hash != after.weights_hash and after.net.has_context
    assert np.array_equal(codec.decode(old.data, model=path).rgb, old.picture.rgb)
    new = codec.encode(photo, quality=5, model=path)
    assert new.header.context and new.header.weights == after.weights_hash


def test_a_model_without_the_context_refuses_context_files(context_model, tiny_model, photo, tmp_path):
    import dataclasses
    res = codec.encode(photo, quality=5, model=context_model)
    header, streams = container.unpack(res.data)
    lm = weights.load(tiny_model)
    forged = dataclasses.replace(header, model=lm.model_id, weights=lm.weights_hash)
    with pytest.raises(pipeline.DecodeError, match="context model"):
        codec.decode(container.pack(forged, streams), model=tiny_model)


def test_context_flag_needs_a_tabled_scalar_latent(context_model, photo):
    import dataclasses
    res = codec.encode(photo, quality=5, model=context_model)
    header, streams = container.unpack(res.data)
    bad = dataclasses.replace(header, flags=header.flags & ~container.FLAG_Y_TABLES)
    with pytest.raises(container.ContainerError, match="context"):
        container.unpack(container.pack(bad, streams))


def test_weights_without_a_context_model_save_none(tiny_model, tmp_path):
    lm = weights.load(tiny_model)
    assert not lm.net.has_context and not any(k.startswith("context.") for k in lm.net.state_dict())
    assert lm.base_hash == lm.weights_hash


def test_context_model_survives_save_and_load(context_model, tmp_path):
    lm = weights.load(context_model)
    assert lm.net.has_context
    x = torch.randn(1, 3 * 12 + SLICES, 4, 4).double()
    want = lm.net.context.exact(x, 2)
    weights.save(lm.net, tmp_path / "again.safetensors", lm.model_id)
    again = weights.load(tmp_path / "again.safetensors")
    got = again.net.context.exact(x, 2)
    assert all(torch.equal(a, b) for a, b in zip(want, got))


def test_rate_training_lowers_the_bits_it_trains_on(tiny_model):
    """A few Adam steps on one batch of one pass lower that pass's bits."""
    torch.manual_seed(0)
    net = weights.load(tiny_model).net
    for p in net.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        f = net.g_a(torch.rand(4, 3, 64, 64))
    q = torch.full((4,), 6.0)
    ctx = ContextModel(12, hidden=16)
    ctx.enable()
    opt = torch.optim.Adam(ctx.net.parameters(), lr=3e-3)
    first, base = tc.pass_bits(net, ctx, f, q, 3)
    assert torch.allclose(first, base)                # starts as the hyperprior
    for _ in range(40):
        ours, _ = tc.pass_bits(net, ctx, f, q, 3)
        opt.zero_grad()
        ours.sum().backward()
        opt.step()
    after, _ = tc.pass_bits(net, ctx, f, q, 3, straight_through=False)
    assert after.sum() < 0.97 * base.sum()


@pytest.fixture
def image_folder(tmp_path):
    """Four small random training images."""
    from PIL import Image
    rng = np.random.default_rng(0)
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(data / f"{i}.png")
    return data


def test_context_training_resumes_bit_for_bit(tiny_model, tmp_path, image_folder):
    data = image_folder
    net = weights.load(tiny_model).net

    def run(out, steps, resume=False):
        cc = tc.ContextConfig(data=(str(data),), out=str(out), steps=steps, batch=2, hidden=8, crop=64,
                              crops_per_image=2, validate_every=10 ** 9, checkpoint_s=10 ** 9)
        return tc.train(net, cc, resume=resume, log=lambda m: None), parts.record(cc)

    whole, rec_whole = run(tmp_path / "a", 6)
    run(tmp_path / "b", 3)
    resumed, rec = run(tmp_path / "b", 6, resume=True)
    assert rec.steps == rec_whole.steps == 6 and rec.hardware.endswith(("thread", "threads"))
    for a, b in zip(whole.net.state_dict().values(), resumed.net.state_dict().values()):
        assert torch.equal(a, b)
    assert not torch.equal(whole.net[-1].weight, torch.zeros_like(whole.net[-1].weight))


def test_info_says_a_file_uses_the_context_model(context_model, photo, tmp_path):
    from click.testing import CliRunner
    from cli.main import main
    f = tmp_path / "c.aec"
    f.write_bytes(codec.encode(photo, quality=5, model=context_model).data)
    r = CliRunner().invoke(main, ["info", str(f), "--json"])
    assert r.exit_code == 0 and '"context": true' in r.output


def test_corrupted_context_files_give_library_errors(context_model, photo):
    """Byte flips and truncations of a context-coded file: a right-sized
    picture or one of the library's errors, never anything else."""
    from codec import io
    data = codec.encode(photo[:64, :64], quality=6, model=context_model).data
    rng = np.random.default_rng(0)
    for trial in range(40):
        bad = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            bad[int(rng.integers(len(bad)))] = int(rng.integers(256))
        bad = bytes(bad[:int(rng.integers(1, len(bad) + 1))]) if trial % 3 == 0 else bytes(bad)
        try:
            pic = codec.decode(bad, model=context_model)
        except (container.ContainerError, pipeline.DecodeError, io.ImageError):
            continue
        assert pic.rgb.shape == (64, 64, 3)


def test_garbage_context_streams_behind_a_valid_checksum(context_model, photo):
    """The payload checksum recomputed over garbage y streams: the pass
    decoder ends with a coding error or wrong pixels (the reconstruction
    checksum), never a crash or a hang."""
    data = codec.encode(photo[:64, :64], quality=6, model=context_model).data
    header, streams = container.unpack(data)
    rng = np.random.default_rng(1)
    for trial in range(12):
        y = bytearray(streams[2])
        for _ in range(4):
            y[int(rng.integers(len(y)))] = int(rng.integers(256))
        if trial % 2:
            y = y[:4 * max(1, len(y) // 8)]
        s = list(streams)
        s[2] = bytes(y)
        forged = container.pack(dataclasses.replace(header, stream_lengths=[len(b) for b in s]), s)
        with pytest.raises(pipeline.DecodeError):
            codec.decode(forged, model=context_model)


def test_a_pass_switched_off_codes_under_the_hyperprior(context_model, photo):
    lm = weights.load(context_model)
    net = lm.net
    a, ra = tiling.encode(net, photo, 6.0, 0, y_context=True)
    net.context.passes_on.zero_()
    b, rb = tiling.encode(net, photo, 6.0, 0, y_context=False)
    c, rc = tiling.encode(net, photo, 6.0, 0, y_context=True)
    assert np.array_equal(rb, rc) and not np.array_equal(ra, rc)
    net.context.passes_on[:] = torch.tensor([0, 1, 1], dtype=torch.int32)
    d, rd = tiling.encode(net, photo, 6.0, 0, y_context=True)
    assert not np.array_equal(rd, rc)
    # the switches travel with the weights
    weights.save(net, context_model.parent / "sw.safetensors", lm.model_id)
    again = weights.load(context_model.parent / "sw.safetensors").net
    assert again.context.passes_on.tolist() == [0, 1, 1]
    _, re_ = tiling.encode(again, photo, 6.0, 0, y_context=True)
    assert np.array_equal(re_, rd)


def test_choose_passes_switches_off_what_saves_nothing(tiny_model):
    """An untrained network saves no bits anywhere: every pass goes off."""
    net = weights.load(tiny_model).net
    with torch.no_grad():
        bank = net.g_a(torch.rand(2, 3, 64, 64))
    ctx = ContextModel(12, hidden=8)
    ctx.enable()
    per_pass = tc.choose_passes(net, ctx, bank)
    assert ctx.passes_on.tolist() == [0] * (PASSES - 1) and set(per_pass) == {"pass1", "pass2", "pass3"}
    assert all(v == 0 for r in per_pass.values() for v in r.values())


def test_the_fast_pass_runner_gives_exactly_the_integer_network(context_model):
    """exact_passes splits the first layer's integer sums; the bits must not change."""
    ctx = weights.load(context_model).net.context
    g = torch.Generator().manual_seed(0)
    M, h, w = 12, 6, 7
    y_hat = (torch.randn(1, M, h, w, generator=g) * 3).round().double()
    means = torch.randn(1, M, h, w, generator=g).double()
    t = torch.randint(0, 64, (1, M, h, w), generator=g).double()
    passes = pass_map(M, h, w)
    run = ctx.exact_passes(means, t)
    for p in range(1, PASSES):
        want = ctx.exact(ctx.inputs(y_hat, passes, p, means, t), p)
        got = run(y_hat, passes, p)
        assert all(torch.equal(a, b) for a, b in zip(want, got))


def test_train_context_cli_trains_and_installs(tiny_model, tmp_path, image_folder):
    from click.testing import CliRunner
    from cli.main import main
    data = image_folder
    out, w = tmp_path / "run", tmp_path / "with-context.safetensors"
    args = ["train-context", str(data), "--weights", str(tiny_model), "--out", str(out), "-o", str(w),
            "--steps", "3", "--crop", "64", "--crops-per-image", "2"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    lm = weights.load(w)
    assert lm.net.context.present and lm.net.context.int.ready
    assert lm.base_hash == weights.load(tiny_model).weights_hash and lm.meta["context"]["steps"] == 3
    r = CliRunner().invoke(main, args)                         # -o exists: refused without --force
    assert r.exit_code == 1 and "already exists" in r.output


def test_train_context_init_continues_the_files_context_model(tiny_model, tmp_path, image_folder):
    from click.testing import CliRunner
    from cli.main import main
    common = [str(image_folder), "--steps", "2", "--crop", "64", "--crops-per-image", "2"]
    r = CliRunner().invoke(main, ["train-context", *common, "--weights", str(tiny_model), "--init",
                                  "--out", str(tmp_path / "run0")])
    assert r.exit_code == 1 and "no context model to continue" in r.output and "Traceback" not in r.output
    w1, w2 = tmp_path / "first.safetensors", tmp_path / "continued.safetensors"
    for src, dst, run, extra in ((tiny_model, w1, "run1", ["--lr", "0.05"]), (w1, w2, "run2", ["--lr", "1e-4", "--init"])):
        r = CliRunner().invoke(main, ["train-context", *common, "--weights", str(src), "--out", str(tmp_path / run),
                                      "-o", str(dst), *extra])
        assert r.exit_code == 0, r.output
    start, cont = weights.load(w1), weights.load(w2)
    last, start_last = cont.net.context.net[-1].weight, start.net.context.net[-1].weight
    # a new network's last layer starts at zero; two small steps from the file's stay close to it
    assert start_last.abs().max() > 0.01 and (last - start_last).abs().max() < start_last.abs().max() / 5
    assert cont.meta["context"]["steps"] == 2 and cont.meta["context"]["before"] == start.meta["context"]


def test_train_context_from_a_pack(tiny_model, tmp_path):
    """A GPU burst trains the context model on the crop pack it carries (here on the CPU)."""
    from click.testing import CliRunner
    from PIL import Image

    from cli.main import main
    from codec.training.pack import make_pack
    rng = np.random.default_rng(1)
    data = tmp_path / "big"
    data.mkdir()
    for i in range(21):                                       # the split holds every 20th image out
        Image.fromarray(rng.integers(0, 256, (200, 208, 3), dtype=np.uint8)).save(data / f"{i:02d}.png")
    pack = make_pack([str(data)], tmp_path / "pack.safetensors")
    out, w = tmp_path / "run", tmp_path / "w.safetensors"
    r = CliRunner().invoke(main, ["train-context", "--pack", str(pack), "--weights", str(tiny_model), "--out",
                                  str(out), "-o", str(w), "--steps", "2", "--crop", "64", "--crops-per-image", "1",
                                  "--batch", "2"])
    assert r.exit_code == 0, r.output
    bank = torch.load(out / "bank.pt", weights_only=True)
    assert len(bank["train"]) >= 20 and len(bank["val"]) >= 1 and "pack pack.safetensors" in bank["key"]
    lm = weights.load(w)
    assert lm.net.context.int.ready and lm.meta["context"]["steps"] == 2 and "CPU" in lm.meta["context"]["hardware"]
    r = CliRunner().invoke(main, ["train-context", "--weights", str(tiny_model), "--out", str(out)])
    assert r.exit_code == 2 and "--pack" in r.output
