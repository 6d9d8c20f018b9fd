"""Choose the defect head's image score (aggregate and window) on validation crops and store it.

    python scripts/defect_window.py codec/weights/defect.safetensors [--data DIR]

Synthetic defects (codec/heads/defect.py: synthesize) on crops of the
validation split of the training folders, never Kodak or the benchmark's
defects; the aggregate and window with the best image-level AUROC go into
the file's metadata ("aggregate", "window", and the table as "score_auroc"),
which ``aecodec anomaly`` and benchmarks/anomaly.py read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codec.heads import defect  # noqa: E402
from codec.heads.store import load_head, save_head  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights")
    ap.add_argument("--data", nargs="+", default=[str(ROOT.parent / "shared/data/train")])
    args = ap.parse_args()
    torch.set_num_threads(1)
    head = load_head(args.weights, defect.NAME, defect.DefectConfig, defect.DefectNet)
    (agg, win), table = defect.choose_scoring(head, args.data)
    meta = {k: v for k, v in head.meta.items() if k != "window_auroc"}
    meta.update(aggregate=agg, window=win, score_auroc={k: round(v, 4) for k, v in table.items()})
    save_head(head, args.weights, defect.NAME, meta)
    print(f"image score {agg} over {win} px (validation image AUROC: "
          + ", ".join(f"{k}: {v:.3f}" for k, v in table.items()) + f") -> {args.weights}")


if __name__ == "__main__":
    main()
