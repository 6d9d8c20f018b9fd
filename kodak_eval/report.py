"""BD-rate table (Markdown) and RD plots (PNG) from results.json."""

from __future__ import annotations

from pathlib import Path

from .bdrate import bd_rate

ANCHORS = ("JPEG 4:2:0", "WebP", "AVIF")


def bd_table(results: dict) -> dict:
    measured = results["codecs"]
    published = results.get("published", {})
    anchors = {a: measured[a] for a in ANCHORS if a in measured}
    if "vtm" in published:
        anchors["VTM (published)"] = published["vtm"]
    table = {}
    for name, c in list(measured.items()) + [(f"{k} (published)", v) for k, v in published.items()]:
        if not c.get("psnr") or None in c["psnr"]:
            continue
        row = {}
        for an, a in anchors.items():
            if an == name or (an == "VTM (published)" and name == "vtm (published)"):
                continue
            row[an] = bd_rate(a["bpp"], a["psnr"], c["bpp"], c["psnr"])
        table[name] = row
    return table


def markdown(results: dict) -> str:
    table = results["bd_rate"]
    anchors = [a for a in (*ANCHORS, "VTM (published)") if any(a in r for r in table.values())]
    lines = [f"# Kodak rate-distortion ({results['images']} images, {results['dataset']})", "",
             "BD-rate in % (negative: fewer bits than the anchor at equal PSNR), cubic fit over the "
             "common PSNR range. Measured on " + results.get("machine", "?") + "; published curves from "
             "`published_kodak_rd.json`.", "",
             "| codec | bpp range | PSNR range (dB) | " + " | ".join(f"vs {a}" for a in anchors) + " |",
             "|---|---|---|" + "---|" * len(anchors)]
    allc = dict(results["codecs"])
    allc.update({f"{k} (published)": v for k, v in results.get("published", {}).items()})
    for name, row in table.items():
        c = allc[name]
        cells = []
        for a in anchors:
            v = row.get(a)
            cells.append("—" if v is None else f"{v:+.1f}")
        lines.append(f"| {name} | {min(c['bpp']):.3f}–{max(c['bpp']):.3f} | "
                     f"{min(c['psnr']):.2f}–{max(c['psnr']):.2f} | " + " | ".join(cells) + " |")
    if results.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in results["skipped"].items())]
    timing = [(n, c) for n, c in results["codecs"].items() if c.get("dec_s")]
    if timing:
        lines += ["", "| codec | mean encode s | mean decode s |", "|---|---|---|"]
        for n, c in timing:
            e = sum(c["enc_s"]) / len(c["enc_s"])
            d = sum(c["dec_s"]) / len(c["dec_s"])
            lines.append(f"| {n} | {e:.3f} | {d:.3f} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path, max_bpp: float = 2.0) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 8.5))
    for metric, ax in zip(("psnr", "ms_ssim"), axes):
        for name, c in results["codecs"].items():
            if c.get(metric) and None not in c[metric]:
                style = dict(marker="o", lw=2.2 if name.startswith("aecodec") else 1.2, ms=3)
                ax.plot(c["bpp"], c[metric], label=name, **style)
        for name, c in results.get("published", {}).items():
            if c.get(metric) and None not in c[metric]:
                ax.plot(c["bpp"], c[metric], "--", lw=0.9, label=f"{name} (published)")
        ax.set_xlim(0, max_bpp)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel("RGB PSNR (dB)" if metric == "psnr" else "MS-SSIM")
        ax.grid(alpha=0.3)
    axes[0].set_ylim(17, 42)
    axes[1].set_ylim(0.80, 1.0)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"{results['dataset']}: {results['images']} images")
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
