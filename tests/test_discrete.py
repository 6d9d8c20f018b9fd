import json
from dataclasses import replace
import numpy as np
import pytest
import torch

import codec
from codec import container, weights
from codec.models import BinaryCodec, ModelConfig, VQCodec
from codec.training import checkpoint
from codec.training.loop import TrainConfig, train

VQ_CFG = ModelConfig(arch="vq", N=8, M=12, vq_dim=4, codebook=16, lambdas=(0.002, 0.01, 0.05))
BIN_CFG = ModelConfig(arch="binary", N=8, M=12, lambdas=(0.002, 0.004, 0.008, 0.016))


def fitted(cls, cfg, photo, steps=3):
    """A tiny model whose codebooks / tables have seen a few real crops."""
    torch.manual_seed(0)
    net = cls(cfg)
    x = torch.from_numpy(photo[:64, :64]).permute(2, 0, 1)[None].float() / 255
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(steps):
        out = net(x, torch.tensor([float(cfg.levels)]))
        loss = sum(-torch.log2(v).sum() for v in out["likelihoods"].values()) + out.get("aux", 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def vq_file(tmp_path_factory, photo):
    return weights.save(fitted(VQCodec, VQ_CFG, photo), tmp_path_factory.mktemp("vq") / "vq.safetensors", "vq-tiny")


@pytest.fixture(scope="module")
def bin_file(tmp_path_factory, photo):
    net = fitted(BinaryCodec, BIN_CFG, photo)
    with torch.no_grad():
        net.g_a[-1].bias[:6] = -100.0  # the first 6 channels' bits are all 0 ...
        net.prior_logits[:6] = -4.0    # ... and the prior knows it: far below 1 bit each
    return weights.save(net, tmp_path_factory.mktemp("bin") / "bin.safetensors", "bin-tiny")


def assert_round_trips_exactly(photo, model, quality) -> list:
    """Encode whole and in 64-pixel tiles; each decodes to the encoder's
    reconstruction. -> the two encode results."""
    results = []
    for tile in (0, 64):
        res = codec.encode(photo, quality=quality, model=model, tile=tile)
        assert np.array_equal(codec.decode(res.data, model=model).rgb, res.picture.rgb)
        results.append(res)
    return results


@pytest.mark.parametrize("which", ["vq", "bin"])
def test_discrete_round_trip_is_exact(which, vq_file, bin_file, photo):
    model = vq_file if which == "vq" else bin_file
    for res in assert_round_trips_exactly(photo, model, 2):
        assert res.header.latent_kind == ("vq" if which == "vq" else "binary")


def test_latent_refinement_is_refused_for_binary_latents(bin_file, photo):
    with pytest.raises(ValueError, match="needs a scalar or VQ latent"):
        codec.encode(photo, model=bin_file, effort=2)


def test_vq_more_stages_more_bits_better_picture(vq_file, photo):
    lo, hi = (codec.encode(photo, quality=q, model=vq_file) for q in (1, 3))
    assert lo.bpp < hi.bpp


def test_vq_lookup_from_indices_equals_eval_output(photo):
    net = fitted(VQCodec, VQ_CFG, photo)
    y = torch.randn(1, 12, 3, 5)
    y_hat, syms, _, _ = net.vq(y, torch.tensor([2]))
    assert torch.equal(net.vq.lookup(syms[:2], 2), y_hat)


def test_vq_soft_rate_keeps_the_hard_bits_and_gives_the_encoder_a_rate_gradient(photo):
    net = fitted(VQCodec, VQ_CFG, photo).train()
    for p in net.vq.parameters():
        p.requires_grad_(False)  # frozen codebooks: the same indices in both passes
    x = torch.from_numpy(photo[:32, :32]).permute(2, 0, 1)[None].float() / 255
    rates, grads = [], []
    for tau in (0.0, 0.1):
        net.soft_rate = tau
        net.zero_grad()
        bits = -torch.log2(net(x, torch.tensor([3.0]))["likelihoods"]["vq"]).sum()
        bits.backward()
        rates.append(bits.item())
        g = net.g_a[0].weight.grad
        grads.append(0.0 if g is None else g.abs().sum().item())
    assert rates[0] == pytest.approx(rates[1], rel=1e-6)  # the value is the hard indices' bits
    assert grads[0] == 0.0 and grads[1] > 0.0             # only the soft assignment reaches g_a


def test_vq_revives_dead_codes():
    from codec.quantizers import ResidualVQ
    torch.manual_seed(0)
    vq = ResidualVQ(4, 4, 8, 1, revive_after=2).train()
    y = torch.randn(2, 4, 4, 4)
    vq(y, torch.tensor([1, 1]))
    with torch.no_grad():
        vq.codebooks[0, 0, 3] = 1e6  # unreachable entry
    for _ in range(3):
        vq(y, torch.tensor([1, 1]))
    assert vq.codebooks[0, 0, 3].abs().max() < 1e3


def test_vq_trains_through_dead_code_revival():
    from codec.quantizers import ResidualVQ
    torch.manual_seed(0)
    vq = ResidualVQ(8, 4, 16, 2, revive_after=1).train()
    y = torch.randn(2, 8, 4, 4, requires_grad=True)
    for _ in range(3):  # every step revives the entries the batch left unused, in place
        y_hat, _, aux, _ = vq(y, torch.tensor([2, 1]))
        (aux + y_hat.pow(2).mean()).backward()
    assert vq.codebooks.grad is not None and y.grad is not None


def test_vq_loads_files_with_one_codebook_shared_by_all_groups():
    from codec.quantizers import ResidualVQ
    torch.manual_seed(0)
    vq = ResidualVQ(8, 4, 16, 2)
    shared = torch.randn(2, 16, 4)
    vq.load_state_dict({"codebooks": shared, "initialised": torch.tensor(True), "idle": torch.zeros(2, 16)})
    y = torch.randn(1, 8, 3, 3)
    _, syms, _, _ = vq.eval()(y, torch.tensor([2]))
    old = shared[0][syms[0, 0, 1].reshape(-1)] + shared[1][syms[1, 0, 1].reshape(-1)]  # group 1, by hand
    assert torch.equal(vq.lookup(syms, 2)[0, 4:].permute(1, 2, 0).reshape(-1, 4), old)
    # and a current state dict loads as it is, dead-code counters included (resuming training)
    vq.idle.fill_(7)
    again = ResidualVQ(8, 4, 16, 2)
    again.load_state_dict(vq.state_dict())
    assert torch.equal(again.idle, vq.idle) and torch.equal(again.codebooks, vq.codebooks)


def test_vq_kmeans_init_fits_each_group_its_own_codebook():
    from codec.quantizers import ResidualVQ
    gen = torch.Generator().manual_seed(0)
    # group 0: four tight clusters; group 1: the same clusters 100x larger
    centres = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    pts = centres[torch.randint(4, (256,), generator=gen)] + 0.01 * torch.randn(256, 2, generator=gen)
    y = torch.cat([pts, 100 * pts], 1).T.reshape(1, 4, 16, 16)
    vq = ResidualVQ(4, 2, 4, 1)
    counts = vq.kmeans_init(y, gen=gen)
    assert counts.sum().item() == 2 * 256 and bool(vq.initialised)
    y_hat, _, _, _ = vq.eval()(y, torch.tensor([1]))
    assert (y_hat - y).abs().max() < 0.1 * 100  # every cluster has its own entry, in both groups
    assert (y_hat[:, :2] - y[:, :2]).abs().max() < 0.1


def test_binary_rate_is_below_the_raw_bit_count(bin_file, photo):
    res = codec.encode(photo, quality=2, model=bin_file)
    # quality 2 of 4 keeps 6 of 12 channels, all with p(one) ~ 0.018
    positions = (-(-80 // 64) * 4) * (-(-96 // 64) * 4)
    raw_bits = 6 * positions
    assert res.header.stream_lengths[2] * 8 < 0.5 * raw_bits


@pytest.mark.parametrize("cfg", [VQ_CFG, BIN_CFG])
def test_discrete_models_train(cfg, tmp_path, photo):
    from PIL import Image
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(2):
        Image.fromarray(np.roll(photo, 9 * i, 1)).save(d / f"{i}.png")
    tc = TrainConfig(data=[str(d)], out=str(tmp_path / "run"), model=cfg, crop=64, batch=2, steps=3,
                     progress=False, val_every=2, ckpt_every_s=1e9, vq_soft_rate=0.1 if cfg.arch == "vq" else 0.0)
    st = checkpoint.load(train(tc, log=lambda *_: None))
    assert st["step"] == 3
    if cfg.arch != "vq":
        with pytest.raises(ValueError, match="--vq-soft-rate is for the vq architecture"):
            train(replace(tc, vq_soft_rate=0.1, out=str(tmp_path / "run2")), log=lambda *_: None)


@pytest.fixture(scope="module")
def folder_of(tmp_path_factory, photo):
    from PIL import Image
    d = tmp_path_factory.mktemp("refit")
    for i in range(3):
        Image.fromarray(np.roll(photo, 11 * i, 0)).save(d / f"{i}.png")
    return d


def test_context_state_counts_the_four_neighbours():
    from codec.models import context_state
    bits = torch.zeros(1, 1, 3, 3, dtype=torch.long)
    bits[0, 0, 0, 1] = bits[0, 0, 1, 0] = bits[0, 0, 1, 2] = bits[0, 0, 2, 1] = 1
    st = context_state(bits)[0, 0]
    assert st[1, 1] == 4              # all four neighbours are ones
    assert st[0, 0] == 4              # corner: two neighbours inside, both ones
    assert st[0, 1] == 0              # its neighbours (0,0), (0,2), (1,1) are zeros


def test_binary_context_model_round_trips_exactly_and_codes_below_factorized(bin_file, folder_of, photo, tmp_path):
    from codec.training.refit import fit_binary_context, with_context
    base = weights.load(bin_file).net
    net = with_context(base)
    fit = fit_binary_context(net, [folder_of])
    assert fit["context_bits_per_bit"] <= fit["anchor_bits_per_bit"] + 1e-9
    path = weights.save(net, tmp_path / "ctx.safetensors", "bin-ctx")
    assert_round_trips_exactly(photo, path, 4)
    # the same bits under both priors: the context one (fitted here) is not worse than
    # the factorized one refitted the same way
    plain = with_context(base)
    fit_binary_context(plain, [folder_of])
    plain.p_ctx_int.copy_(plain.p_one_int[:, None].expand_as(plain.p_ctx_int))
    flat = weights.save(plain, tmp_path / "flat.safetensors", "bin-flat")
    a = codec.encode(photo, quality=4, model=path, tile=0)
    b = codec.encode(photo, quality=4, model=flat, tile=0)
    assert np.array_equal(a.picture.rgb, b.picture.rgb)
    assert len(a.data) <= len(b.data) + 8


def test_vq_prior_refit_matches_counted_frequencies(vq_file, folder_of):
    from codec.training.refit import refit_vq_prior
    net = weights.load(vq_file).net
    res = refit_vq_prior(net, [folder_of])
    assert 0 < res["mean_entropy_bits_per_index"] <= np.log2(16)
    p = torch.softmax(net.prior_logits, -1)
    assert torch.allclose(p.sum(-1), torch.ones_like(p.sum(-1)))
    assert (net.pmf_int > 0).all()


def test_refit_cli_writes_a_model_that_decodes_the_same_pixels(bin_file, folder_of, photo, tmp_path):
    from click.testing import CliRunner

    from cli.main import main
    out = tmp_path / "refit.safetensors"
    r = CliRunner().invoke(main, ["refit", str(bin_file), str(folder_of), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "context_bits_per_bit" in r.stdout
    a = codec.encode(photo, quality=3, model=bin_file)
    b = codec.encode(photo, quality=3, model=out)
    assert np.array_equal(a.picture.rgb, b.picture.rgb)
    r = CliRunner().invoke(main, ["refit", str(bin_file), str(folder_of), "-o", str(out)])
    assert r.exit_code == 1 and "already exists" in r.stderr


def test_vq_context_model_round_trips_exactly_and_saves_bits_on_repeats(vq_file, folder_of, photo, tmp_path):
    from codec.training.refit import fit_vq_context, refit_vq_prior, with_context
    base = weights.load(vq_file).net
    refit_vq_prior(base, [folder_of])
    flat = weights.save(base, tmp_path / "flat.safetensors", "vq-flat")
    net = with_context(base)
    res = fit_vq_context(net, [folder_of])
    assert res["context_bits_per_index"] <= res["factorized_bits_per_index"] + 1e-9
    ctx = weights.save(net, tmp_path / "ctx.safetensors", "vq-ctx")
    assert_round_trips_exactly(photo, ctx, 3)
    b = codec.encode(photo, quality=3, model=flat, tile=0)
    a = codec.encode(photo, quality=3, model=ctx, tile=0)
    assert np.array_equal(a.picture.rgb, b.picture.rgb)  # same indices, other prior


def test_vq_copy_probabilities_are_distributions(vq_file):
    from codec.training.refit import with_context
    net = with_context(weights.load(vq_file).net)
    net.copy_int.fill_(20000)
    from codec.models import checkerboard
    grid = np.random.default_rng(0).integers(0, 16, (5, 7))
    rest = ~checkerboard(5, 7).numpy()
    p = net.copy_probs(grid, 1, 2, rest)
    assert p.shape == (int(rest.sum()), 16) and np.allclose(p.sum(1), 1) and (p > 0).all()
    # an index that all four neighbours share gets at least the copy weight
    r, c = 2, 3  # a non-anchor inside the grid
    grid[1, 3] = grid[3, 3] = grid[2, 2] = grid[2, 4] = 7
    p = net.copy_probs(grid, 1, 2, rest)
    row = list(zip(*np.nonzero(rest))).index((r, c))
    assert p[row, 7] >= 20000 / 65536


def test_vq_started_from_a_hyperprior_keeps_its_synthesis_and_decodes_exactly(photo, tmp_path):
    from codec import weights
    from codec.models import HyperpriorCodec
    from codec.training.transfer import vq_from_hyperprior
    torch.manual_seed(0)
    hp = HyperpriorCodec(ModelConfig(N=8, M=12)).eval()
    crops = [torch.rand(2, 3, 64, 64) for _ in range(2)]
    net, facts = vq_from_hyperprior(hp, crops, codebook=8, vq_dim=4, stages=2, quality=3,
                                    gen=torch.Generator().manual_seed(0))
    assert net.cfg.arch == "vq" and net.cfg.levels == 2 and facts["vectors_per_group"] == 2 * 2 * 16
    assert torch.equal(net.g_s[0].weight, hp.g_s[0].weight)
    # g_a's output is the hyperprior's latent times gain * inv_gain of quality 3
    g = hp.gains(torch.tensor([3.0]))
    x = crops[0]
    with torch.no_grad():
        assert torch.allclose(net.g_a(x), hp.g_a(x) * g["y"] * g["y_inv"], atol=1e-5)
    path = weights.save(net, tmp_path / "vq.safetensors", "vq-test")
    res = codec.encode(photo, quality=2, model=path)
    assert np.array_equal(codec.decode(res.data, model=path).rgb, res.picture.rgb)
    with pytest.raises(ValueError, match="fewer than 9 stages"):
        vq_from_hyperprior(hp, crops, codebook=8, vq_dim=4, stages=9)
    with pytest.raises(ValueError, match="a trained level"):
        vq_from_hyperprior(hp, crops, codebook=8, vq_dim=4, stages=2, quality=0)


def test_neighbour_indices_and_the_copy_term():
    from codec.models import neighbour_indices
    grid = np.arange(12).reshape(3, 4)
    rest = np.zeros((3, 4), bool)
    rest[0, 0] = rest[1, 1] = True
    nb = neighbour_indices(grid, rest)
    assert nb.tolist() == [[4, -1, 1, -1], [9, 1, 6, 4]]
    net = VQCodec(replace_cfg(VQ_CFG, context=True))
    net.copy_int.fill_(65536)  # copy weight 1: the rows are the neighbour shares alone
    probs = net.copy_probs(np.array([[3, 5], [5, 0]]), 0, 0, np.array([[False, True], [True, False]]))
    assert probs[0, 3] == probs[0, 0] == probs[1, 3] == probs[1, 0] == 0.5  # (the 5s are not neighbours)
    assert probs.sum(1).tolist() == [1.0, 1.0]


def test_vq_context_fit_codes_fewer_bits_and_round_trips_exactly(vq_file, folder_of, photo, tmp_path):
    from codec.training.refit import fit_vq_context, with_context
    net = with_context(weights.load(vq_file).net)
    fit = fit_vq_context(net, [folder_of])
    assert fit["context_bits_per_index"] <= fit["factorized_bits_per_index"] + 1e-9
    assert net.copy_int.shape[-1] == 5 and (net.copy_int[..., 0] == 0).all()   # 0: no neighbours
    assert ((net.copy_int >= 0) & (net.copy_int < 65536)).all() and (net.copy_int[..., 1:] > 0).any()
    assert_round_trips_exactly(photo, weights.save(net, tmp_path / "vqctx.safetensors", "vq-ctx"), 3)


def test_agreement_counts_the_largest_group_of_equal_neighbours():
    from codec.models import agreement
    nb = np.array([[4, 4, 4, 4], [4, -1, 4, 2], [1, 2, 3, -1], [-1, -1, -1, -1], [5, 6, 5, 6]])
    assert agreement(nb).tolist() == [4, 2, 1, 0, 2]


def test_vq_files_with_one_copy_weight_per_stage_and_group_still_decode(vq_file, photo, tmp_path):
    """The context model of earlier files had one copy weight per (stage, group)."""
    from codec.models import checkerboard
    from codec.training.refit import with_context
    net = with_context(weights.load(vq_file).net)
    net.copy_int = torch.full(net.copy_int.shape[:2], 20000, dtype=torch.int32)
    old = weights.load(weights.save(net, tmp_path / "old.safetensors", "vq-old")).net
    assert old.copy_int.shape == net.copy_int.shape
    new = with_context(weights.load(vq_file).net)
    new.copy_int.fill_(20000)
    grid = np.random.default_rng(1).integers(0, 16, (6, 5))
    rest = ~checkerboard(6, 5).numpy()
    assert np.array_equal(old.copy_probs(grid, 1, 0, rest), new.copy_probs(grid, 1, 0, rest))
    assert_round_trips_exactly(photo, tmp_path / "old.safetensors", 3)


def replace_cfg(cfg, **kw):
    from dataclasses import replace
    return replace(cfg, **kw)


def _rd_model(vq_file, folder_of, rd):
    from codec.training.refit import fit_vq_context, with_context
    net = with_context(weights.load(vq_file).net)
    fit_vq_context(net, [folder_of])
    net.cfg = replace_cfg(net.cfg, vq_rd=rd)
    return net


def test_vq_rate_weighted_assignment_trades_error_for_bits(vq_file, folder_of, photo):
    net = _rd_model(vq_file, folder_of, 0.0)
    x = torch.from_numpy(photo[:64, :96]).permute(2, 0, 1)[None].float() / 255
    y = net.g_a(x)
    nearest = net.assign(y, 3)
    assert torch.equal(nearest, net.vq(y, torch.tensor([3]))[1][:3])       # rd 0: the nearest entries
    y_hat = net.vq.lookup(nearest, 3)
    syms = net.assign(y, 3, 1e6)
    assert syms.shape == nearest.shape and (net.vq.lookup(syms, 3) - y).pow(2).sum() > (y_hat - y).pow(2).sum()
    # an overwhelming rate weight: every anchor of stage 1 takes its group's most probable entry
    from codec.models import checkerboard
    anchor = checkerboard(*y.shape[-2:])
    for g in range(net.groups):
        assert (syms[0, 0, g][anchor] == int(net.pmf_int[0, g].argmax())).all()
    # one weight per stage: none at the first, overwhelming at the second
    syms = net.assign(y, 3, (0.0, 1e6, 0.0))
    assert torch.equal(syms[0], nearest[0])
    for g in range(net.groups):
        assert (syms[1, 0, g][anchor] == int(net.pmf_int[1, g].argmax())).all()


def test_vq_rate_weighted_files_are_smaller_and_decode_exactly(vq_file, folder_of, photo, tmp_path):
    plain = weights.save(_rd_model(vq_file, folder_of, 0.0), tmp_path / "plain.safetensors", "vq-plain")
    rd = weights.save(_rd_model(vq_file, folder_of, 1e6), tmp_path / "rd.safetensors", "vq-rd")
    assert weights.load(rd).config.vq_rd == 1e6 and "vq_rd" not in weights.file_metadata(plain)["config"]
    a, b = (codec.encode(photo, quality=3, model=m) for m in (plain, rd))
    assert len(b.data) < len(a.data)
    assert_round_trips_exactly(photo, rd, 3)


def test_refit_cli_with_a_rate_weight(vq_file, bin_file, folder_of, photo, tmp_path):
    from click.testing import CliRunner

    from cli.main import main
    out = tmp_path / "rd.safetensors"
    r = CliRunner().invoke(main, ["refit", str(vq_file), str(folder_of), "-o", str(out), "--rd", "0.5", "--rounds", "2"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["rd"] == 0.5 and len(res["bits_per_index_by_round"]) == 2
    lm = weights.load(out)
    assert lm.config.vq_rd == 0.5 and lm.config.context and lm.meta["prior_refit"]["rd"] == 0.5
    assert_round_trips_exactly(photo, out, 2)
    r = CliRunner().invoke(main, ["refit", str(bin_file), str(folder_of), "-o", str(tmp_path / "b.safetensors"),
                                  "--rd", "0.5"])
    assert r.exit_code == 1 and "VQ models only" in r.stderr
    rel = tmp_path / "rel.safetensors"
    r = CliRunner().invoke(main, ["refit", str(vq_file), str(folder_of), "-o", str(rel), "--rd-relative", "0.25"])
    assert r.exit_code == 0, r.output
    cfg = weights.load(rel).config
    from codec.training.refit import stage_slopes
    slopes = stage_slopes(weights.load(vq_file).net, [folder_of])
    assert cfg.vq_rd == pytest.approx(tuple(0.25 * v for v in slopes), rel=1e-4)
    assert_round_trips_exactly(photo, rel, 3)


def test_vq_stage_slopes_fall_with_each_stage(vq_file, folder_of):
    from codec.training.refit import stage_slopes
    slopes = stage_slopes(weights.load(vq_file).net, [folder_of])
    assert len(slopes) == VQ_CFG.levels and all(v > 0 for v in slopes)
    assert slopes[0] > slopes[-1]               # the first stage removes the most error per bit


def test_fits_read_the_same_latents_from_folders_or_from_a_kept_list(vq_file, folder_of):
    from codec.training.refit import refit_vq_prior, stage_slopes, training_latents
    a, b = weights.load(vq_file).net, weights.load(vq_file).net
    latents = training_latents(a, [folder_of])
    assert len(latents) == 4                      # 2 training images x 2 scales (the third is held out)
    refit_vq_prior(a, [folder_of])
    refit_vq_prior(b, latents)
    assert torch.equal(a.pmf_int, b.pmf_int)
    assert stage_slopes(a, [folder_of], every=1) == stage_slopes(a, latents, every=1)


def test_codebook_design_lowers_the_encoders_cost_and_revives_unused_entries(vq_file, folder_of):
    from dataclasses import replace

    from codec.training.refit import design_codebooks, training_latents
    net = weights.load(vq_file).net
    latents = training_latents(net, [folder_of])
    with torch.no_grad():
        net.vq.codebooks[0, :, :4] = 50.0          # four entries per group that nothing is near
    res = design_codebooks(net, latents, iterations=4)  # rd 0: k-means, every entry revived
    first = res["stages"][0]
    assert first["before"]["used"] <= 12 / 16 and first["after"]["used"] == 1.0
    assert first["after"]["mse"] < first["before"]["mse"]
    assert (net.vq.codebooks[0].abs() < 50).all()
    rd = 5e-5                                       # about a third of the tiny model's error per index
    net = weights.load(vq_file).net
    net.cfg = replace(net.cfg, vq_rd=rd)
    res = design_codebooks(net, latents, iterations=4)
    for st in res["stages"]:                        # error + rd * bits: what the encoder minimises
        b, a = st["before"], st["after"]
        assert a["mse"] + rd * a["bits"] < b["mse"] + rd * b["bits"]
    assert torch.allclose(torch.softmax(net.prior_logits, -1).sum(-1), torch.ones(VQ_CFG.levels, net.groups))


def test_refit_cli_redesigns_codebooks_into_a_model_that_round_trips(vq_file, folder_of, photo, tmp_path):
    from click.testing import CliRunner

    from cli.main import main
    out = tmp_path / "lloyd.safetensors"
    r = CliRunner().invoke(main, ["refit", str(vq_file), str(folder_of), "-o", str(out),
                                  "--rd", "5e-5", "--codebooks", "2", "--rounds", "2"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["codebooks"]["iterations"] == 2 and len(res["codebooks"]["stages"]) == VQ_CFG.levels
    assert not torch.equal(weights.load(out).net.vq.codebooks, weights.load(vq_file).net.vq.codebooks)
    assert_round_trips_exactly(photo, out, 3)


def test_training_picks_the_indices_the_rate_weighted_encoder_codes(vq_file, folder_of, photo):
    from dataclasses import replace

    from codec.training.refit import refit_vq_prior
    net = weights.load(vq_file).net
    refit_vq_prior(net, [folder_of])                    # prior_logits and the coding tables agree
    x = torch.from_numpy(photo[:64, :64]).permute(2, 0, 1)[None].float() / 255
    y = net.g_a(x).detach()
    S = VQ_CFG.levels
    nearest = net.vq(y, torch.tensor([S]), net.rate_cost())[1]
    assert net.rate_cost() is None and torch.equal(nearest, net.assign(y, S))
    net.cfg = replace(net.cfg, vq_rd=5e-5)
    picked = net.vq(y, torch.tensor([S]), net.rate_cost())[1]
    assert torch.equal(picked, net.assign(y, S)) and not torch.equal(picked, nearest)


def test_resizing_keeps_the_most_probable_entries_and_full_size_changes_no_pixel(vq_file, folder_of, photo, tmp_path):
    from codec.training.refit import refit_vq_prior
    net = weights.load(vq_file).net
    refit_vq_prior(net, [folder_of])
    before = assert_round_trips_exactly(photo, weights.save(net, tmp_path / "a.safetensors", "vq-a"), 3)[0]
    p0 = net.table_probs()
    top = torch.sort(p0[0], stable=True, dim=-1, descending=True)
    books = net.vq.codebooks[0].detach().clone()
    net.resize([VQ_CFG.codebook] * VQ_CFG.levels)          # full size: entries sorted, nothing else
    assert net.cfg.vq_sizes == () and torch.allclose(net.table_probs()[0], top.values)
    assert torch.equal(net.vq.codebooks[0], torch.gather(books, 1, top.indices[..., None].expand_as(books)))
    after = codec.encode(photo, quality=3, model=weights.save(net, tmp_path / "b.safetensors", "vq-b"))
    assert np.array_equal(after.picture.rgb, before.picture.rgb)
    net.resize([4, 16, 8])
    assert net.cfg.vq_sizes == (4, 16, 8) and net.vq.sizes == (4, 16, 8)
    p = net.table_probs()
    assert (p[0, :, 4:] == 0).all() and (p[2, :, 8:] == 0).all() and torch.allclose(p.sum(-1), torch.ones_like(p[..., 0]))
    with pytest.raises(ValueError, match="one codebook size in 1..16 per stage"):
        net.resize([4, 16])
    with pytest.raises(ValueError, match="per stage"):
        net.resize([0, 16, 16])


@pytest.mark.parametrize("context", [False, True])
def test_vq_with_smaller_stages_picks_and_codes_only_their_entries(vq_file, folder_of, photo, tmp_path, context):
    from codec.training.refit import design_codebooks, refit_vq, training_latents, with_context
    net = weights.load(vq_file).net
    net = with_context(net) if context else net
    net.cfg = replace_cfg(net.cfg, vq_rd=5e-5)
    net.resize([4, 16, 8])
    latents = training_latents(net, [folder_of])
    res = design_codebooks(net, latents, iterations=2)
    assert res["stages"][0]["after"]["used"] == 1.0      # the share of the 4 entries in use
    refit_vq(net, latents, rounds=1)
    x = torch.from_numpy(photo[:64, :96]).permute(2, 0, 1)[None].float() / 255
    y = net.g_a(x)
    syms = net.assign(y, 3)
    assert syms[0].max() < 4 and syms[2].max() < 8 and syms[1].max() >= 8
    assert (net.vq(y, torch.tensor([3]))[1][0] < 4).all()   # the quantizer's own search too
    path = weights.save(net, tmp_path / "small.safetensors", "vq-small")
    lm = weights.load(path)
    assert lm.config.vq_sizes == (4, 16, 8) and lm.net.vq.sizes == (4, 16, 8)
    assert '"vq_sizes": [4, 16, 8]' in weights.file_metadata(path)["config"]
    for q in (1, 3):
        assert_round_trips_exactly(photo, path, q)
    # the coder spends what the 4-entry pmfs say the indices cost (within ANS's 32-bit words)
    one = codec.encode(photo, quality=1, model=path, tile=0)
    if not context:
        from codec import tiling
        first = lm.net.assign(tiling.analyse(lm.net, photo, 0), 1)[0, 0]          # (G, h, w)
        p = lm.net.table_probs()[0]
        ideal = float(-torch.log2(torch.stack([p[g][first[g].reshape(-1)] for g in range(lm.net.groups)])).sum())
        side, crcs, indices = container.unpack(one.data)[0].stream_lengths
        assert side == 0 and ideal - 1 <= 8 * indices <= ideal + 64


def test_refit_cli_sizes(vq_file, bin_file, folder_of, photo, tmp_path):
    from click.testing import CliRunner

    from cli.main import main
    out = tmp_path / "s.safetensors"
    r = CliRunner().invoke(main, ["refit", str(vq_file), str(folder_of), "-o", str(out), "--rd", "5e-5",
                                  "--sizes", "4,16,8", "--codebooks", "2", "--rounds", "1"])
    assert r.exit_code == 0, r.output
    assert weights.load(out).config.vq_sizes == (4, 16, 8) and json.loads(r.stdout)["sizes"] == [4, 16, 8]
    assert_round_trips_exactly(photo, out, 2)
    for bad in ("4,16", "4,x,8", "4,99,8"):
        r = CliRunner().invoke(main, ["refit", str(vq_file), str(folder_of), "-o", str(tmp_path / "t.safetensors"),
                                      "--sizes", bad])
        assert r.exit_code == 1 and r.stderr.startswith("aecodec: error: --sizes") and len(r.stderr.strip().splitlines()) == 1
    r = CliRunner().invoke(main, ["refit", str(bin_file), str(folder_of), "-o", str(tmp_path / "b.safetensors"),
                                  "--sizes", "4,16,8"])
    assert r.exit_code == 1 and "VQ models only" in r.stderr


def _classes_model(vq_file, folder_of, classes=4, rd=5e-5):
    from codec.training.refit import refit_vq, training_latents, with_context
    net = with_context(weights.load(vq_file).net, classes)
    net.cfg = replace_cfg(net.cfg, vq_rd=rd)
    res = refit_vq(net, training_latents(net, [folder_of]), rounds=2)
    return net, res


def test_vq_energy_classes_pick_the_pmf_by_the_error_the_last_stage_left():
    net = VQCodec(replace_cfg(VQ_CFG, context=True, vq_classes=3))
    net.energy_int[0] = torch.arange(16)[None, :] * 10        # entry k leaves 10k per group
    net.class_edges[1] = torch.tensor([100, 200])
    prev = np.zeros((3, 2, 2), np.int64)
    prev[:, 0, 1] = 3      # 3 groups x 30 = 90: class 0
    prev[:, 1, 0] = 4      # 120: class 1
    prev[:, 1, 1] = 15     # 450: class 2
    assert net.stage_classes(1, prev).tolist() == [[0, 0], [1, 2]]
    net.pmf_class_int[1, :, 2] = 0
    net.pmf_class_int[1, :, 2, 7] = 5
    rows = net.base_rows(1, prev)
    assert len(rows) == net.groups and rows[0].shape == (4, 16)
    assert rows[0][3, 7] == 1.0 and np.allclose(rows[0][:3], 1 / 16)
    # stage 1: its anchors under the factorized pmf (class -1), the others by their anchor neighbours
    net.class_edges[0] = torch.tensor([400, 800])
    known = np.zeros((3, 2, 3), np.int64)
    known[:, 0, 0] = 2     # anchor (0, 0): 3 x 20 = 60
    known[:, 1, 1] = 10    # anchor (1, 1): 300
    known[:, 0, 2] = 15    # anchor (0, 2): 450
    known[:, 1, 0] = 15    # not an anchor: ignored
    # (0, 1): 4 x (60 + 300 + 450) // 3 = 1080; (1, 0): 4 x (60 + 300) // 2 = 720; (1, 2): 4 x (300 + 450) // 2 = 1500
    assert net.stage_energy(0, known)[[0, 1, 1], [1, 0, 2]].tolist() == [1080, 720, 1500]
    assert net.stage_classes(0, known).tolist() == [[-1, 2, -1], [1, -1, 2]]


def test_vq_energy_classes_fit_code_fewer_bits_and_round_trip_exactly(vq_file, folder_of, photo, tmp_path):
    net, res = _classes_model(vq_file, folder_of)
    assert res["classes"] == 4 and res["context_bits_per_index"] < res["factorized_bits_per_index"]
    edges = net.class_edges[1:]
    assert (edges[:, 1:] >= edges[:, :-1]).all() and (net.energy_int >= 0).all() and (net.pmf_class_int > 0).any()
    path = weights.save(net, tmp_path / "cls.safetensors", "vq-cls")
    lm = weights.load(path)
    assert lm.config.vq_classes == 4 and torch.equal(lm.net.pmf_class_int, net.pmf_class_int)
    for q in (1, 3):
        assert_round_trips_exactly(photo, path, q)
    # the coder spends what the class pmfs and the copy term say (within ANS's 32-bit words)
    from codec import tiling
    from codec.models import checkerboard
    one = codec.encode(photo, quality=3, model=path, tile=0)
    net = lm.net
    syms = net.assign(tiling.analyse(net, photo, 0), 3)[:, 0].numpy()
    anchor = checkerboard(*syms.shape[-2:]).numpy()
    ideal = 0.0
    for s in range(3):
        pmfs, positions, rest = net._class_parts(s, syms[s - 1] if s else None, anchor)
        anchors = syms[s][:, anchor]
        assert sorted(np.concatenate([pos + g * anchors.shape[1] for g, pos in positions])) == list(range(anchors.size))
        ideal += sum(float(-np.log2(pmf[anchors[g][pos]]).sum()) for (g, pos), pmf in zip(positions, pmfs))
        others, probs = syms[s][:, ~anchor].reshape(-1), rest(syms[s])
        ideal += float(-np.log2(probs[np.arange(len(others)), others]).sum())
    indices = container.unpack(one.data)[0].stream_lengths[2]
    assert ideal - 1 <= 8 * indices <= ideal + 64


def test_vq_energy_classes_decode_bit_exactly_in_another_process(vq_file, folder_of, photo, tmp_path):
    import hashlib
    import subprocess
    import sys

    from test_pipeline import DECODE_SCRIPT
    net, _ = _classes_model(vq_file, folder_of)
    path = weights.save(net, tmp_path / "cls.safetensors", "vq-cls")
    res = codec.encode(photo, quality=3, model=path, tile=64)
    f = tmp_path / "x.aec"
    f.write_bytes(res.data)
    for threads in (1, 2):
        out = subprocess.run([sys.executable, "-c", DECODE_SCRIPT, str(f), str(path), str(threads)],
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == hashlib.sha256(res.picture.rgb.tobytes()).hexdigest()


def test_refit_cli_classes(vq_file, bin_file, folder_of, photo, tmp_path):
    from click.testing import CliRunner

    from cli.main import main
    out = tmp_path / "c.safetensors"
    r = CliRunner().invoke(main, ["refit", str(vq_file), str(folder_of), "-o", str(out), "--rd", "5e-5",
                                  "--classes", "3", "--rounds", "1"])
    assert r.exit_code == 0, r.output
    assert weights.load(out).config.vq_classes == 3 and json.loads(r.stdout)["classes"] == 3
    assert_round_trips_exactly(photo, out, 2)
    back = tmp_path / "none.safetensors"    # and back to no classes
    r = CliRunner().invoke(main, ["refit", str(out), str(folder_of), "-o", str(back), "--classes", "0", "--rounds", "1"])
    assert r.exit_code == 0, r.output
    assert weights.load(back).config.vq_classes == 0 and '"vq_classes"' not in weights.file_metadata(back)["config"]
    assert_round_trips_exactly(photo, back, 2)
    for args, msg in ((["--classes", "1"], "--classes: give 0"), (["--classes", "3", "--no-context"], "needs the context")):
        r = CliRunner().invoke(main, ["refit", str(vq_file), str(folder_of), "-o", str(tmp_path / "t.safetensors"), *args])
        assert r.exit_code == 1 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = CliRunner().invoke(main, ["refit", str(bin_file), str(folder_of), "-o", str(tmp_path / "b.safetensors"),
                                  "--classes", "3"])
    assert r.exit_code == 1 and "VQ models only" in r.stderr
