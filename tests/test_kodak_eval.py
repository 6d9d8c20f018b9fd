import json

import numpy as np
import pytest
from PIL import Image

from kodak_eval.bdrate import bd_rate


def test_bd_rate_of_a_uniformly_cheaper_curve():
    rate = np.array([0.2, 0.4, 0.8, 1.6])
    psnr = np.array([28.0, 31.0, 34.0, 37.0])
    assert bd_rate(rate, psnr, rate, psnr) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(rate, psnr, rate * 0.8, psnr) == pytest.approx(-20.0, abs=1e-6)
    assert bd_rate(rate, psnr, rate, psnr + 50) is None  # no overlap


def test_eval_writes_results_plot_and_table(tmp_path, tiny_model, photo):
    from kodak_eval.__main__ import main
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(2):
        Image.fromarray(np.roll(photo, 11 * i, 0)).save(data / f"im{i}.png")
    out = tmp_path / "res"
    assert main(["--data", str(data), "--out", str(out), "--codecs", "JPEG 4:2:0",
                 "--models", str(tiny_model), "--qualities", "1,3,5,8", "--published", "none",
                 "--precision", "fp32"]) == 0
    res = json.loads((out / "results.json").read_text())
    jpeg = res["codecs"]["JPEG 4:2:0"]
    assert jpeg["bpp"] == sorted(jpeg["bpp"]) and len(jpeg["psnr"]) == len(jpeg["bpp"])
    ours = res["codecs"]["aecodec tiny-test"]
    assert ours["exact_decode"] is True and len(ours["bpp"]) == 4
    assert ours["precision"] == "fp32" and ours["note"].endswith(", fp32 synthesis")  # as asked for, recorded
    assert ours["weights"] == ours["note"].split(",")[0].removeprefix("weights ")
    assert "cores" in ours["machine"] and ours["machine"] == jpeg["machine"] == res["machine"]
    assert (out / "rd.png").stat().st_size > 0 and "BD-rate" in (out / "results.md").read_text()


def test_post_views_other_than_the_default_are_a_curve_of_their_own(tmp_path, post_model, tiny_model, photo):
    from codec.pipeline import DEFAULT_POST_VIEWS
    from kodak_eval.__main__ import main
    data = tmp_path / "imgs"
    data.mkdir()
    Image.fromarray(photo).save(data / "im.png")
    curves = {}
    for views in (None, 4):
        out = tmp_path / f"res{views}"
        args = ["--data", str(data), "--out", str(out), "--no-classical", "--models", f"{post_model},{tiny_model}",
                "--qualities", "2,6", "--published", "none"] + (["--post-views", str(views)] if views else [])
        assert main(args) == 0
        curves.update(json.loads((out / "results.json").read_text())["codecs"])
    # a model without a post-filter is measured as it is, under its own name, whatever the views asked for
    assert curves["aecodec tiny-test"]["post_views"] == 1 and "aecodec tiny-test post views 4" not in curves
    default, four = curves["aecodec tiny-post"], curves["aecodec tiny-post post views 4"]
    assert default["post_views"] == DEFAULT_POST_VIEWS and f"post-filter ({DEFAULT_POST_VIEWS} views)" in default["note"]
    assert four["post_views"] == 4 and "post-filter (4 views)" in four["note"]
    assert four["bpp"] == default["bpp"] and four["psnr"] != default["psnr"]   # the same bits, other pixels
    assert four["exact_decode"] and default["exact_decode"]


def test_merge_joins_one_codec_run_at_other_qualities_in_parallel(tmp_path, tiny_model, photo):
    from kodak_eval.__main__ import main
    data = tmp_path / "imgs"
    data.mkdir()
    Image.fromarray(photo).save(data / "a.png")
    for part, qs in (("lo", "2"), ("hi", "6,4")):
        assert main(["--data", str(data), "--out", str(tmp_path / part), "--no-classical",
                     "--models", str(tiny_model), "--qualities", qs, "--published", "none"]) == 0
    out = tmp_path / "both"
    assert main(["--data", str(data), "--out", str(out), "--no-classical", "--no-models", "--published", "none",
                 "--merge", f"{tmp_path / 'hi' / 'results.json'},{tmp_path / 'lo' / 'results.json'}"]) == 0
    parts = [json.loads((tmp_path / p / "results.json").read_text())["codecs"]["aecodec tiny-test"]
             for p in ("lo", "hi")]
    curve = json.loads((out / "results.json").read_text())["codecs"]["aecodec tiny-test"]
    assert curve["settings"] == [2.0, 4.0, 6.0] and curve["bpp"] == sorted(parts[0]["bpp"] + parts[1]["bpp"])
    assert curve["psnr"][0] == parts[0]["psnr"][0] and curve["exact_decode"] is True
    per = json.loads((out / "per_image.json").read_text())["aecodec tiny-test"]
    assert [p["setting"] for p in per] == [2.0, 4.0, 6.0]


def test_aecodec_eval_runs_on_a_folder(tiny_model, photo, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from cli.main import main
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(photo).save(d / "a.png")
    r = CliRunner().invoke(main, ["eval", str(d), "--out", str(tmp_path / "res"), "--no-classical",
                                  "--models", str(tiny_model), "--qualities", "2,6"])
    assert r.exit_code == 0, r.output
    import json
    res = json.loads((tmp_path / "res" / "results.json").read_text())
    (name, c), = res["codecs"].items()
    assert c["exact_decode"] and len(c["bpp"]) == 2 and c["bpp"][0] < c["bpp"][1]
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "missing")])
    assert r.exit_code == 2


def test_join_of_two_precisions_or_files_says_so():
    from kodak_eval.run import CURVE_KEYS, join_curves

    def curve(bpp, **kw):
        return {**{k: [bpp] for k in CURVE_KEYS}, "settings": [bpp], **kw}
    same = join_curves(curve(0.5, weights="ab", precision="fp32"), curve(1.0, weights="ab", precision="fp32"),
                       [], [])[0]
    assert same["bpp"] == [0.5, 1.0] and same["weights"] == "ab" and same["precision"] == "fp32"
    mixed = join_curves(curve(0.5, weights="ab", precision="fp32"), curve(1.0, weights="ab", precision="bf16"),
                        [], [])[0]
    assert mixed["precision"] == "fp32; bf16" and mixed["weights"] == "ab"
