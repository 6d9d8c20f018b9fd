"""Import CompressAI's layers and entropy models without its package
``__init__``.

``import compressai`` runs ``compressai/__init__.py``, which imports every
subpackage -- datasets (torchvision, pandas), point-cloud transforms
(torch_geometric), the model zoo -- about 270 MB of resident memory and two
seconds before any image is touched. aecodec needs only ``compressai.layers``,
``compressai.entropy_models`` and ``compressai.ops``. :func:`ensure` registers
a bare package module for ``compressai`` (its search path plus the few
attributes those submodules read from the package: the entropy-coder
selection), so importing them loads only what they import. If CompressAI has
already been imported, or the bare package fails for any reason (another
version), the normal import is used instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types


def _bare_package() -> types.ModuleType:
    spec = importlib.util.find_spec("compressai")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("compressai is not installed")
    pkg = types.ModuleType("compressai")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    pkg.__file__ = spec.origin
    pkg._entropy_coder = "ans"
    pkg._available_entropy_coders = ["ans"]
    pkg.get_entropy_coder = lambda: pkg._entropy_coder
    pkg.available_entropy_coders = lambda: list(pkg._available_entropy_coders)
    return pkg


def ensure() -> None:
    if "compressai" in sys.modules:
        return
    sys.modules["compressai"] = _bare_package()
    try:
        for name in ("compressai.layers", "compressai.entropy_models", "compressai.ops"):
            importlib.import_module(name)
    except Exception:  # noqa: BLE001 - fall back to the full package
        for name in [m for m in sys.modules if m == "compressai" or m.startswith("compressai.")]:
            del sys.modules[name]
        importlib.import_module("compressai")


ensure()
