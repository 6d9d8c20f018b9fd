"""The one table of shipped models: stable string ids -> weights files.

No torch here, so ``aecodec models`` and ``aecodec info`` stay fast. The
config of each model travels inside its safetensors file (weights.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ModelEntry:
    id: str
    latent_kind: str
    file: str
    qualities: tuple
    purpose: str
    default: bool = False
    #: read ``file`` as this architecture instead of the one it was saved with
    arch: str | None = None

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file

    @property
    def card(self) -> Path:
        return WEIGHTS_DIR / f"{self.id}.md" if self.arch else self.path.with_suffix(".md")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["installed"] = self.path.exists()
        d["bytes"] = self.path.stat().st_size if self.path.exists() else None
        return d


MODELS: dict[str, ModelEntry] = {
    e.id: e for e in (
        ModelEntry("hyperprior-vr", "scalar", "hyperprior-vr.safetensors", (-1.0, 8.0),
                   "default photo codec: variable-rate mean-scale hyperprior, any quality -1 to 8",
                   default=True),
        ModelEntry("vq-residual", "vq", "vq-residual.safetensors", (1.0, 6.0),
                   "VQ-VAE codec on the default model's transforms: 6-stage residual VQ, quality = stages used"),
        ModelEntry("binary-hp", "binary", "hyperprior-vr.safetensors", (-1.0, 8.0),
                   "binary codec: the default model's latent binarized (zero, sign, thermometer bits), "
                   "each bit coded under the hyperprior's probability", arch="binarized-hyperprior"),
        ModelEntry("binary-nested", "binary", "binary-nested.safetensors", (1.0, 6.0),
                   "binary codec trained end to end: sign bits, quality = share of channels kept "
                   "(demonstration-grade)"),
    )
}

DEFAULT_MODEL = next(e.id for e in MODELS.values() if e.default)


def get(model_id: str) -> ModelEntry:
    try:
        return MODELS[model_id]
    except KeyError:
        raise KeyError(f"unknown model {model_id!r}; run 'aecodec models' to list them") from None


def listing() -> list[dict]:
    return [e.to_dict() for e in MODELS.values()]

