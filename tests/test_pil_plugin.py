import numpy as np
import pytest
from PIL import Image

import codec


def test_open_decodes_and_save_encodes(tiny_model, photo, tmp_path):
    f = tmp_path / "x.aec"
    Image.fromarray(photo).save(f, quality=5, model=str(tiny_model))
    hdr = codec.read_header(f.read_bytes())
    assert hdr.quality == 5.0 and hdr.model == "tiny-test"
    with Image.open(f) as im:
        assert im.format == "AEC" and im.size == (96, 80) and im.mode == "RGB"


def test_save_passes_post_views_and_effort(post_model, photo, tmp_path):
    f = tmp_path / "v.aec"
    Image.fromarray(photo).save(f, quality=5, model=str(post_model), post_views=4, effort=1)
    want = codec.encode(photo, quality=5, model=post_model, post_views=4, effort=1)
    assert codec.read_header(f.read_bytes()).post_views == 4 and f.read_bytes() == want.data


def test_open_matches_library_decode(tiny_model, photo, tmp_path, monkeypatch):
    from codec import pipeline
    f = tmp_path / "x.aec"
    res = codec.encode(photo, model=tiny_model)
    f.write_bytes(res.data)
    real = pipeline.decode
    monkeypatch.setattr(pipeline, "decode", lambda d, **k: real(d, model=tiny_model))
    with Image.open(f) as im:
        assert np.array_equal(np.asarray(im), res.picture.rgb)


def test_invalid_and_truncated_files_raise(tiny_model, photo, tmp_path):
    f = tmp_path / "x.aec"
    f.write_bytes(b"\x89AEC" + b"\0" * 40)
    with pytest.raises(Exception):
        Image.open(f)
    data = codec.compress(photo, model=tiny_model)
    for n in range(4, 80, 3):
        f.write_bytes(data[:n])
        with pytest.raises((OSError, SyntaxError)):
            with Image.open(f) as im:
                im.load()
