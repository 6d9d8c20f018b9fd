import json

import numpy as np
from click.testing import CliRunner

import codec
from cli.main import main


def test_embedding_has_fixed_length_for_any_size(tiny_model, photo):
    a = codec.embed(photo, model=tiny_model)
    b = codec.embed(photo[:33, :50], model=tiny_model)
    assert a.shape == b.shape == (24,) and np.isfinite(a).all()
    full = codec.embed(photo, model=tiny_model, pooled=False)
    assert full.shape == (12, 5, 6)
    assert np.allclose(a[:12], full.reshape(12, -1).mean(1), atol=1e-5)


def test_embed_cli_json(tiny_model, photo_png):
    r = CliRunner().invoke(main, ["embed", str(photo_png), "--model", str(tiny_model), "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["dim"] == 24 and len(rec["embedding"]) == 24
