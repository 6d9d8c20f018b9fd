"""The post-filter (codec/post.py) and its training (codec/training/post.py)."""

import dataclasses
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import codec
from codec import container, pipeline, tiling, weights
from codec.post import PostFilter
from codec.training import post as tp

from conftest import photo_folder as _folder
from test_pipeline import decoded_elsewhere


def test_untrained_filter_changes_nothing():
    x = torch.rand(2, 3, 32, 48)
    assert torch.equal(PostFilter()(x, torch.tensor([1.0, 7.0])), x)


def test_a_deepened_filter_computes_the_same_and_trains_on(post_model):
    pf = weights.load(post_model).net.post
    deep = pf.deepened(pf.layers + 2)
    x, q = torch.rand(2, 3, 32, 48), torch.tensor([0.0, 6.0])
    assert (deep.width, deep.layers) == (pf.width, pf.layers + 2)
    assert torch.allclose(deep(x, q), pf(x, q), atol=1e-6) and not torch.allclose(pf(x, q), x, atol=1e-3)
    # the identity layers are trainable like the rest, and deepening never removes layers
    deep.enable()
    deep(x, q).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in deep.parameters() if p.dim() == 4)
    with pytest.raises(ValueError, match="cannot deepen"):
        pf.deepened(pf.layers - 1)


def test_a_widened_filter_computes_the_same_and_its_new_channels_learn(post_model):
    pf = weights.load(post_model).net.post
    wide = pf.widened(pf.width + 8, torch.Generator().manual_seed(0))
    x, q = torch.rand(2, 3, 32, 48), torch.tensor([0.0, 6.0])
    assert (wide.width, wide.layers) == (pf.width + 8, pf.layers)
    assert torch.allclose(wide(x, q), pf(x, q), atol=1e-6) and not torch.allclose(pf(x, q), x, atol=1e-3)
    # the new channels are alive: the weights reading them get gradients at once, and after one
    # step (they are read now) so do the weights feeding them
    wide.enable()
    convs = [m for m in wide.body if isinstance(m, torch.nn.Conv2d)]
    opt = torch.optim.SGD(wide.parameters(), lr=0.1)
    wide(x, q).square().mean().backward()
    assert all(c.weight.grad[:, pf.width:].abs().sum() > 0 for c in convs[1:])
    opt.step()
    opt.zero_grad()
    wide(x, q).square().mean().backward()
    assert all(c.weight.grad[pf.width:].abs().sum() > 0 for c in convs[:-1])
    # deepened and widened together still compute the same
    both = pf.deepened(pf.layers + 1).widened(pf.width + 4)
    assert torch.allclose(both(x, q), pf(x, q), atol=1e-6)
    with pytest.raises(ValueError, match="cannot narrow"):
        pf.widened(pf.width - 1)


def test_coding_form_matches_the_training_form(post_model):
    net = weights.load(post_model).net
    x = torch.rand(1, 3, 64, 96)
    want = net.post(x, torch.tensor([3.0]))
    got = net.post_filter(x, 3.0)
    assert torch.allclose(got, want, atol=1e-5) and not torch.allclose(got, x, atol=1e-3)


def test_row_parts_see_the_filters_whole_receptive_field(post_model):
    """Cut in two row parts, the filter computes what it computes whole; one
    half-resolution row of context less, and the cut shows."""
    from codec.fast import accelerate, run_rows
    net = weights.load(post_model).net
    x = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        whole = net.post.run(accelerate(net.post.body), x, 3.0)
        assert torch.allclose(net.post_filter(x, 3.0), whole, atol=1e-5)
        assert torch.allclose(net.post_filter(x, 3.0, "channels"), whole, atol=1e-5)
        short = run_rows(lambda p: net.post.run(accelerate(net.post.body), p, 3.0), x, 32, net.post.margin - 2)
    assert not torch.allclose(short, whole, atol=1e-3)


def test_round_trip_is_exact_and_flagged(post_model, photo):
    res = codec.encode(photo, quality=5, model=post_model, tile=64)
    assert res.header.post and res.header.to_dict()["post"]
    assert np.array_equal(codec.decode(res.data, model=post_model).rgb, res.picture.rgb)
    lm = weights.load(post_model)
    assert res.header.weights == lm.hash_for(False, True) != lm.hash_for(False, False)


def test_the_filter_changes_the_pixels(post_model, photo):
    net = weights.load(post_model).net
    _, plain = tiling.encode(net, photo, 5.0, 0, post=False)
    _, filtered = tiling.encode(net, photo, 5.0, 0, post=True)
    assert not np.array_equal(plain, filtered)


@pytest.mark.parametrize("threads", [1, 2])
def test_decoding_in_another_process_is_bit_exact(post_model, photo, tmp_path, threads):
    res = codec.encode(photo, quality=6.5, model=post_model, tile=64)
    assert decoded_elsewhere(res, post_model, tmp_path, threads)


@pytest.mark.parametrize("views", [1, 2, 4, 8])
def test_each_view_inverts_its_map(views):
    from codec.post import VIEWS
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    to, back = VIEWS[views - 1]
    assert torch.equal(back(to(x)), x)
    assert len({tuple(to(x).flatten().tolist()) for to, _ in VIEWS}) == len(VIEWS)   # eight different views


def test_views_are_flagged_change_the_pixels_and_decode_exactly(post_model, photo):
    pics = {}
    for views in (1, 2, 4, 8):
        res = codec.encode(photo, quality=5, model=post_model, tile=64, post_views=views)
        assert res.header.post_views == views == res.header.to_dict()["post_views"]
        assert container.unpack(res.data)[0].post_views == views
        assert np.array_equal(codec.decode(res.data, model=post_model).rgb, res.picture.rgb)
        pics[views] = res.picture.rgb
    assert len({p.tobytes() for p in pics.values()}) == 4
    default = codec.encode(photo, quality=5, model=post_model, tile=64)
    assert default.header.post_views == pipeline.DEFAULT_POST_VIEWS
    assert np.array_equal(default.picture.rgb, pics[pipeline.DEFAULT_POST_VIEWS])


def test_views_average_the_filter_over_the_mapped_pictures(post_model):
    """post_filter with views = the mean of the filter run on each view,
    mapped back (up to float rounding: the coding form cuts rows)."""
    from codec.post import VIEWS
    net = weights.load(post_model).net
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        want = sum(back(net.post(to(x), torch.tensor([4.0]))) for to, back in VIEWS[:4]) / 4
    got = net.post_filter(x, 4.0, "rows", 4)
    assert got.dtype == torch.float32 and torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, net.post_filter(x, 4.0, "rows", 1), atol=1e-4)


@pytest.mark.parametrize("threads", [1, 2])
def test_views_decode_bit_exactly_in_another_process(post_model, photo, tmp_path, threads):
    res = codec.encode(photo, quality=3.5, model=post_model, tile=64, post_views=4)
    assert decoded_elsewhere(res, post_model, tmp_path, threads)


def test_a_region_of_a_file_with_views_decodes_exactly(post_model, photo):
    res = codec.encode(photo, quality=5, model=post_model, tile=64, post_views=2)
    part = pipeline.decode(res.data, model=post_model, region=(70, 10, 20, 50))
    assert np.array_equal(part.rgb, res.picture.rgb[10:60, 70:90])


def test_bad_views_are_refused(post_model, tiny_model, photo):
    for bad in (0, 3, 16, True, 2.0, "2"):
        with pytest.raises(ValueError, match="views must be one of 1, 2, 4, 8"):
            codec.encode(photo, quality=5, model=post_model, post_views=bad)
    with pytest.raises(ValueError, match="has no post-filter"):
        codec.encode(photo, quality=5, model=tiny_model, post_views=2)
    plain = codec.encode(photo, quality=5, model=tiny_model, post_views=1)
    assert plain.header.post_views == 1 and not plain.header.post
    assert codec.encode(photo, quality=5, model=tiny_model).header.flags == plain.header.flags


def test_files_from_before_the_filter_still_decode(tmp_path, photo):
    """Adding a post-filter to a weights file keeps the hash that files coded
    without it carry, and they decode without it, as before."""
    from conftest import add_tiny_post, make_tiny_model
    path = make_tiny_model(tmp_path / "m.safetensors", model_id="m")
    old = codec.encode(photo, quality=5, model=path)
    before = weights.load(path)
    net = add_tiny_post(before.net)
    tensors = load_file(str(path))
    tensors.update(net.post.state_dict(prefix=weights.POST_PREFIX))
    weights.write_safetensors(tensors, path, weights.file_metadata(path))
    after = weights.load(path)
    assert after.net.has_post and after.hash_for(False, False) == before.weights_hash
    assert after.weights_hash != before.weights_hash
    assert not old.header.post
    assert np.array_equal(codec.decode(old.data, model=path).rgb, old.picture.rgb)
    new = codec.encode(photo, quality=5, model=path)
    assert new.header.post and new.header.weights == after.hash_for(False, True)
    assert not np.array_equal(new.picture.rgb, old.picture.rgb)


def test_a_model_without_the_filter_refuses_filtered_files(post_model, tiny_model, photo):
    res = codec.encode(photo, quality=5, model=post_model)
    header, streams = container.unpack(res.data)
    lm = weights.load(tiny_model)
    forged = dataclasses.replace(header, model=lm.model_id, weights=lm.hash_for(False, True))
    with pytest.raises(pipeline.DecodeError, match="post-filter"):
        codec.decode(container.pack(forged, streams), model=tiny_model)


def test_weights_without_a_filter_save_none(tiny_model):
    lm = weights.load(tiny_model)
    assert not lm.net.has_post and not any(k.startswith("post.") for k in lm.net.state_dict())
    assert len(set(lm.hashes.values())) == 1


def test_refinement_runs_through_the_filter(post_model, photo):
    res = codec.encode(photo, quality=4, model=post_model, effort=2)
    assert res.header.post
    assert np.array_equal(codec.decode(res.data, model=post_model).rgb, res.picture.rgb)


def test_training_installs_a_filter_and_resumes(tiny_model, photo, tmp_path):
    data = _folder(tmp_path, photo)
    out, dst = tmp_path / "run", tmp_path / "with-post.safetensors"
    kw = dict(decay_at=(3,), crops=8, crop=64, val_crops=2, val_crop=64, batch=2, validate_every=2)
    first = tp.run(tiny_model, [data], out, steps=2, **kw)
    assert first["steps"] == 2
    rep = tp.run(tiny_model, [data], out, steps=4, resume=True, output=dst, **kw)
    assert rep["steps"] == 4 and rep["post_tensors"] == 10
    lm, base = weights.load(dst), weights.load(tiny_model)
    assert lm.net.has_post and lm.hash_for(False, False) == base.weights_hash
    assert set(lm.meta["post"]["validation_psnr_gain_db"]) == {"q-1", "q1", "q4", "q8"}
    res = codec.encode(photo, quality=3, model=dst)
    assert res.header.post and np.array_equal(codec.decode(res.data, model=dst).rgb, res.picture.rgb)
    # a resumed run continues exactly: 2 + 2 steps give the 4-step run's filter
    straight = tp.run(tiny_model, [data], tmp_path / "run2", steps=4, **kw)
    a = torch.load(out / "ckpt.pt", weights_only=True)["post"]
    b = torch.load(tmp_path / "run2" / "ckpt.pt", weights_only=True)["post"]
    assert straight["steps"] == 4 and all(torch.equal(a[k], b[k]) for k in a)


def test_install_records_where_the_filter_was_trained(tiny_model, photo, tmp_path):
    data = _folder(tmp_path, photo)
    kw = dict(crops=2, crop=64, val_crops=1, val_crop=64, batch=2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        tp.run(tiny_model, [data], tmp_path / "run", steps=1, **kw)
        torch.set_num_threads(2)  # installed later, elsewhere: the card still names the training's threads
        tp.run(tiny_model, [data], tmp_path / "run", steps=1, install_only=True,
               output=tmp_path / "w.safetensors", **kw)
    finally:
        torch.set_num_threads(threads)
    assert weights.load(tmp_path / "w.safetensors").meta["post"]["hardware"].endswith("1 torch thread")


def test_install_records_the_runs_settings_and_refuses_another_models_run(tiny_model, other_model, photo,
                                                                           tmp_path):
    """An install reports how the run trained, not what its own command line
    says; a run coded for one model does not install into another."""
    data = _folder(tmp_path, photo)
    kw = dict(crops=2, crop=64, val_crops=1, val_crop=64, batch=2)
    tp.run(tiny_model, [data], tmp_path / "run", steps=2, decay_at=(1,), lr=3e-4, seed=5, **kw)
    tp.run(tiny_model, [data], tmp_path / "run", steps=9, decay_at=(5,), install_only=True,
           output=tmp_path / "w.safetensors", **{**kw, "batch": 4})
    post = weights.load(tmp_path / "w.safetensors").meta["post"]
    assert (post["lr"], post["decay_at"], post["batch"], post["steps"], post["seed"]) == (3e-4, [1], 2, 2, 5)
    with pytest.raises(ValueError, match="another weights file"):
        tp.run(other_model, [data], tmp_path / "run", steps=2, install_only=True,
               output=tmp_path / "o.safetensors", **kw)
    assert not (tmp_path / "o.safetensors").exists()


def test_a_new_seed_draws_new_crops_and_the_same_seed_the_same(tiny_model, photo, tmp_path):
    data = _folder(tmp_path, photo)
    kw = dict(crops=6, crop=64, val_crops=1, val_crop=64, batch=2)
    banks = []
    for i, seed in enumerate((0, 0, 1)):
        tp.run(tiny_model, [data], tmp_path / f"run{i}", steps=0, seed=seed, **kw)
        banks.append(torch.load(tmp_path / f"run{i}" / "bank.pt", weights_only=True)["train"])
    assert all(torch.equal(a, b) for a, b in zip(banks[0], banks[1]))
    assert not torch.equal(banks[0][0], banks[2][0]) and not torch.equal(banks[0][2], banks[2][2])


def test_init_continues_the_files_filter_and_records_it(post_model, photo, tmp_path):
    data = _folder(tmp_path, photo)
    kw = dict(crops=4, crop=64, val_crops=1, val_crop=64, batch=2, validate_every=10)
    lm = weights.load(post_model)
    # no steps: the continued filter is the file's own, tensor for tensor
    rep = tp.run(post_model, [data], tmp_path / "run", steps=0, init=True, output=tmp_path / "w.safetensors", **kw)
    got, want = load_file(str(tmp_path / "w.safetensors")), load_file(str(post_model))
    assert rep["steps"] == 0 and all(torch.equal(got[k], want[k]) for k in want if k.startswith("post."))
    # a continued filter keeps the history of the one it started from
    first = weights.load(tmp_path / "w.safetensors").meta["post"]
    assert "post" not in lm.meta and "before" not in first
    tp.run(tmp_path / "w.safetensors", [data], tmp_path / "run", steps=1, init=True,
           output=tmp_path / "w2.safetensors", **kw)
    assert weights.load(tmp_path / "w2.safetensors").meta["post"]["before"] == first
    # without --init the same run starts from the zero-output filter instead
    tp.run(post_model, [data], tmp_path / "run0", steps=0, output=tmp_path / "w0.safetensors", **kw)
    assert not load_file(str(tmp_path / "w0.safetensors"))["post.body.8.weight"].any()


def test_init_refuses_a_file_without_a_filter_or_of_another_shape(tiny_model, post_model, photo, tmp_path):
    data = _folder(tmp_path, photo)
    kw = dict(crops=2, crop=64, val_crops=1, val_crop=64)
    with pytest.raises(ValueError, match="no post-filter"):
        tp.run(tiny_model, [data], tmp_path / "a", steps=1, init=True, **kw)
    with pytest.raises(ValueError, match="not at most width 8"):
        tp.run(post_model, [data], tmp_path / "b", steps=1, init=True, width=8, **kw)
    layers = weights.load(post_model).net.post.layers
    with pytest.raises(ValueError, match="at most"):
        tp.run(post_model, [data], tmp_path / "c", steps=1, init=True, layers=layers - 1, **kw)


@pytest.mark.parametrize("grow", ["layers", "width"])
def test_init_with_more_layers_or_width_starts_from_the_grown_filter(post_model, photo, tmp_path, grow):
    """A larger --layers deepens the file's filter, a larger --width widens
    it; either way training starts from what the file's filter computes."""
    data = _folder(tmp_path, photo)
    kw = dict(crops=2, crop=64, val_crops=1, val_crop=64, batch=2)
    lm = weights.load(post_model)
    shape = {"layers": lm.net.post.layers, "width": lm.net.post.width}
    shape[grow] += {"layers": 1, "width": 8}[grow]
    dst = tmp_path / "grown.safetensors"
    tp.run(post_model, [data], tmp_path / "run", steps=0, init=True, output=dst, **shape, **kw)
    grown = weights.load(dst)
    assert {k: getattr(grown.net.post, k) for k in shape} == shape == {k: grown.meta["post"][k] for k in shape}
    # the same pictures as the file's own filter, coded and decoded with the grown file
    res = codec.encode(photo, quality=4, model=dst)
    ref = codec.encode(photo, quality=4, model=post_model)
    assert np.abs(res.picture.rgb.astype(int) - ref.picture.rgb.astype(int)).max() <= 1
    assert np.array_equal(codec.decode(res.data, model=dst).rgb, res.picture.rgb)
    # --init without a shape continues the file's filter as it is
    tp.run(dst, [data], tmp_path / "again", steps=0, init=True, output=tmp_path / "again.safetensors",
           width=None, layers=None, **kw)
    again = weights.load(tmp_path / "again.safetensors")
    assert {k: getattr(again.net.post, k) for k in shape} == shape


def test_training_refuses_a_vq_model(tmp_path, photo):
    from codec.models import ModelConfig, build
    net = build(ModelConfig(arch="vq", N=8, M=12, codebook=8, vq_dim=4, lambdas=(0.01, 0.05))).eval()
    path = weights.save(net, tmp_path / "vq.safetensors", "vq-test")
    with pytest.raises(ValueError, match="scalar"):
        tp.run(path, [_folder(tmp_path, photo)], tmp_path / "run", steps=1, crops=2, crop=64,
               val_crops=1, val_crop=64)
