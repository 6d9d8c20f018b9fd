"""Anomaly scoring with the codec's rate and reconstruction error."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cli.main import main
from codec.heads import anomaly


def test_maps_cover_the_image_and_rate_sums_to_the_model_bits(tiny_model, photo):
    m = anomaly.maps(photo, model=tiny_model)
    for k in anomaly.MAP_KINDS:
        assert m[k].shape == photo.shape[:2] and (m[k] >= 0).all()
    # rd = rate + lambda * error, pixel by pixel
    from codec.pipeline import load_model
    lam = float(load_model(tiny_model).net.lmbda(torch.tensor([4.0])))
    assert np.allclose(m["rd"], m["rate"] + lam * m["error"], rtol=1e-4, atol=1e-5)


def test_local_noise_raises_the_error_where_it_was_added(photo):
    """With the shipped codec: noise it has never learned to code shows up."""
    rng = np.random.default_rng(0)
    bad = photo.astype(float)
    bad[16:48, 16:48] += rng.normal(0, 60, (32, 32, 3))
    bad = bad.clip(0, 255).astype(np.uint8)
    e0, e1 = anomaly.maps(photo)["error"], anomaly.maps(bad)["error"]
    assert e1[16:48, 16:48].mean() > 2 * e0[16:48, 16:48].mean()
    # the change is local: far smaller away from the patch than on it
    assert abs(e1[64:, 64:].mean() - e0[64:, 64:].mean()) < 0.1 * (e1[16:48, 16:48].mean() - e0[16:48, 16:48].mean())
    assert anomaly.score(bad, "error")[0] > anomaly.score(photo, "error")[0]


def test_relative_score_is_zero_for_a_uniform_map():
    assert anomaly.image_score(np.ones((64, 64)), "relative") == pytest.approx(0.0, abs=1e-9)
    m = np.ones((64, 64))
    m[:16, :16] = 10
    assert anomaly.image_score(m, "relative") > 0.5


def test_line_score_finds_a_thin_line_that_windows_dilute():
    row = np.zeros((40, 60))
    row[20, 5:45] = 1.0                                       # a horizontal segment of 40 px
    assert anomaly.image_score(row, "line", 33) == pytest.approx(1.0)
    assert anomaly.image_score(row, "line", 80) == pytest.approx(40 / 40)     # shortened to 40: fits
    col = np.ascontiguousarray(row[:, :40].T)                 # a vertical one, 40 x 40
    assert anomaly.image_score(col, "line", 20) == pytest.approx(1.0)
    m = np.zeros((128, 128))
    for i in range(100):                                      # a 2-px line at about 30 degrees
        m[10 + int(i * 0.58):12 + int(i * 0.58), 10 + i] = 1.0
    spot = np.zeros((128, 128))
    spot[60:64, 60:64] = 1.0                                  # a small blob
    assert anomaly.image_score(m, "line", 33) > 0.7 > 0.2 > anomaly.image_score(m, "max", 16)
    # a spot fills a small window, not a line; a line fills the line more than any spot
    assert anomaly.image_score(spot, "max", 2) == 1.0 and anomaly.image_score(spot, "line", 33) < 0.2
    assert anomaly.image_score(np.ones((20, 20)), "line", 65) == pytest.approx(1.0)   # shortened to fit


def test_a_heads_window_follows_its_chosen_aggregate():
    meta = {"aggregate": "line", "window": 65, "score_auroc": {"max-2": 0.9, "max-8": 0.92, "line-65": 0.95}}
    assert anomaly.head_window(meta, "line") == 65 and anomaly.head_window(meta, "max") == 8
    assert anomaly.head_window(meta, "relative") == 32
    assert anomaly.head_window({"window": 2}, "max") == 2     # files from before the aggregate was chosen
    assert anomaly.parse_scoring_key(anomaly.scoring_key("line", 17)) == ("line", 17)
    with pytest.raises(ValueError, match="aggregate must be"):
        anomaly.score(np.zeros((8, 8, 3), np.uint8), "rd", aggregate="median")


def test_fit_then_score_cli(tiny_model, photo, tmp_path):
    normal = tmp_path / "normal"
    normal.mkdir()
    for i in range(4):
        Image.fromarray(np.roll(photo, 7 * i, 1)).save(normal / f"{i}.png")
    det = tmp_path / "det.json"
    r = CliRunner().invoke(main, ["anomaly", "fit", str(normal), "-o", str(det), "--model", str(tiny_model),
                                  "--kind", "error"])
    assert r.exit_code == 0, r.output
    d = json.loads(det.read_text())
    assert len(d["normal_scores"]) == 4 and d["kind"] == "error"
    bad = photo.copy()
    bad[10:50, 10:50] = 255 - bad[10:50, 10:50]
    Image.fromarray(bad).save(tmp_path / "bad.png")
    r = CliRunner().invoke(main, ["anomaly", "score", str(tmp_path / "bad.png"), str(normal / "0.png"),
                                  "--detector", str(det), "--json", "--map", str(tmp_path / "maps")])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows[1]["percentile"] > 0 and 0 <= rows[0]["percentile"] <= 100
    assert (tmp_path / "maps" / "bad.anomaly.png").exists()
    r = CliRunner().invoke(main, ["anomaly", "fit", str(normal), "-o", str(tmp_path / "line.json"), "--model",
                                  str(tiny_model), "--kind", "error", "--aggregate", "line", "--window", "17"])
    assert r.exit_code == 0, r.output
    d = json.loads((tmp_path / "line.json").read_text())
    assert d["aggregate"] == "line" and d["window"] == 17 and d["kind"] == "error"
    r = CliRunner().invoke(main, ["anomaly", "score", str(normal / "0.png"), "--detector", str(normal / "0.png")])
    assert r.exit_code == 1 and "cannot read detector" in r.stderr
