import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import main
from codec import io


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(result):
    lines = result.stderr.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("aecodec: error:") and "Traceback" not in result.output


def test_compress_then_decompress(tiny_model, photo_png, tmp_path):
    r = run("compress", photo_png, "--model", tiny_model, "--json")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    aec = tmp_path / "photo.aec"
    assert rec["output"] == str(aec) and aec.stat().st_size == rec["bytes"]
    r = run("decompress", aec, "--model", tiny_model, "-o", tmp_path / "back.png")
    assert r.exit_code == 0, r.output
    back = np.asarray(Image.open(tmp_path / "back.png"))
    orig = np.asarray(Image.open(photo_png))
    assert back.shape == orig.shape
    # the JSON figures match an independent computation on the files
    assert rec["psnr"] == pytest.approx(io.psnr(back, orig), abs=1e-3)
    assert rec["bpp"] == pytest.approx(8 * aec.stat().st_size / (orig.shape[0] * orig.shape[1]), abs=1e-5)


def test_existing_output_is_not_overwritten_without_force(tiny_model, photo_png, tmp_path):
    out = tmp_path / "photo.aec"
    out.write_bytes(b"precious")
    r = run("compress", photo_png, "--model", tiny_model)
    assert r.exit_code == 1 and one_error_line(r) and "--force" in r.stderr
    assert out.read_bytes() == b"precious"
    assert run("compress", photo_png, "--model", tiny_model, "-f").exit_code == 0
    assert out.read_bytes()[:4] == b"\x89AEC"


def test_an_output_never_replaces_its_own_input_even_with_force(tiny_model, photo_png, tmp_path):
    aec = tmp_path / "photo.aec"
    assert run("compress", photo_png, "--model", tiny_model).exit_code == 0
    odd = tmp_path / "odd.png"  # an .aec file with an image suffix: decompress's default output is itself
    odd.write_bytes(aec.read_bytes())
    r = run("decompress", odd, "--model", tiny_model, "-f")
    assert r.exit_code == 1 and one_error_line(r) and "overwrite the input" in r.stderr
    assert odd.read_bytes() == aec.read_bytes()


def test_decompressing_a_non_aec_file_says_so_before_anything_about_the_output(photo_png, tmp_path):
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"precious")
    r = run("decompress", photo_png, "-o", taken)
    assert r.exit_code == 1 and one_error_line(r) and "not an aecodec file" in r.stderr
    assert taken.read_bytes() == b"precious"


def test_folder_of_inputs_goes_to_output_folder(tiny_model, photo, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.roll(photo, i * 7, 1)).save(src / f"im{i}.png")
    r = run("compress", src, "-o", tmp_path / "out", "--model", tiny_model, "--json")
    assert r.exit_code == 0, r.output
    assert len(r.stdout.strip().splitlines()) == 3
    r = run("decompress", tmp_path / "out", "-o", tmp_path / "png", "--model", tiny_model)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["im0.png", "im1.png", "im2.png"]


def test_not_an_image_fails_cleanly_and_leaves_nothing(tiny_model, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    r = run("compress", bad, "--model", tiny_model)
    assert r.exit_code == 1 and one_error_line(r) and "not an image" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png"]


@pytest.fixture
def aec_file(tiny_model, photo_png, tmp_path):
    assert run("compress", photo_png, "--model", tiny_model).exit_code == 0
    return tmp_path / "photo.aec"


def hostile_variants(data):
    flips = [bytes(data[:i]) + bytes([data[i] ^ 0x10]) + bytes(data[i + 1:])
             for i in range(0, len(data), max(1, len(data) // 25))]
    cuts = [data[:n] for n in range(0, len(data), max(1, len(data) // 25))]
    rng = np.random.default_rng(0)
    return flips + cuts + [rng.integers(0, 256, 300).astype(np.uint8).tobytes(), b"", b"\x89AEC"]


def test_corrupted_file_battery(tiny_model, aec_file, tmp_path):
    data = aec_file.read_bytes()
    for i, blob in enumerate(hostile_variants(data)):
        f = tmp_path / f"h{i}.aec"
        f.write_bytes(blob)
        out = tmp_path / f"h{i}.png"
        r = run("decompress", f, "--model", tiny_model, "-o", out)
        assert r.exit_code == 1 and one_error_line(r), (i, r.output)
        assert not out.exists()
    leftovers = [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
    assert not leftovers


def test_hostile_file_in_a_real_process_has_no_traceback(aec_file, tmp_path):
    data = bytearray(aec_file.read_bytes())
    data[-3] ^= 1
    f = tmp_path / "bad.aec"
    f.write_bytes(bytes(data))
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    p = subprocess.run([sys.executable, "-m", "cli.main", "decompress", str(f)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 1
    assert p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr
    assert "corrupt" in p.stderr


def test_info_reads_the_header(aec_file):
    r = run("info", aec_file, "--json")
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    assert (d["width"], d["height"], d["model"], d["checksum_ok"]) == (96, 80, "tiny-test", True)
    assert d["context"] is False and d["post"] is False   # the tiny model has neither
    assert d["split"] == "rows"                            # the synthesis cut into row parts
    assert "split: rows" in run("info", aec_file).stdout


def test_usage_error_exits_2():
    assert run("compress").exit_code == 2
    assert run("compress", "--quality", "x", "a.png").exit_code == 2


def test_models_lists_the_default():
    r = run("models", "--json")
    assert r.exit_code == 0
    assert [m["id"] for m in json.loads(r.stdout) if m["default"]] == ["hyperprior-vr"]


def test_help_and_info_do_not_import_torch(aec_file):
    code = ("import sys; from click.testing import CliRunner; from cli.main import main; "
            f"CliRunner().invoke(main, ['info', {str(aec_file)!r}]); CliRunner().invoke(main, ['--help']); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_decompress_a_region(tiny_model, photo_png, tmp_path):
    assert run("compress", photo_png, "--model", tiny_model, "--tile", "64").exit_code == 0
    r = run("decompress", tmp_path / "photo.aec", "--model", tiny_model, "--crop", "10,20,30,40",
            "-o", tmp_path / "part.png")
    assert r.exit_code == 0, r.output
    full = run("decompress", tmp_path / "photo.aec", "--model", tiny_model, "-o", tmp_path / "full.png")
    assert full.exit_code == 0
    part = np.asarray(Image.open(tmp_path / "part.png"))
    assert np.array_equal(part, np.asarray(Image.open(tmp_path / "full.png"))[20:60, 10:40])
    assert run("decompress", tmp_path / "photo.aec", "--crop", "1,2", "-o", tmp_path / "x.png").exit_code == 2


def test_workers_give_the_same_files(tiny_model, photo, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.roll(photo, i * 5, 0)).save(src / f"im{i}.png")
    assert run("compress", src, "-o", tmp_path / "a", "--model", tiny_model).exit_code == 0
    r = run("compress", src, "-o", tmp_path / "b", "--model", tiny_model, "--workers", "2")
    assert r.exit_code == 0, r.output
    for i in range(3):
        assert (tmp_path / "a" / f"im{i}.aec").read_bytes() == (tmp_path / "b" / f"im{i}.aec").read_bytes()


def test_demo_compresses_and_decompresses_the_sample(tmp_path):
    from codec import registry
    if not registry.get(registry.DEFAULT_MODEL).path.exists():
        pytest.skip("default weights not installed")
    r = run("demo", "-o", tmp_path / "demo")
    assert r.exit_code == 0, r.output
    assert "exact     True" in r.stdout and "PSNR" in r.stdout
    assert (tmp_path / "demo" / "sample.aec").exists() and (tmp_path / "demo" / "sample.png").exists()


def test_device_cpu_gives_the_same_file_and_missing_cuda_is_one_line(tiny_model, photo_png, tmp_path):
    a, b = tmp_path / "a.aec", tmp_path / "b.aec"
    assert run("compress", photo_png, "--model", tiny_model, "-o", a).exit_code == 0
    assert run("compress", photo_png, "--model", tiny_model, "-o", b, "--device", "cpu").exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    import torch
    if not torch.cuda.is_available():
        r = run("compress", photo_png, "--model", tiny_model, "-o", tmp_path / "c.aec", "--device", "cuda")
        assert r.exit_code == 1 and one_error_line(r) and "CUDA is not available" in r.stderr
        assert not (tmp_path / "c.aec").exists()
    r = run("compress", photo_png, "--model", tiny_model, "-o", tmp_path / "d.aec", "--device", "tpu")
    assert r.exit_code == 1 and one_error_line(r)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_is_recorded_and_followed_by_the_decoder(tiny_model, photo_png, tmp_path, precision):
    f, png = tmp_path / "a.aec", tmp_path / "a.png"
    assert run("compress", photo_png, "--model", tiny_model, "-o", f, "--precision", precision).exit_code == 0
    r = run("info", f, "--json")
    assert json.loads(r.stdout)["precision"] == precision
    assert run("decompress", f, "--model", tiny_model, "-o", png).exit_code == 0
    from codec.container import unpack
    assert zlib.crc32(np.asarray(Image.open(png).convert("RGB")).tobytes()) == unpack(f.read_bytes())[0].recon_crc


def test_effort_gives_a_file_that_decodes_and_bad_effort_is_a_usage_error(tiny_model, photo_png, tmp_path):
    f = tmp_path / "e.aec"
    r = run("compress", photo_png, "--model", tiny_model, "-o", f, "--effort", "2")
    assert r.exit_code == 0, r.output
    assert run("decompress", f, "--model", tiny_model, "-o", tmp_path / "e.png").exit_code == 0
    r = run("compress", photo_png, "--model", tiny_model, "-o", tmp_path / "x.aec", "--effort", "-3")
    assert r.exit_code == 2 and not (tmp_path / "x.aec").exists()


def test_a_reader_that_leaves_early_is_not_an_error():
    # `aecodec models | head -c 1`: the pipe closes before aecodec writes
    p = subprocess.Popen([sys.executable, "-m", "cli.main", "models"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=120) != 0
    assert err == b""


def test_models_says_which_file_a_shared_model_reads():
    r = run("models")
    assert r.exit_code == 0
    line = next(l for l in r.stdout.splitlines() if l.startswith("binary-hp:"))
    assert "binary latent" in line and "reads hyperprior-vr.safetensors" in line
    entry = next(m for m in json.loads(run("models", "--json").stdout) if m["id"] == "binary-hp")
    assert entry["arch"] == "binarized-hyperprior" and entry["file"] == "hyperprior-vr.safetensors"


def test_post_views_are_recorded_followed_and_refused_where_they_cannot_be(post_model, tiny_model, photo_png,
                                                                          tmp_path):
    f, png = tmp_path / "v.aec", tmp_path / "v.png"
    r = run("compress", photo_png, "--model", post_model, "-o", f, "--post-views", "4")
    assert r.exit_code == 0, r.output
    assert json.loads(run("info", f, "--json").stdout)["post_views"] == 4
    assert "post_views: 4" in run("info", f).stdout
    assert run("decompress", f, "--model", post_model, "-o", png).exit_code == 0
    from codec.container import unpack
    assert zlib.crc32(np.asarray(Image.open(png).convert("RGB")).tobytes()) == unpack(f.read_bytes())[0].recon_crc
    r = run("compress", photo_png, "--model", post_model, "-o", tmp_path / "x.aec", "--post-views", "3")
    assert r.exit_code == 2 and "--post-views" in r.output and not (tmp_path / "x.aec").exists()
    r = run("compress", photo_png, "--model", tiny_model, "-o", tmp_path / "y.aec", "--post-views", "2")
    assert r.exit_code == 1 and one_error_line(r) and "no post-filter" in r.stderr
    assert not (tmp_path / "y.aec").exists()
