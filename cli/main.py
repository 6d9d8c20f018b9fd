"""aecodec command line: a thin layer over ``codec``.

Each error becomes one line on stderr and exit status 1 (2 for usage
errors, as click does); ``--debug`` shows the traceback. ``--help``,
``info`` and ``models`` never import torch.
"""

from __future__ import annotations

import functools
import io
import json
import sys
import time
import warnings
from pathlib import Path

import click

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                  ".gif", ".avif", ".heic", ".tga"}


class Failure(Exception):
    """A user-facing error: its message is printed as is."""


def _fail_line(exc: BaseException) -> str:
    return " ".join(_fail_text(exc).split())  # always one line


def _fail_text(exc: BaseException) -> str:
    known = (ValueError, OSError, KeyError, Failure, RuntimeError)
    if isinstance(exc, KeyError):
        return str(exc.args[0]) if exc.args else "missing key"
    if isinstance(exc, known):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)"


def guarded(fn):
    """Run a command; turn any exception into one line and exit 1."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        debug = (ctx.find_root().obj or {}).get("debug", False)
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - this is the error boundary
            if debug:
                raise
            if isinstance(exc, KeyboardInterrupt):
                click.echo("aecodec: interrupted", err=True)
                sys.exit(130)
            if isinstance(exc, BrokenPipeError):  # stdout's reader left (| head): stop quietly
                import os
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                sys.exit(141)
            click.echo(f"aecodec: error: {_fail_line(exc)}", err=True)
            sys.exit(1)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option("0.1.0", prog_name="aecodec")
@click.pass_context
def main(ctx, debug):
    """aecodec: a learned image codec (compress, decompress, inspect .aec files)."""
    ctx.obj = {"debug": debug}
    if not debug:
        warnings.simplefilter("ignore", FutureWarning)


def _expand(inputs, suffixes) -> tuple[list[Path], bool]:
    """Files and folders -> files; also whether the input was 'many'."""
    files, many = [], len(inputs) > 1
    for name in inputs:
        p = Path(name)
        if p.is_dir():
            many = True
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in suffixes)
            if not found:
                raise Failure(f"{p}: no files with suffix {', '.join(sorted(suffixes))}")
            files += found
        elif not p.exists():
            raise Failure(f"{p}: no such file")
        else:
            files.append(p)
    return files, many


def _outputs(files, many, out, suffix) -> list[Path]:
    if many:
        folder = Path(out) if out else None
        if folder is not None:
            if folder.exists() and not folder.is_dir():
                raise Failure(f"-o {folder}: with several inputs -o must name a folder")
            folder.mkdir(parents=True, exist_ok=True)
        outs = [(folder or f.parent) / (f.stem + suffix) for f in files]
    else:
        outs = [Path(out) if out else files[0].with_suffix(suffix)]
    same = [f for f, o in zip(files, outs) if f.resolve() == o.resolve()]
    if same:
        raise Failure(f"{same[0]}: the output would overwrite the input; name another with -o")
    dup = {o for o in outs if outs.count(o) > 1}
    if dup:
        raise Failure(f"several inputs would write {sorted(dup)[0]}; rename them or use -o")
    return outs


def _progress(items, show):
    if not show:
        return items
    from tqdm import tqdm
    return tqdm(items, unit="file", file=sys.stderr, dynamic_ncols=True)


def _init_worker(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)
    warnings.simplefilter("ignore", FutureWarning)


def _run_all(pairs, work, show_bar, workers: int = 1):
    """Run ``work(src, dst) -> (stdout lines, warning lines)`` on each pair,
    in ``workers`` processes when more than one; report each failure on its
    own line and exit 1 at the end if any failed."""
    failed = 0
    debug = click.get_current_context().find_root().obj.get("debug")
    errors = (ValueError, OSError, KeyError, RuntimeError, Failure)

    def report(result):
        lines, warns = result
        for w in warns:
            click.echo(f"aecodec: warning: {w}", err=True)
        for line in lines:
            click.echo(line)

    if workers > 1 and len(pairs) > 1:
        import os
        from concurrent.futures import ProcessPoolExecutor
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(threads,)) as pool:
            futures = [pool.submit(work, src, dst) for src, dst in pairs]
            for fut in _progress(futures, show_bar):
                try:
                    report(fut.result())
                except errors as exc:
                    if debug:
                        raise
                    failed += 1
                    click.echo(f"aecodec: error: {_fail_line(exc)}", err=True)
    else:
        for src, dst in _progress(pairs, show_bar):
            try:
                report(work(src, dst))
            except errors as exc:
                if debug:
                    raise
                failed += 1
                click.echo(f"aecodec: error: {_fail_line(exc)}", err=True)
    if failed:
        sys.exit(1)


def _compress_one(src, dst, opts):
    """One file: encode, write atomically. -> (stdout lines, warnings)."""
    from codec.fileio import write_atomic
    from codec.pipeline import encode, encode_target

    if dst.exists() and not opts["force"]:
        raise Failure(f"{dst} already exists; pass -f/--force to overwrite it")
    t0 = time.perf_counter()
    kw = dict(model=opts["model"], max_pixels=opts["limit"], tile=opts["tile"], device=opts["device"],
              precision=opts["precision"], effort=opts["effort"], post_views=opts["post_views"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        if opts.get("denoise") is not None:
            from codec.heads.restore import denoise
            src_image = denoise(src, sigma=opts["denoise"], max_pixels=opts["limit"]).to_pil()
        else:
            src_image = src
        if opts["target_bpp"] is not None or opts["target_psnr"] is not None:
            res = encode_target(src_image, target_bpp=opts["target_bpp"], target_psnr=opts["target_psnr"],
                                **kw)
        else:
            res = encode(src_image, quality=opts["quality"], **kw)
    write_atomic(dst, res.data, force=opts["force"])
    secs = time.perf_counter() - t0
    if opts["json"]:
        line = json.dumps({"input": str(src), "output": str(dst), "bytes": len(res.data),
                           "bpp": round(res.bpp, 6), "psnr": round(res.psnr, 4),
                           "quality": res.header.quality, "model": res.header.model,
                           "denoised": opts.get("denoise") is not None, "seconds": round(secs, 3)})
    else:
        vs = " (vs the denoised image)" if opts.get("denoise") is not None else ""
        line = (f"{src} -> {dst}: {len(res.data)} bytes, {res.bpp:.4f} bpp, {res.psnr:.2f} dB PSNR{vs}, "
                f"quality {res.header.quality:g} ({secs:.2f} s)")
    return [line], [f"{src}: {w.message}" for w in caught if issubclass(w.category, UserWarning)]


def _decompress_one(src, dst, opts):
    from codec import container
    from codec.pipeline import decode

    data = src.read_bytes()
    try:  # not an .aec file at all says so, before any word about the output
        container.parse_header(data, max_pixels=None)
    except ValueError as exc:
        raise Failure(f"{src}: {exc}") from None
    if dst.exists() and not opts["force"]:
        raise Failure(f"{dst} already exists; pass -f/--force to overwrite it")
    try:
        pic = decode(data, model=opts["model"], max_pixels=opts["limit"], region=opts["region"])
    except ValueError as exc:
        raise Failure(f"{src}: {exc}") from None
    _write_image(pic.to_pil(), dst, opts["force"])
    return [f"{src} -> {dst}: {pic.width}x{pic.height} {pic.mode}"], []


def _write_image(im, dst: Path, force: bool) -> Path:
    """A PIL image (or uint8 array) -> ``dst`` in the format of its suffix,
    atomically, refusing to overwrite without ``force``."""
    from PIL import Image

    from codec.fileio import write_atomic
    if not isinstance(im, Image.Image):
        im = Image.fromarray(im)
    if dst.exists() and not force:
        raise Failure(f"{dst} already exists; pass -f/--force to overwrite it")
    buf = io.BytesIO()
    try:
        im.save(buf, format=_format_for(dst))
    except (KeyError, ValueError, OSError) as exc:
        raise Failure(f"{dst}: cannot write this format ({exc})") from None
    return write_atomic(dst, buf.getvalue(), force=force)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "out", help="Output file, or folder when there are several inputs.")
@click.option("-q", "--quality", type=float, default=4.0, show_default=True,
              help="1 (smallest) to 8 (best); fractions allowed; the default model goes down to -1.")
@click.option("--target-bpp", type=float, help="Pick the quality that meets this bits per pixel.")
@click.option("--target-psnr", type=float, help="Pick the lowest quality reaching this PSNR (dB).")
@click.option("--model", help="Model id (see 'aecodec models') or a .safetensors file.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file.")
@click.option("--max-pixels", type=int, default=None, help="Refuse larger images (default 1e8).")
@click.option("--tile", type=int, default=1024, show_default=True,
              help="Tile side in pixels (multiple of 64; 0: whole image at once).")
@click.option("--workers", type=int, default=1, show_default=True, help="Processes for many files.")
@click.option("--denoise", "denoise_", is_flag=True,
              help="Denoise first and code the clean estimate (noise costs bits).")
@click.option("--sigma", default="auto", show_default=True,
              help="With --denoise: noise std on the 0-255 scale, or 'auto'.")
@click.option("--device", default="cpu", show_default=True,
              help="Run the analysis transform on cpu or cuda (decoding is always exact on CPU).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="Synthesis arithmetic, recorded in the file (auto: bf16 where the CPU does it natively "
                   "and the model has no post-filter, through whose layers bf16 lost up to 0.08 dB; else fp32).")
@click.option("--effort", type=click.IntRange(0, 10000), default=0, show_default=True,
              help="Steps of encoder-side latent refinement: smaller files at the same quality, "
                   "about 0.7 s per step per megapixel on 2 CPU cores (decoding is unchanged).")
@click.option("--post-views", type=click.Choice(["1", "2", "4", "8"]), default=None,
              help="Views of the picture (itself, its transpose, its mirror images) whose post-filter outputs "
                   "the decoder averages, for models with a post-filter: more views, higher quality at the "
                   "same size, slower decoding.  [default: 2]")
@guarded
def compress(inputs, out, quality, target_bpp, target_psnr, model, force, as_json, max_pixels, tile,
             workers, denoise_, sigma, device, precision, effort, post_views):
    """Compress images to .aec files."""
    from codec import container

    if target_bpp is not None and target_psnr is not None:
        raise click.UsageError("give --target-bpp or --target-psnr, not both")
    limit = max_pixels or container.DEFAULT_MAX_PIXELS
    if device != "cpu":
        from codec.tiling import check_device
        check_device(device)
    files, many = _expand(inputs, IMAGE_SUFFIXES)
    outs = _outputs(files, many, out, ".aec")
    opts = dict(force=force, model=model, limit=limit, tile=tile, quality=quality, json=as_json,
                target_bpp=target_bpp, target_psnr=target_psnr, denoise=_sigma(sigma) if denoise_ else None,
                device=device, precision=None if precision == "auto" else precision, effort=effort,
                post_views=None if post_views is None else int(post_views))
    work = functools.partial(_compress_one, opts=opts)
    _run_all(list(zip(files, outs)), work, many, workers)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "out", help="Output image (format from its suffix), or folder.")
@click.option("--model", help="Weights file for .aec files made by a model not shipped here.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--max-pixels", type=int, default=None, help="Refuse larger images (default 1e8).")
@click.option("--crop", help="Decode only the region X,Y,W,H (left, top, width, height).")
@click.option("--workers", type=int, default=1, show_default=True, help="Processes for many files.")
@guarded
def decompress(inputs, out, model, force, max_pixels, crop, workers):
    """Decompress .aec files to PNG (or any format Pillow writes)."""
    from codec import container

    limit = max_pixels or container.DEFAULT_MAX_PIXELS
    region = None
    if crop:
        try:
            region = tuple(int(v) for v in crop.split(","))
            assert len(region) == 4
        except (ValueError, AssertionError):
            raise click.BadParameter("expected X,Y,W,H (four integers)", param_hint="--crop") from None
    files, many = _expand(inputs, {".aec"})
    outs = _outputs(files, many, out, ".png")
    opts = dict(force=force, model=model, limit=limit, region=region)
    work = functools.partial(_decompress_one, opts=opts)
    _run_all(list(zip(files, outs)), work, many, workers)


def _format_for(path: Path) -> str:
    from PIL import Image
    Image.init()
    fmt = Image.EXTENSION.get(path.suffix.lower())
    if fmt is None:
        raise Failure(f"{path}: unknown image format for suffix {path.suffix!r}")
    return fmt


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@guarded
def info(file, as_json):
    """Show the header of an .aec file (no decoding)."""
    import zlib

    from codec import container
    path = Path(file)
    if not path.exists():
        raise Failure(f"{path}: no such file")
    data = path.read_bytes()
    header, hlen, pcrc = container.parse_header(data, max_pixels=None)
    total = hlen + sum(header.stream_lengths)
    intact = len(data) == total and zlib.crc32(data[hlen:]) == pcrc
    d = header.to_dict()
    d.update(file=str(path), bytes=len(data), header_bytes=hlen,
             bpp=8 * len(data) / (header.width * header.height), checksum_ok=intact)
    if as_json:
        click.echo(json.dumps(d))
        return
    for k in ("file", "version", "width", "height", "mode", "bit_depth", "latent_kind", "model",
              "weights", "quality", "precision", "split", "context", "post", "post_views", "bytes", "header_bytes",
              "stream_lengths", "bpp", "checksum_ok"):
        v = d[k]
        click.echo(f"{k:>14}: {round(v, 4) if isinstance(v, float) else v}")
    if not intact:
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@guarded
def models(as_json):
    """List the shipped models."""
    from codec import registry
    rows = registry.listing()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        size = f"{r['bytes'] / 1e6:.1f} MB" if r["bytes"] else "not installed"
        if r["bytes"] and r["arch"]:
            size = f"reads {r['file']} ({size})"
        mark = " (default)" if r["default"] else ""
        q = r["qualities"]
        click.echo(f"{r['id']}{mark}: {r['latent_kind']} latent, quality {q[0]:g} to {q[1]:g}, "
                   f"{size} - {r['purpose']}")


def _init_config(init, cfg, ctx):
    """The model config of a run started from weights file ``init``: the
    file's, with the architecture options given on the command line. A
    context model trained on its own (``weights.DERIVED_PREFIXES``) is
    dropped with its tensors; one that is a coding table (VQ, binary) stays."""
    from dataclasses import replace

    from click.core import ParameterSource

    from codec import weights
    from codec.models import ModelConfig, build
    try:
        meta = weights.file_metadata(init)
    except Exception as e:
        raise Failure(f"--init {init}: cannot read it as a weights file ({e})") from None
    if "config" not in meta:
        raise Failure(f"--init {init}: not an aecodec weights file (no config in its metadata)")
    base = ModelConfig.from_json(meta["config"])
    given = {field: getattr(cfg, field) for field, param in
             (("arch", "arch"), ("N", "n"), ("M", "m"), ("lambdas", "lambdas"), ("codebook", "codebook"),
              ("vq_dim", "vq_dim")) if ctx.get_parameter_source(param) is not ParameterSource.DEFAULT}
    out = replace(base, **given)
    if out.context and any(k.startswith(weights.DERIVED_PREFIXES) for k in build(out).state_dict()):
        out = replace(out, context=False)
    return out


@main.command()
@click.argument("data", nargs=-1)
@click.option("--out", "out", required=True, help="Run folder (checkpoints, log.csv, config.json).")
@click.option("--arch", default="hyperprior", show_default=True)
@click.option("--N", "n", type=int, default=96, show_default=True, help="Hidden channels.")
@click.option("--M", "m", type=int, default=160, show_default=True, help="Latent channels.")
@click.option("--lambdas", default="", help="Comma-separated lambda per quality level "
              "(default: CompressAI's 8; for vq their count is the number of stages).")
@click.option("--codebook", type=int, default=256, show_default=True, help="vq: entries per codebook.")
@click.option("--vq-dim", type=int, default=4, show_default=True, help="vq: vector length.")
@click.option("--crop", type=int, default=256, show_default=True)
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--steps", type=int, default=1_000_000, show_default=True)
@click.option("--decay-at", type=int, default=10**9, help="Step from which lr is multiplied by 0.1.")
@click.option("--warmup", type=int, default=0, show_default=True,
              help="Steps over which lr ramps up from 0 (use with --init).")
@click.option("--minutes", type=float, default=float("inf"), help="Stop (with a checkpoint) after this long.")
@click.option("--ckpt-every", type=float, default=300, show_default=True, help="Seconds between checkpoints.")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in --out.")
@click.option("--pack", default="", help="Train on a crop pack ('aecodec pack') instead of DATA.")
@click.option("--init", default="", help="Start from these weights (.safetensors) unless resuming; the "
              "architecture options not given (--arch, --N, --M, --lambdas, --codebook, --vq-dim) and the "
              "file's other settings (a VQ rate weight, a VQ or binary context model) are the file's.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model.")
@click.option("--freeze", default="", help="Comma-separated parameter-name prefixes to keep fixed "
              "(e.g. g_a,vq,prior_logits: fine-tune the synthesis alone).")
@click.option("--vq-soft-rate", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="vq: give the rate a gradient through a soft assignment of this temperature (x the mean "
              "nearest distance; e.g. 0.1); the coded rate stays the hard indices'. 0: off.")
@click.option("--post", is_flag=True, help="Train the post-filter with the codec, end to end (the distortion "
              "is the filtered picture's): the --init file's filter, or a new one that starts as the identity. "
              "Without it a run from a file drops the file's filter, which was made for the old transforms.")
@click.option("--bf16", is_flag=True, help="On the CPU, run the transforms in bfloat16 autocast (likelihoods in "
              "fp32) and channels-last, as on CUDA, where it is always on: about 3x the steps/s on CPUs with "
              "native bfloat16 (AVX512-BF16, AMX); slower where it is emulated.")
@click.option("--val-every", type=int, default=1000, show_default=True)
@click.option("--progress/--no-progress", default=True)
@guarded
def train(data, out, arch, n, m, lambdas, codebook, vq_dim, crop, batch, lr, steps, decay_at, warmup, minutes,
          ckpt_every, threads, device, seed, resume, pack, init, compile_, freeze, vq_soft_rate, post, bf16,
          val_every, progress):
    """Train a model on image folders (loss = bpp + lambda*255^2*MSE, all qualities at once)."""
    from codec.models import ModelConfig
    from codec.training.loop import TrainConfig
    from codec.training.loop import train as run

    if not data and not pack:
        raise click.UsageError("give image folders to train on, or --pack")
    extra = {"lambdas": tuple(float(v) for v in lambdas.split(","))} if lambdas else {}
    cfg = ModelConfig(arch=arch, N=n, M=m, codebook=codebook, vq_dim=vq_dim, **extra)
    if init:
        cfg = _init_config(init, cfg, click.get_current_context())
    tc = TrainConfig(data=list(data), out=out, model=cfg,
                     crop=crop, batch=batch, lr=lr, steps=steps, decay_at=decay_at, warmup=warmup, max_minutes=minutes,
                     ckpt_every_s=ckpt_every, threads=threads, device=device, seed=seed, pack=pack,
                     init=init, compile=compile_, val_every=val_every, progress=progress,
                     freeze=tuple(f for f in freeze.split(",") if f), vq_soft_rate=vq_soft_rate, post=post,
                     bf16=bf16)
    path = run(tc, resume=resume, log=lambda msg: click.echo(msg, err=True))
    click.echo(f"checkpoint {path}")


@main.command()
@click.argument("data", nargs=-1, required=True)
@click.option("-o", "--output", "out", required=True, help="Pack file to write (.safetensors).")
@click.option("--short-side", type=int, default=400, show_default=True,
              help="Down-scale larger images to this shorter side.")
@click.option("-f", "--force", is_flag=True)
@guarded
def pack(data, out, short_side, force):
    """Pack the training split of image folders (uint8) for a GPU burst."""
    from codec.training.pack import make_pack

    if Path(out).exists() and not force:
        raise Failure(f"{out} already exists; pass -f/--force to overwrite it")
    path = make_pack(list(data), out, short_side)
    click.echo(f"{path}: {path.stat().st_size / 2**20:.1f} MiB")


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True))
@click.option("-o", "--output", "out", required=True, help="Weights file to write (.safetensors).")
@click.option("--id", "model_id", default="", help="Model id stored in the file and in .aec headers "
              "(codec checkpoints; a head's checkpoint exports as its kind).")
@click.option("--hardware", default="", help="Where it was trained, for the model card.")
@click.option("-f", "--force", is_flag=True)
@guarded
def export(checkpoint, out, model_id, hardware, force):
    """Turn a training checkpoint (codec or head; a .pt file or a compact
    checkpoint folder) into a shipped weights file."""
    from codec.training import checkpoint as ckpt
    from codec.training.export import export as run
    from codec.training.heads import export_head

    if Path(out).exists() and not force:
        raise Failure(f"{out} already exists; pass -f/--force to overwrite it")
    if Path(checkpoint).is_dir() and not (Path(checkpoint) / "state.json").exists():
        raise Failure(f"{checkpoint} is a folder but not a compact checkpoint (no state.json)")
    st = ckpt.load(checkpoint)
    if "head_config" in st:
        kind = json.loads((Path(checkpoint).parent / "config.json").read_text()).get("kind", "")
        meta = export_head(checkpoint, out, kind, hardware)
    elif not model_id:
        raise click.UsageError("--id is required for a codec checkpoint")
    else:
        meta = run(checkpoint, out, model_id, hardware)
    click.echo(json.dumps(meta))


@main.command("train-context")
@click.argument("data", nargs=-1)
@click.option("--weights", "weights_path", required=True, help="A scalar (hyperprior) model's .safetensors file.")
@click.option("--out", "out", required=True, help="Run folder (latent bank, ckpt.pt, log.csv).")
@click.option("-o", "--output", default=None, help="Write the weights file with the context model installed.")
@click.option("--steps", type=int, default=20000, show_default=True)
@click.option("--decay-at", default=None, help="Comma-separated steps where lr is multiplied by 0.3 [70%, 90% of --steps].")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--crop", type=int, default=256, show_default=True)
@click.option("--crops-per-image", type=int, default=8, show_default=True)
@click.option("--minutes", type=float, default=None, help="Stop (with a checkpoint) after this long.")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from --out's checkpoint.")
@click.option("--install-only", is_flag=True, help="Skip training: install --out's checkpoint into -o "
              "(the settings recorded are the run's, not these flags).")
@click.option("--pack", default="", help="Train on a crop pack (aecodec pack) instead of DATA folders.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--batch", type=int, default=16, show_default=True)
@click.option("--init", is_flag=True, help="Start from --weights' own context model (continue its training).")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing -o file.")
@guarded
def train_context(data, weights_path, out, output, steps, decay_at, lr, crop, crops_per_image, minutes, threads,
                  resume, install_only, pack, device, batch, init, force):
    """Train a scalar model's context model on the rate alone (transforms fixed) and install it."""
    import torch

    from codec.training.context import run
    if not data and not pack:
        raise click.UsageError("give training folders (DATA) or --pack")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise Failure("--device cuda: no CUDA device here")
    if output and Path(output).exists() and not force and Path(output).resolve() != Path(weights_path).resolve():
        raise Failure(f"{output} already exists; pass -f/--force to overwrite it")
    if install_only and not (Path(out) / "ckpt.pt").exists():
        raise Failure(f"no checkpoint in {out} to install")
    torch.set_num_threads(threads)
    decay = tuple(int(s) for s in decay_at.split(",")) if decay_at else None
    report = run(weights_path, data, out, steps, decay, lr, minutes, resume, output, install_only,
                 log=lambda msg: click.echo(msg, err=True), crop=crop, crops_per_image=crops_per_image,
                 pack=pack, device=device, batch=batch, init=init)
    click.echo(json.dumps(report))


def _part_run_checks(weights_path, out, output, install_only, crop, force, threads, decay_at):
    """The checks train-post and train-decoder share (before any work) -> the decay steps."""
    import torch

    if output and Path(output).exists() and not force and Path(output).resolve() != Path(weights_path).resolve():
        raise Failure(f"{output} already exists; pass -f/--force to overwrite it")
    if install_only and not (Path(out) / "ckpt.pt").exists():
        raise Failure(f"no checkpoint in {out} to install")
    if crop % 64 or crop < 64:
        raise Failure(f"--crop must be a multiple of 64, got {crop}")
    torch.set_num_threads(threads)
    return tuple(int(s) for s in decay_at.split(",")) if decay_at else None


_bank_seed = click.option("--seed", type=int, default=0, show_default=True,
                          help="Draws the bank's crops and qualities and the batches (another cycle: a new seed).")


@main.command("train-post")
@click.argument("data", nargs=-1, required=True)
@click.option("--weights", "weights_path", required=True, help="A scalar (hyperprior) model's .safetensors file.")
@click.option("--out", "out", required=True, help="Run folder (bank of coded crops, ckpt.pt, log.csv).")
@click.option("-o", "--output", default=None, help="Write the weights file with the post-filter installed.")
@click.option("--steps", type=int, default=6000, show_default=True)
@click.option("--decay-at", default=None, help="Comma-separated steps where lr is multiplied by 0.1 [80% of --steps].")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--crops", type=int, default=4000, show_default=True, help="Training crops coded into the bank.")
@click.option("--crop", type=int, default=128, show_default=True)
@click.option("--width", type=int, default=None, help="Channels [64; with --init: the file's filter's].")
@click.option("--layers", type=int, default=None,
              help="Hidden 3x3 layers after the first [3; with --init: the file's filter's].")
@click.option("--batch", type=int, default=16, show_default=True)
@click.option("--minutes", type=float, default=None, help="Stop (with a checkpoint) after this long.")
@click.option("--threads", type=int, default=1, show_default=True)
@_bank_seed
@click.option("--resume", is_flag=True, help="Continue from --out's checkpoint.")
@click.option("--init", is_flag=True, help="Start from --weights' own post-filter (continue its training; "
              "a larger --layers adds identity layers to it, a larger --width new channels that start unread).")
@click.option("--install-only", is_flag=True, help="Skip training: install --out's checkpoint into -o "
              "(the settings recorded are the run's, not these flags).")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing -o file.")
@guarded
def train_post(data, weights_path, out, output, steps, decay_at, lr, crops, crop, width, layers, batch, minutes,
               threads, seed, resume, init, install_only, force):
    """Train a scalar model's post-filter on g_s's output (the codec fixed) and install it."""
    from codec.training.post import run
    decay = _part_run_checks(weights_path, out, output, install_only, crop, force, threads, decay_at)
    try:
        report = run(weights_path, data, out, steps, decay, minutes, resume, output, install_only,
                     log=lambda msg: click.echo(msg, err=True), lr=lr, crops=crops, crop=crop, width=width,
                     layers=layers, batch=batch, init=init, seed=seed)
    except ValueError as exc:
        raise Failure(str(exc)) from None
    click.echo(json.dumps(report))


@main.command("train-decoder")
@click.argument("data", nargs=-1, required=True)
@click.option("--weights", "weights_path", required=True,
              help="A scalar (hyperprior) model's .safetensors file with a post-filter.")
@click.option("--out", "out", required=True, help="Run folder (bank of coded crops, ckpt.pt, log.csv).")
@click.option("-o", "--output", default=None, help="Write the weights file with the fine-tuned decoder.")
@click.option("--steps", type=int, default=5000, show_default=True)
@click.option("--decay-at", default=None, help="Comma-separated steps where lr is multiplied by 0.1 [80% of --steps].")
@click.option("--lr", type=float, default=5e-6, show_default=True)
@click.option("--crops", type=int, default=6000, show_default=True, help="Training crops coded into the bank.")
@click.option("--crop", type=int, default=128, show_default=True)
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--minutes", type=float, default=None, help="Stop (with a checkpoint) after this long.")
@click.option("--threads", type=int, default=1, show_default=True)
@_bank_seed
@click.option("--resume", is_flag=True, help="Continue from --out's checkpoint (--weights may be the file an "
              "earlier checkpoint of this run was installed into: its install then records only the steps since).")
@click.option("--install-only", is_flag=True, help="Skip training: install --out's checkpoint into -o "
              "(the settings recorded are the run's, not these flags).")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing -o file.")
@guarded
def train_decoder(data, weights_path, out, output, steps, decay_at, lr, crops, crop, batch, minutes, threads,
                  seed, resume, install_only, force):
    """Fine-tune a scalar model's g_s and post-filter at fixed latents (every file keeps its bits) and install them."""
    from codec.training.decoder import run
    decay = _part_run_checks(weights_path, out, output, install_only, crop, force, threads, decay_at)
    try:
        report = run(weights_path, data, out, steps, decay, minutes, resume, output, install_only,
                     log=lambda msg: click.echo(msg, err=True), lr=lr, crops=crops, crop=crop, batch=batch,
                     seed=seed)
    except ValueError as exc:
        raise Failure(str(exc)) from None
    click.echo(json.dumps(report))


@main.command("train-head")
@click.argument("kind", type=click.Choice(["restore", "vae", "defect"]))
@click.argument("data", nargs=-1, required=True)
@click.option("--out", "out", required=True, help="Run folder (checkpoints, log.csv, config.json).")
@click.option("--crop", type=int, default=96, show_default=True)
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=4e-4, show_default=True)
@click.option("--steps", type=int, default=1_000_000, show_default=True)
@click.option("--decay-at", type=int, default=10**9, help="Step from which lr is multiplied by 0.25.")
@click.option("--warmup", type=int, default=0, show_default=True,
              help="Steps over which lr ramps up from 0 (use with --init).")
@click.option("--init", default="", help="Start from this head's weights (.safetensors) unless resuming.")
@click.option("--minutes", type=float, default=float("inf"), help="Stop (with a checkpoint) after this long.")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in --out.")
@guarded
def train_head(kind, data, out, crop, batch, lr, steps, decay_at, warmup, init, minutes, threads, resume):
    """Train a head (restore: denoise + inpaint; vae: generator; defect: anomaly segmenter) on image folders."""
    from codec.training.heads import HeadTrainConfig, fit, heads

    cfg_cls, net_cls, loss = heads()[kind]
    tc = HeadTrainConfig(data=list(data), out=out, kind=kind, crop=crop, batch=batch, lr=lr, steps=steps,
                         decay_at=decay_at, warmup=warmup, init=init, max_minutes=minutes, threads=threads)
    path = fit(net_cls(cfg_cls()), loss, tc, resume=resume, log=lambda msg: click.echo(msg, err=True))
    click.echo(f"checkpoint {path}")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", help="Model id or .safetensors file.")
@click.option("--full", "full_dir", help="Also save each full latent (M x H/16 x W/16) as .npy here.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image with the vector.")
@guarded
def embed(inputs, model, full_dir, as_json):
    """Latent embeddings: a fixed-length vector per image (channel means and stds of y)."""
    import numpy as np

    from codec.heads.embed import embed as run

    files, _ = _expand(inputs, IMAGE_SUFFIXES)
    if full_dir:
        Path(full_dir).mkdir(parents=True, exist_ok=True)
    for f in files:
        vec = run(f, model=model)
        if full_dir:
            np.save(Path(full_dir) / (f.stem + ".npy"), run(f, model=model, pooled=False))
        if as_json:
            click.echo(json.dumps({"input": str(f), "dim": int(vec.size),
                                   "embedding": [round(float(v), 5) for v in vec]}))
        else:
            click.echo(f"{f}: {vec.size}-d embedding, norm {float(np.linalg.norm(vec)):.3f}")


@main.command()
@click.option("-o", "--output", "out", default="out/demo", show_default=True, help="Folder for the results.")
@click.option("-q", "--quality", type=float, default=4.0, show_default=True)
@guarded
def demo(out, quality):
    """Compress and decompress the bundled sample image with the default model."""
    from importlib.resources import files

    from codec import io as cio
    from codec.fileio import write_atomic
    from codec.pipeline import decode, encode

    sample = Path(str(files("codec") / "data" / "sample.png"))
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = encode(sample, quality=quality)
    t1 = time.perf_counter()
    aec = write_atomic(folder / "sample.aec", res.data, force=True)
    pic = decode(aec.read_bytes())
    t2 = time.perf_counter()
    buf = io.BytesIO()
    pic.to_pil().save(buf, "PNG")
    png = write_atomic(folder / "sample.png", buf.getvalue(), force=True)
    orig = cio.load(sample)
    click.echo(f"model     {res.header.model} at quality {quality:g}")
    click.echo(f"input     {sample} ({orig.width}x{orig.height})")
    click.echo(f"aec       {aec} ({len(res.data)} bytes, {res.bpp:.4f} bpp)")
    click.echo(f"decoded   {png}")
    click.echo(f"PSNR      {cio.psnr(pic.rgb, orig.rgb):.2f} dB")
    click.echo(f"exact     {bool((pic.rgb == res.picture.rgb).all())} (decoded == encoder's reconstruction)")
    click.echo(f"time      encode {t1 - t0:.2f} s, decode {t2 - t1:.2f} s")


def _sigma(value):
    """--sigma / --denoise value: None, "auto" or a number on the 0..255 scale."""
    if value is None or value == "auto":
        return value
    try:
        v = float(value)
    except ValueError:
        raise click.BadParameter(f"expected a noise level (0-100) or 'auto', got {value!r}") from None
    if not 0 <= v <= 100:
        raise click.BadParameter(f"noise level must be between 0 and 100, got {v:g}")
    return v


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "out", help="Output image, or folder when there are several inputs.")
@click.option("--sigma", default="auto", show_default=True,
              help="Noise standard deviation on the 0-255 scale, or 'auto' to estimate it.")
@click.option("--weights", help="Restoration weights (.safetensors) instead of the shipped ones.")
@click.option("--ensemble", type=click.Choice(["1", "2", "4", "8"]), default="1", show_default=True,
              help="Average this many turned and flipped copies (n times slower).")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@guarded
def denoise(inputs, out, sigma, weights, ensemble, force):
    """Remove noise with the denoising autoencoder."""
    sigma = _sigma(sigma)
    files, many = _expand(inputs, IMAGE_SUFFIXES)
    outs = _outputs(files, many, out, ".denoised.png")

    def work(src, dst):
        from codec.heads.restore import denoise as run, estimate_sigma
        from codec import io as cio
        s = estimate_sigma(cio.load(src).rgb) if sigma == "auto" else sigma
        _write_image(run(src, sigma=s, weights=weights, ensemble=int(ensemble)).to_pil(), dst, force)
        return [f"{src} -> {dst}: sigma {s:.1f}" + (" (estimated)" if sigma == "auto" else "")], []

    _run_all(list(zip(files, outs)), work, many)


@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--mask", required=True, type=click.Path(dir_okay=False),
              help="Image of the same size, non-zero (white) where pixels are missing.")
@click.option("-o", "--output", "out", help="Output image (default IMAGE.inpainted.png).")
@click.option("--weights", help="Restoration weights (.safetensors) instead of the shipped ones.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@guarded
def inpaint(image, mask, out, weights, force):
    """Fill the masked region of an image (masked-autoencoder training)."""
    from codec.heads.restore import inpaint as run
    src = Path(image)
    _require_files(src, mask)
    dst = Path(out) if out else src.with_suffix(".inpainted.png")
    pic = run(src, mask, weights=weights)
    _write_image(pic.to_pil(), dst, force)
    click.echo(f"{src} -> {dst}: {pic.width}x{pic.height}")


def _check_vae_size(size: int) -> None:
    if size < 16 or size % 16 or size > 1024:
        raise click.BadParameter("must be a multiple of 16 between 16 and 1024", param_hint="--size")


def _require_files(*paths) -> None:
    for p in paths:
        if not Path(p).exists():
            raise Failure(f"{p}: no such file")


@main.command()
@click.option("-n", "count", type=int, default=16, show_default=True, help="Number of samples.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=int, default=64, show_default=True, help="Sample side in pixels (multiple of 16).")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Scale of the prior draws.")
@click.option("-o", "--output", "out", default="samples.png", show_default=True, help="Grid image to write.")
@click.option("--weights", help="VAE weights (.safetensors) instead of the shipped ones.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output.")
@guarded
def sample(count, seed, size, temperature, out, weights, force):
    """Draw new images from the VAE: decode latents sampled from its prior."""
    from codec.heads.vae import sample_grid
    if not 1 <= count <= 1024:
        raise click.BadParameter("must be between 1 and 1024", param_hint="-n")
    _check_vae_size(size)
    dst = _write_image(sample_grid(count, seed, size, temperature, weights), Path(out), force)
    click.echo(f"{count} samples ({size}x{size}, seed {seed}) -> {dst}")


@main.command()
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option("--steps", type=int, default=8, show_default=True, help="Decoded points on the line.")
@click.option("--size", type=int, default=128, show_default=True, help="Side of the centre squares.")
@click.option("-o", "--output", "out", default="interpolation.png", show_default=True)
@click.option("--weights", help="VAE weights (.safetensors) instead of the shipped ones.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output.")
@guarded
def interpolate(a, b, steps, size, out, weights, force):
    """Walk the VAE's latent line from image A to image B (a strip)."""
    from codec.heads.vae import interpolate as run
    _require_files(a, b)
    if not 2 <= steps <= 64:
        raise click.BadParameter("must be between 2 and 64", param_hint="--steps")
    _check_vae_size(size)
    dst = _write_image(run(a, b, steps, size, weights), Path(out), force)
    click.echo(f"{a} -> {b}: {steps} steps -> {dst}")


@main.group()
def anomaly():
    """Anomaly scoring with the codec: fit on normal images, then score."""


@anomaly.command("fit")
@click.argument("normal", nargs=-1, required=True)
@click.option("-o", "--output", "out", required=True, help="Detector file to write (.json).")
@click.option("--kind", type=click.Choice(["rd", "rate", "error", "defect"]), default="rd", show_default=True,
              help="rate: bits the codec needs; error: reconstruction error; rd: rate + lambda*error; "
                   "defect: the learned defect segmenter on the codec's view (codec/heads/defect.py).")
@click.option("--aggregate", type=click.Choice(["max", "relative", "line"]), default=None,
              help="Image score: the largest local mean, that relative to the image's median, or the largest "
                   "mean along a line [default: max; the defect head's own for --kind defect].")
@click.option("--window", type=int, default=None,
              help="Local window (line: length) in pixels [default: 32; the defect head's own for --kind defect].")
@click.option("-q", "--quality", type=float, default=4.0, show_default=True)
@click.option("--fpr", type=float, default=0.05, show_default=True, help="False-positive rate of the flag.")
@click.option("--model", help="Model id or .safetensors file (a hyperprior model).")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing detector.")
@guarded
def anomaly_fit(normal, out, kind, aggregate, window, quality, fpr, model, force):
    """Record the score distribution of NORMAL images (files or folders)."""
    from codec.fileio import write_atomic
    from codec.heads.anomaly import fit
    if Path(out).exists() and not force:
        raise Failure(f"{out} already exists; pass -f/--force to overwrite it")
    if window is not None and window < 4:
        raise click.BadParameter("must be at least 4", param_hint="--window")
    files, _ = _expand(normal, IMAGE_SUFFIXES)
    det = fit(files, None, kind, aggregate, window, model, quality, fpr)
    write_atomic(Path(out), json.dumps(det, indent=1).encode(), force=force)
    click.echo(f"{len(files)} normal images: median score {det['quantiles']['50']:.4f}, "
               f"threshold {det['threshold']:.4f} at {fpr:g} false-positive rate -> {out}")


@anomaly.command("score")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--detector", required=True, type=click.Path(dir_okay=False), help="From 'aecodec anomaly fit'.")
@click.option("--map", "map_dir", help="Write a heat-map overlay per image into this folder.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing heat maps.")
@guarded
def anomaly_score(inputs, detector, map_dir, as_json, force):
    """Score images: score, percentile among the normal images, flag."""
    from codec import io as cio
    from codec.heads.anomaly import heat_overlay, judge, load_detector
    det = load_detector(detector)
    files, _ = _expand(inputs, IMAGE_SUFFIXES)
    if map_dir:
        Path(map_dir).mkdir(parents=True, exist_ok=True)

    def work(src, _):
        pic = cio.load(src)
        r = judge(pic, det)
        if map_dir:
            _write_image(heat_overlay(pic.rgb, r["heat"]), Path(map_dir) / (src.stem + ".anomaly.png"), force)
        if as_json:
            line = json.dumps({"input": str(src), "score": round(r["score"], 6),
                               "percentile": round(r["percentile"], 2), "anomalous": r["anomalous"]})
        else:
            line = (f"{src}: score {r['score']:.4f}, percentile {r['percentile']:.1f}, "
                    f"{'ANOMALOUS' if r['anomalous'] else 'normal'}")
        return [line], []

    _run_all([(f, None) for f in files], work, len(files) > 1)


@main.command()
@click.argument("model")
@click.argument("data", nargs=-1, required=True)
@click.option("-o", "--output", "out", required=True, help="Weights file to write (.safetensors).")
@click.option("--context/--no-context", default=True, show_default=True,
              help="Add (and fit) the checkerboard context model.")
@click.option("--rd", type=click.FloatRange(min=0), default=None,
              help="VQ: the encoder's rate weight when it picks indices (entropy-constrained VQ); "
                   "the prior is refitted for its choices. Default: the model's (0: nearest entries).")
@click.option("--rd-relative", type=click.FloatRange(min=0), default=None,
              help="VQ: instead of --rd, a weight per stage: this times the error the stage removes "
                   "per bit (refit.stage_slopes).")
@click.option("--rounds", type=click.IntRange(1, 20), default=None,
              help="VQ: refits, each counting the indices chosen under the last one's prior "
                   "[default: 1, or 3 with a rate weight].")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True,
              help="VQ: every n-th training image in all rounds but the last, and in the codebook design (faster).")
@click.option("--codebooks", type=click.IntRange(0, 100), default=0, show_default=True,
              help="VQ: first redesign the codebooks by this many entropy-constrained Lloyd iterations "
                   "per stage (refit.design_codebooks; 0: keep them).")
@click.option("--sizes", default="",
              help="VQ: entries in use per stage, comma-separated (e.g. 256,1024,1024,1024,1024,1024): "
                   "each codebook is sorted by probability and cut (or grown) to its size, before "
                   "--codebooks redesigns it.")
@click.option("--classes", type=click.IntRange(0, 64), default=None,
              help="VQ: energy classes of the stage-conditional prior (models.VQCodec; 0: none) "
                   "[default: the model's].")
@click.option("-f", "--force", is_flag=True)
@guarded
def refit(model, data, out, context, rd, rd_relative, rounds, every, codebooks, sizes, classes, force):
    """Refit a discrete codec's prior by counting symbols on training images."""
    from dataclasses import replace

    from codec import weights
    from codec.pipeline import load_model
    from codec.training import refit as rf

    if Path(out).exists() and not force:
        raise Failure(f"{out} already exists; pass -f/--force to overwrite it")
    lm = load_model(model)
    net = lm.net
    if lm.config.arch != "vq" and (rd is not None or rd_relative is not None or rounds is not None or codebooks
                                   or sizes or classes is not None):
        raise Failure("--rd, --rd-relative, --rounds, --codebooks, --sizes and --classes apply to VQ models only")
    if classes == 1:
        raise Failure("--classes: give 0 (none) or at least 2")
    if classes and not context:
        raise Failure("--classes needs the context model (drop --no-context)")
    if rd is not None and rd_relative is not None:
        raise Failure("give --rd or --rd-relative, not both")
    if lm.config.arch == "vq":
        if classes is not None and classes != lm.config.vq_classes:
            net = rf.with_context(net, classes)
        elif context and not lm.config.context:
            net = rf.with_context(net)
        latents = rf.training_latents(net, list(data))
        if rd_relative is not None:
            rd = tuple(float(f"{rd_relative * v:.6g}") for v in rf.stage_slopes(net, latents))
        if rd is not None:
            net.cfg = replace(net.cfg, vq_rd=rd)
        if sizes:
            try:
                parsed = [int(v) for v in sizes.split(",")]
            except ValueError:
                raise Failure(f"--sizes: give whole numbers separated by commas, got {sizes!r}") from None
            try:
                net.resize(parsed)
            except ValueError as exc:
                raise Failure(f"--sizes: {exc}") from None
        design = rf.design_codebooks(net, latents, codebooks, every=every) if codebooks else None
        res = rf.refit_vq(net, latents, rounds or (3 if any(net.cfg.vq_rd_stages()) else 1), every)
        if rd_relative is not None:
            res["rd_relative"] = rd_relative
        if design:
            res["codebooks"] = design
        if sizes:
            res["sizes"] = list(net.cfg.vq_stage_sizes())
    elif lm.config.arch == "binary":
        net = rf.with_context(net) if context and not lm.config.context else net
        if not net.cfg.context:
            raise Failure("a binary model refits only with its context model (--context)")
        res = rf.fit_binary_context(net, list(data))
    else:
        raise Failure(f"{lm.model_id} is not a discrete (vq or binary) model")
    meta = dict(lm.meta, prior_refit=res)
    weights.save(net, out, lm.model_id, meta)
    click.echo(json.dumps(res))


@main.command("eval", context_settings={"ignore_unknown_options": True})
@click.argument("data", type=click.Path(exists=True, file_okay=False))
@click.option("--out", default="eval-results", show_default=True, help="Folder for results.json, rd.png, results.md.")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
@guarded
def eval_(data, out, extra):
    """Rate-distortion evaluation on a folder of images (python -m kodak_eval
    with --data DATA; other options pass through: --models, --no-classical, --limit N ...)."""
    from kodak_eval.__main__ import main as run
    sys.exit(run(["--data", data, "--out", out, *extra]))


if __name__ == "__main__":
    main()
