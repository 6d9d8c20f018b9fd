"""Fine-tuning a scalar codec's synthesis at fixed latents (codec/training/decoder.py)."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import codec
from codec import tiling, weights
from codec.training import decoder as td

from conftest import photo_folder
from test_pipeline import decoded_elsewhere

KW = dict(crops=8, crop=64, val_crops=2, val_crop=64, batch=2, validate_every=2, lr=1e-3)


def test_the_bank_holds_what_the_decoder_receives(full_model, photo):
    """A bank entry run through g_s is g_s's output for the coded file."""
    net = weights.load(full_model).net
    rgb = np.ascontiguousarray(photo[:64, :64])
    y_in = td.coded_input(net, rgb, 3.5)
    with torch.no_grad():
        got = net.g_s(y_in[None])
    assert torch.allclose(got, tiling.synthesis_output(net, rgb, 3.5, True), atol=1e-5)


def test_training_changes_only_the_decoder_and_resumes(full_model, photo, tmp_path):
    data = photo_folder(tmp_path, photo)
    out, dst = tmp_path / "run", tmp_path / "tuned.safetensors"
    assert td.run(full_model, [data], out, steps=2, decay_at=(3,), **KW)["steps"] == 2
    rep = td.run(full_model, [data], out, steps=4, decay_at=(3,), resume=True, output=dst, **KW)
    assert rep["steps"] == 4
    old, new = load_file(str(full_model)), load_file(str(dst))
    assert set(old) == set(new)
    changed = {k for k in old if not torch.equal(old[k], new[k])}
    assert any(k.startswith("g_s.") for k in changed) and any(k.startswith("post.") for k in changed)
    assert all(k.startswith(td.DECODER_PREFIXES) for k in changed)
    entry = weights.load(dst).meta["decoder"][-1]
    assert entry["steps"] == 4 and set(entry["validation_psnr_gain_db"]) == {"q-1", "q1", "q4", "q8"}
    # a resumed run continues exactly: 2 + 2 steps give the 4-step run's decoder
    td.run(full_model, [data], tmp_path / "run2", steps=4, decay_at=(3,), **KW)
    a = torch.load(out / "ckpt.pt", weights_only=True)["decoder"]
    b = torch.load(tmp_path / "run2" / "ckpt.pt", weights_only=True)["decoder"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_continued_from_its_own_install_records_what_it_added(full_model, photo, tmp_path):
    """Resumed from the file its checkpoint went into, a run installs into
    that file again; the card entry holds the steps since, not the total."""
    data = photo_folder(tmp_path, photo)
    out, first, second = tmp_path / "run", tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    td.run(full_model, [data], out, steps=2, decay_at=(9,), output=first, **KW)
    (e1,) = weights.load(first).meta["decoder"]
    assert e1["steps"] == 2 and "continued_from" not in e1 and e1["run_steps"] == 2
    td.run(first, [data], out, steps=5, decay_at=(9,), resume=True, output=second, **KW)
    a, e2 = weights.load(second).meta["decoder"]
    assert a == e1 and e2["run"] == e1["run"]
    assert (e2["steps"], e2["continued_from"], e2["run_steps"]) == (3, 2, 5)
    # installing the same checkpoint again into a file that holds it is refused; elsewhere it is the whole run
    with pytest.raises(ValueError, match="already holds the run"):
        td.run(second, [data], out, install_only=True, output=tmp_path / "c.safetensors", **KW)
    rep = td.run(full_model, [data], out, install_only=True, output=tmp_path / "d.safetensors", **KW)
    (e3,) = weights.load(tmp_path / "d.safetensors").meta["decoder"]
    assert rep["steps"] == 5 and e3["steps"] == 5 and "continued_from" not in e3


@pytest.mark.parametrize("threads", [1, 2])
def test_a_tuned_decoder_keeps_the_bits_and_decodes_exactly_elsewhere(full_model, photo, tmp_path, threads):
    data = photo_folder(tmp_path, photo)
    dst = tmp_path / "tuned.safetensors"
    td.run(full_model, [data], tmp_path / "run", steps=3, output=dst, **KW)
    before = codec.encode(photo, quality=4.5, model=full_model, tile=64)
    res = codec.encode(photo, quality=4.5, model=dst, tile=64)
    assert res.header.context and res.header.post
    # the same latents, coded the same: only the weights hash in the header differs
    assert len(res.data) == len(before.data) and res.header.weights != before.header.weights
    assert not np.array_equal(res.picture.rgb, before.picture.rgb)
    assert np.array_equal(codec.decode(res.data, model=dst).rgb, res.picture.rgb)
    assert decoded_elsewhere(res, dst, tmp_path, threads)


def test_training_raises_the_psnr_it_trains_for(full_model, photo, tmp_path):
    """On one image's crops, the fine-tuned decoder reconstructs them better."""
    data = photo_folder(tmp_path, photo, n=2)
    rep = td.run(full_model, [data], tmp_path / "run", steps=30, output=tmp_path / "t.safetensors",
                 **{**KW, "validate_every": 30, "lr": 3e-3, "batch": 4})
    assert min(rep[k] for k in ("q-1", "q1", "q4", "q8")) > 0.2


def test_refuses_a_model_without_a_post_filter(tiny_model, photo, tmp_path):
    with pytest.raises(ValueError, match="no.*post-filter|has none"):
        td.run(tiny_model, [photo_folder(tmp_path, photo)], tmp_path / "run", steps=1, **KW)


def test_cli_refuses_bad_runs_before_any_work(full_model, photo, tmp_path):
    from click.testing import CliRunner

    from cli.main import main
    data = photo_folder(tmp_path, photo)
    dst = tmp_path / "d.safetensors"
    dst.write_bytes(b"keep")
    args = ["train-decoder", str(data), "--weights", str(full_model), "--out", str(tmp_path / "run"),
            "--crop", "64", "--crops", "4", "--steps", "1"]
    r = CliRunner().invoke(main, args + ["-o", str(dst)])
    assert r.exit_code != 0 and "already exists" in r.output and dst.read_bytes() == b"keep"
    r = CliRunner().invoke(main, args[:-6] + ["--crop", "80"])
    assert r.exit_code != 0 and "multiple of 64" in r.output
    r = CliRunner().invoke(main, args + ["--install-only", "-o", str(tmp_path / "new.safetensors")])
    assert r.exit_code != 0 and "no checkpoint" in r.output and not (tmp_path / "run").exists()


def test_cli_passes_the_seed_and_the_install_records_it(full_model, photo, tmp_path):
    from click.testing import CliRunner

    from cli.main import main
    dst = tmp_path / "d.safetensors"
    big = np.tile(photo, (3, 2, 1))   # the CLI's validation crops are 192 pixels
    args = ["train-decoder", str(photo_folder(tmp_path, big, n=2)), "--weights", str(full_model),
            "--out", str(tmp_path / "run"), "--crop", "64", "--crops", "4", "--steps", "1", "--batch", "2",
            "--seed", "3", "-o", str(dst)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert weights.load(dst).meta["decoder"][-1]["seed"] == 3
