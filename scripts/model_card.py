"""Write the model card (Markdown beside the weights) from the weights'
metadata and kodak_eval's results.

    python scripts/model_card.py codec/weights/hyperprior-vr.safetensors [kodak_eval/results/results.json]
    python scripts/model_card.py binary-hp          # a registry id (one that shares another model's file)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from codec import weights


HEAD_FIGURES = {
    "restore": ("benchmarks/results/denoise.json, benchmarks/results/inpaint.json",
                "U-Net of the backbone's residual blocks (codec/heads/restore.py); input: image x known-mask, "
                "mask, noise level; output: input + residual"),
    "vae": ("benchmarks/results/vae.json, benchmarks/results/embeddings.json",
            "the backbone's g_a (Gaussian posterior) and g_s (discretized-logistic likelihood), "
            "codec/heads/vae.py"),
    "defect": ("benchmarks/results/anomaly.json",
               "defect segmenter (codec/heads/defect.py): dilated convolutions over the image, the default codec's "
               "reconstruction, error and rate maps at quality 4, the probability averaged over four views of the "
               "image (as it is, flipped, turned 180 degrees, both); trained on synthetic defects (blobs and strokes "
               "filled with another image, blur, noise, a colour shift, a tone change or a flat colour; from the "
               "second training on, half of the strokes straight and half of their fills near black or white, and "
               "the focal loss joined by an image-level term)"),
}


def image_score_line(meta: dict) -> str:
    """The defect head's image score and the validation table it was chosen from."""
    agg, win = meta.get("aggregate", "max"), meta["window"]
    what = (f"the largest mean of the defect probability along a straight line of {win} px (16 angles)"
            if agg == "line" else f"the largest mean of the defect probability over {win}x{win} px windows")
    table = meta.get("score_auroc") or {f"max-{k}": v for k, v in meta.get("window_auroc", {}).items()}
    return (f"- image score: {what}, chosen on synthetic defects of validation crops (`scripts/defect_window.py`; "
            "image-level AUROC by aggregate-window: " + ", ".join(f"{k}: {v:.3f}" for k, v in table.items()) + ")")


def head_card(path: Path, md: dict) -> None:
    from codec.heads.store import load_head
    from codec.training.heads import heads
    kind = md["kind"]
    cfg_cls, net_cls, _ = heads()[kind]
    net = load_head(path, kind, cfg_cls, net_cls)
    meta = net.meta
    n_params = sum(p.numel() for p in net.parameters())
    figures, what = HEAD_FIGURES[kind]
    stages, m = [], meta
    while m.get("before"):  # the trainings this one continued, oldest first
        m = m["before"]
        stages.insert(0, f"- earlier: {m.get('steps')} steps, {m.get('crop')}px crops, batch {m.get('batch')}, "
                         f"Adam lr {m.get('lr')}, {m.get('train_hours')} h on {m.get('hardware') or 'unknown hardware'}")
    lines = [f"# {path.stem} (head: {kind})", "",
             f"- what: {what}",
             f"- config: `{md['config']}`, {n_params / 1e6:.2f} M parameters; file {path.stat().st_size / 1e6:.1f} MB (fp16)",
             f"- trained on: {', '.join(meta.get('train_data') or [])} (training split; Kodak never used), "
             f"random {meta.get('crop')}px crops, batch {meta.get('batch')}",
             *stages,
             f"- steps: {meta.get('steps')}" + (" more, from those weights" if stages else "")
             + f", Adam lr {meta.get('lr')}"
             + (f" (x{meta['decay_factor']} from step {meta['decay_at']})"
                if (meta.get("decay_at") or 10**9) < meta.get("steps", 0) else "")
             + f", wall time {meta.get('train_hours')} h "
             f"on {meta.get('hardware') or 'unknown hardware'}",
             f"- how: `aecodec train-head {kind}` (codec/training/heads.py)",
             *([image_score_line(meta)] if "window" in meta else []),
             f"- measured: {figures} (see the README)", ""]
    out = path.with_suffix(".md")
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


def _stage(meta: dict, first: bool = True) -> str:
    """One training stage (a run's metadata, or one entry of its "stages");
    ``first``: the lineage's first (how its start was made is told once)."""
    lr = meta["schedule"] if meta.get("schedule") else f"lr {meta.get('lr')}" + (
        f" (x{meta.get('decay_factor', 0.1)} from step {meta['decay_at']})"
        if meta.get("decay_at", 10**9) < 10**9 else "")
    start = (f"- start: `{meta['init_from']}`" + (f": {meta['init']}" if meta.get("init") and first else "") + "\n"
             if meta.get("init_from") else "")
    frozen = f" ({', '.join(meta['frozen'])} frozen)" if meta.get("frozen") else ""
    if meta.get("vq_soft_rate"):
        frozen += f", the VQ rate's gradient through a soft assignment (`--vq-soft-rate {meta['vq_soft_rate']:g}`)"
    return start + (f"- {meta.get('steps')} steps{frozen} on {', '.join(meta.get('train_data', []))} (training split: every "
            f"20th image held out for validation; Kodak never used), random {meta.get('crop')}px crops, "
            f"batch {meta.get('batch')}, Adam {lr}; wall time {meta.get('train_hours')} h on "
            f"{meta.get('hardware') or 'unknown hardware'}"
            + ("; then its prior refitted (`aecodec refit`)" if meta.get("prior_refit") else ""))


def _hash_line(lm) -> str:
    """The weights hash a file's header carries, for each combination of the
    optional parts (context model, post-filter) the model has."""
    parts = [(flag, name) for flag, name in ((lm.net.latent_kind == "scalar" and getattr(lm.net, "has_context", False),
                                              "context model"), (lm.net.has_post, "post-filter")) if flag]
    if not parts:
        return f"- weights hash (in every .aec header): `{lm.weights_hash.hex()}`"
    has_c = any(n == "context model" for _, n in parts)
    has_p = any(n == "post-filter" for _, n in parts)
    combos = [(c, p) for c in ((True, False) if has_c else (False,)) for p in ((True, False) if has_p else (False,))]
    def says(c, p):
        used = [n for n, on in (("context model", c), ("post-filter", p)) if on]
        return "with the " + " and ".join(used) if used else "without either" if len(parts) > 1 else "without it"
    return ("- weights hash (in every .aec header; each counts only the tensors its files use): "
            + "; ".join(f"`{lm.hash_for(c, p).hex()}` for files coded {says(c, p)}" for c, p in combos))


def part_run(r: dict, crops: str, decay: float, figures: str) -> str:
    """One training run of a part added to a fixed codec (context model, post-filter), as the card tells it."""
    return (f"{r['steps']} steps, batch {r['batch']} of {r['crop']}px crops ({crops}), Adam lr {r['lr']} "
            f"(x{decay:g} at {', '.join(map(str, r['decay_at']))}), {r.get('train_minutes')} min on "
            f"{r.get('hardware')}; {figures}")


def lineage(meta: dict) -> list:
    """The trainings that made a file, oldest first: those of the files it
    was trained from (``before``, as export records them), then its own."""
    chain, m = [], meta
    while m:
        if m.get("stages"):
            chain[:0] = m["stages"]
            break
        chain.insert(0, m)
        m = m.get("before")
    return chain


def latest_refit(meta: dict, codebooks: bool = False) -> tuple:
    """-> (the newest prior refit in the lineage (``codebooks``: the newest
    that redesigned the VQ codebooks), the trainings after it)."""
    chain = lineage(meta)
    for i in range(len(chain) - 1, -1, -1):
        refit = chain[i].get("prior_refit")
        if refit and (refit.get("codebooks") or not codebooks):
            return refit, chain[i + 1:]
    return None, []


def main() -> None:
    from codec import registry
    entry = registry.MODELS.get(sys.argv[1])
    path = entry.path if entry else Path(sys.argv[1])
    md = weights.file_metadata(path)
    if "kind" in md:
        return head_card(path, md)
    res_path = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("kodak_eval/results/results.json")
    lm = weights.load(path, entry.arch, entry.id) if entry and entry.arch else weights.load(path)
    cfg, meta = lm.config, lm.meta
    n_params = sum(p.numel() for p in lm.net.parameters())
    name = f"aecodec {lm.model_id}"
    shared = ([f"- reads `{path.name}` (the weights of `{path.stem}`) as architecture `{entry.arch}`: "
               f"{entry.purpose}; no weights of its own; what follows describes those weights"]
              if entry and entry.arch else [])
    lines = [f"# {lm.model_id}", "", *shared,
             f"- architecture: `{cfg.arch}`, N={cfg.N}, M={cfg.M}, {cfg.levels} quality levels, "
             f"{n_params / 1e6:.2f} M parameters; file {path.stat().st_size / 1e6:.1f} MB (fp16)",
             f"- lambdas (loss = bpp + lambda*255^2*MSE): {', '.join(map(str, cfg.lambdas))}",
             *([f"- residual VQ: {cfg.levels} stages, each {cfg.M // cfg.vq_dim} groups of {cfg.vq_dim}-d vectors with "
                f"their own codebooks; entries in use per stage: "
                + ", ".join(map(str, cfg.vq_stage_sizes()))] if cfg.arch == "vq" else []),
             _hash_line(lm),
             *[_stage(st, i == 0) for i, st in enumerate(lineage(meta))],
             "- how: `aecodec train` (codec/training/loop.py): every sample of a batch draws its own quality "
             "level, loss = bpp + lambda*255^2*MSE, random 0.5-1 down-scaled crops with flips"]
    refit, after = latest_refit(meta)
    if refit:
        symbols = "indices" if cfg.arch == "vq" else "bits"
        what = (f"checkerboard context model for the {symbols}" if cfg.context
                else f"factorized prior of the {symbols}")
        if getattr(cfg, "vq_classes", 0):
            what += (f", with {cfg.vq_classes} energy classes (at each position one of {cfg.vq_classes} pmfs, "
                     f"picked by the error the entries decoded before leave: the previous stage's there, summed "
                     f"over the position's groups; for stage 1's non-anchors, their anchor neighbours')")
        def num(v):
            return " -> ".join(f"{u:.3f}" for u in v) if isinstance(v, list) else f"{v:.3f}"
        fig = ", ".join(f"{k} {num(v)}" for k, v in refit.items()
                        if k not in ("rd", "rd_relative", "codebooks", "sizes", "classes", "note"))
        rd = refit.get("rd") or 0
        rel = refit.get("rd_relative")
        weight = (f"per stage {rel:g} x the error the stage removes per bit: "
                  + ", ".join(f"{v:.3g}" for v in rd) if isinstance(rd, list) and rel is not None
                  else ", ".join(f"{v:.3g}" for v in rd) if isinstance(rd, list) else f"{rd:g}")
        how = (f"; the encoder picks indices by rate and error (entropy-constrained VQ, rate weight {weight}, "
               f"`models.VQCodec.assign`), and each refit counts the indices chosen under the last one's prior"
               if rd and (not isinstance(rd, list) or any(rd)) else "")
        note = refit.get("note")
        lines.append(f"- prior: {what} refitted by counting symbols on the training images "
                     f"(`aecodec refit`, codec/training/refit.py; transforms unchanged{how}): {fig}"
                     + (f" ({note})" if note else "")
                     + (f"; then {len(after)} more training(s) above, "
                        + ("which kept the codebooks and the prior as they were" if all(
                            {"vq", "prior_logits"} <= set(st.get("frozen", ())) for st in after)
                           else "which moved what the refit had fitted") if after else ""))
    redesign, _ = latest_refit(meta, codebooks=True)
    design = (redesign or {}).get("codebooks")
    if design:
        per = "; ".join(f"stage {st['stage']} {st['before']['used']:.1%} / {st['before']['mse']:.2f} / "
                        f"{st['before']['bits']:.2f} -> {st['after']['used']:.1%} / {st['after']['mse']:.2f} / "
                        f"{st['after']['bits']:.2f}" for st in design["stages"])
        cut = redesign.get("sizes")
        lines.append((f"- codebooks: sorted by probability and cut to {', '.join(map(str, cut))} entries per stage "
                      f"(`aecodec refit --sizes`), then " if cut else "- codebooks: ") +
                     f"redesigned on the latents of every {design.get('every', 1)}th training image "
                     f"by {design['iterations']} entropy-constrained Lloyd iterations per stage (`aecodec refit "
                     f"--codebooks`, `refit.design_codebooks`), before the prior refit; entries used / squared "
                     f"error per vector / bits per index under the factorized prior, before -> after: {per}"
                     + (f" ({design['note']})" if design.get("note") else ""))
    if meta.get("integer_hs"):
        ih = meta["integer_hs"]
        lines.append(f"- hyper-decoder: integer layers after the first (codec/integer.py: integer sums, exact in any order on any platform), "
                     f"calibrated on the side latents of {ih['calibration_images']} training images "
                     f"(`scripts/integerize.py`); latent rate on other training images vs float64 h_s: "
                     + ", ".join(f"quality {q} {v:+.3f} %" for q, v in ih["rate_change_percent"].items()))
    if meta.get("context") and lm.net.latent_kind == "scalar":
        runs = lineage(meta["context"])  # a continued context model (train-context --init) keeps its start's

        def ctx_run(c):
            fig = ", ".join(f"{k} {v:+.2f} %" for k, v in c.get("validation_y_bits_percent", {}).items())
            return part_run(c, f"{c['crops_per_image']} per training image, {', '.join(c['data'])}", 0.3,
                            f"y bits vs the hyperprior alone on the validation crops: {fig}")
        c = runs[-1]
        lines.append(f"- context model (codec/context.py): y coded in 4 passes (2 channel slices x checkerboard), "
                     f"passes 1-3 under a {c['kernel']}x{c['kernel']} conv network (width {c['hidden']}, integer layers) "
                     f"that corrects the hyperprior's means and scale indexes; trained on the rate alone with the "
                     f"transforms fixed (`scripts/train_context.py`, codec/training/context.py): "
                     + "; then, continued from those weights (`--init`): ".join(ctx_run(r) for r in runs)
                     + ("" if all(c.get("passes_on", [1])) else
                        f"; passes switched off (coded under the hyperprior: the network did not save bits there on "
                        f"the validation crops): {', '.join(str(i + 1) for i, v in enumerate(c['passes_on']) if not v)}"))
    if meta.get("integer_context") and lm.net.latent_kind == "scalar":
        ic = meta["integer_context"]
        lines.append(f"- the context model's integer layers rebuilt with a wide first layer (codec/integer.py: its sums "
                     f"exact in float32 per group of {ic.get('group', 64)} input channels, the groups added in float64, "
                     f"instead of one float32 budget per output, under which most of its 4,338 weights per output "
                     f"rounded to a few levels), calibrated on {ic['calibration_crops']} training crops "
                     f"(`scripts/integerize.py --context`); latent bytes of {ic['measured_on_images']} other training "
                     f"images coded with the context model, against the earlier integer layers: "
                     + ", ".join(f"quality {q} {v:+.3f} %" for q, v in ic["latent_bytes_change_percent"].items()))
    if meta.get("post") and lm.net.has_post:
        runs = lineage(meta["post"])  # a continued filter (train-post --init) keeps its start's under "before"

        def run_line(pm):
            fig = ", ".join(f"{k} {v:+.3f} dB" for k, v in pm.get("validation_psnr_gain_db", {}).items())
            return part_run(pm, f"a bank of {pm['crops']} crops of {', '.join(pm['data'])} coded through the encoder",
                            0.1, f"PSNR gain on the validation crops: {fig}")
        pm = runs[-1]
        lines.append(f"- post-filter (codec/post.py): {pm['layers'] + 2} 3x3 convolutions of width {pm['width']} at half "
                     f"resolution (space-to-depth) on g_s's output, the quality as an input plane, adding its output "
                     f"to the picture; trained on its own with the codec fixed (`aecodec train-post`, "
                     f"codec/training/post.py): "
                     + "; then, continued from those weights (`--init`): ".join(map(run_line, runs)))
    if meta.get("post_with_codec") and lm.net.has_post:
        pf = lm.net.post
        lines.append(f"- post-filter (codec/post.py): {pf.layers + 2} 3x3 convolutions of width {pf.width} at half "
                     f"resolution on g_s's output, trained with the transforms in the run above, end to end "
                     f"(`aecodec train --post`: the distortion is the filtered picture's)"
                     + (f", from the filter of {meta['init_from']}" if meta.get("init_from") else ""))
    for dm in meta.get("decoder", []) if lm.net.has_post else []:
        fig = ", ".join(f"{k} {v:+.3f} dB" for k, v in dm.get("validation_psnr_gain_db", {}).items())
        lines.append((f"- then that run continued from its step {dm['continued_from']} (Adam's state kept, "
                      f"the learning rate set anew): " if dm.get("continued_from") else
                      f"- then g_s and the post-filter fine-tuned together at fixed latents (the encoder, entropy "
                      f"models and context model unchanged, so every file keeps its bits; `aecodec train-decoder`, "
                      f"codec/training/decoder.py, loss: mean log MSE per crop): ")
                     + f"{dm['steps']} steps, batch "
                     f"{dm['batch']} of {dm['crop']}px crops (a bank of {dm['crops']} crops of "
                     f"{', '.join(dm['data'])} coded through the encoder), Adam lr {dm['lr']} (x0.1 at "
                     f"{', '.join(map(str, dm['decay_at']))}), {dm.get('train_minutes')} min on {dm.get('hardware')}; "
                     f"PSNR gain over the decoder before on the validation crops: {fig}")
    lines.append("")
    if res_path.exists():
        res = json.loads(res_path.read_text())
        curves = [(k, c) for k, c in res["codecs"].items() if k == name or k.startswith(name + " effort ")]
        for key, c in curves:
            how = "" if key == name else f", encoder {key[len(name) + 1:]} (`--effort`: latent refinement)"
            measured = c.get("weights")
            if measured and measured not in {h.hex() for h in (lm.hashes or {0: lm.weights_hash}).values()} | {lm.base_hash.hex()}:
                how += f"; measured with an earlier version of this file, weights `{measured}`"
            lines += [f"## Kodak ({res['images']} images, measured by `python -m kodak_eval`{how})", "",
                      "| quality | bpp | PSNR (dB) | MS-SSIM | encode s | decode s |", "|---|---|---|---|---|---|"]
            for i, q in enumerate(c["settings"]):
                ms = c["ms_ssim"][i]
                lines.append(f"| {q:g} | {c['bpp'][i]:.4f} | {c['psnr'][i]:.2f} | "
                             f"{'' if ms is None else f'{ms:.4f}'} | {c['enc_s'][i]:.2f} | {c['dec_s'][i]:.2f} |")
            bd = res.get("bd_rate", {}).get(key, {})
            if bd:
                lines += ["", "BD-rate (PSNR): " + ", ".join(
                    f"{k} {'n/a' if v is None else f'{v:+.1f}%'}" for k, v in bd.items())]
            lines.append(f"\nDecoded pixels equal the encoder's reconstruction on every image: {c.get('exact_decode')}")
            if c.get("machine"):  # curves measured since kodak_eval recorded them
                lines.append(f"\nMeasured on {c['machine']}"
                             + (f", {c['precision']} synthesis" if c.get("precision") else "")
                             + (f", the post-filter averaged over {c['post_views']} views"
                                if (c.get("post_views") or 1) > 1 else "")
                             + " (the times are this machine's)")
            lines.append("")
    out = entry.card if entry else path.with_suffix(".md")
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
