"""The training loop: loss = bpp + lambda*255^2*MSE over random qualities.

Every sample of a batch draws its own quality level, so one run trains all
gain vectors of a variable-rate model at once. Adam with gradient clipping,
a step learning-rate schedule, CompressAI's auxiliary loss for the
entropy bottleneck's quantiles on its own optimizer. Checkpoints every
``ckpt_every_s`` seconds and on SIGINT/SIGTERM; ``resume`` continues from the
newest one exactly (model, optimizers, step, data generator, torch RNG).
"""

from __future__ import annotations

import csv
import inspect
import json
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..models import ModelConfig, build
from ..weights import load_state
from . import checkpoint
from .data import CropSampler, list_images, load_uint8, split, validation_crops
from .losses import bits_per_pixel, rd_loss


@dataclass
class TrainConfig:
    data: list = field(default_factory=lambda: ["../shared/data/train"])
    out: str = str(Path.home() / ".cache/aecodec/runs/default")
    model: ModelConfig = field(default_factory=ModelConfig)
    crop: int = 128
    batch: int = 8
    lr: float = 2e-4
    aux_lr: float = 1e-3
    clip: float = 1.0
    steps: int = 1_000_000
    decay_at: int = 10**9            # lr *= decay_factor from this step on
    decay_factor: float = 0.1
    warmup: int = 0                  # lr ramps up linearly over the first steps (from step 0)
    max_minutes: float = float("inf")
    ckpt_every_s: float = 300.0
    val_every: int = 1000
    threads: int = 1
    seed: int = 0
    device: str = "cpu"
    compile: bool = False
    pack: str = ""                   # a crop pack (pack.py) instead of image folders
    init: str = ""                   # start from these weights (.safetensors) when not resuming
    freeze: tuple = ()               # parameter-name prefixes kept fixed (e.g. g_a, vq: fine-tune g_s alone)
    vq_soft_rate: float = 0.0        # VQ: tau of the soft assignment that gives the rate a gradient (models.VQCodec)
    post: bool = False               # train the post-filter with the codec (the --init file's, or a new one)
    bf16: bool = False               # CPU: bf16 autocast and channels-last, as on CUDA (always there)
    progress: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = json.loads(self.model.to_json())
        return d


class _Stop:
    """Turns SIGINT/SIGTERM into a flag so the loop can checkpoint and exit."""

    def __init__(self) -> None:
        self.flag = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._set)
            except ValueError:  # not the main thread
                pass
        return self

    def _set(self, *_):
        self.flag = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def lr_at(tc: TrainConfig, step: int) -> float:
    """Step schedule, with a linear warm-up over the first ``warmup`` steps
    (fine-tuning trained weights with fresh Adam moments at full rate
    wrecks them: 47 steps at 2e-4 from the shipped weights took the
    validation PSNR at quality 8 from 33.0 to 27.9 dB)."""
    ramp = min(1.0, (step + 1) / tc.warmup) if tc.warmup else 1.0
    return tc.lr * ramp * (tc.decay_factor if step >= tc.decay_at else 1.0)


@torch.no_grad()
def validate(model, crops, qualities=(1, 4, 8), post: bool = False) -> dict:
    """Rounded-latent forward pass on fixed crops: mean bpp and PSNR per
    quality (``post``: of the post-filtered picture)."""
    model.eval()
    res = {}
    for q in qualities:
        bpp = psnr = 0.0
        for x in crops:
            out = model(x, torch.tensor([float(q)]), **_post_kw(post))
            bpp += float(bits_per_pixel(out["likelihoods"], x.shape[-1] * x.shape[-2]))
            mse = float((out["x_hat"].clamp(0, 1) - x).pow(2).mean())
            psnr += -10 * torch.log10(torch.tensor(mse)).item()
        res[f"q{q}_bpp"], res[f"q{q}_psnr"] = bpp / len(crops), psnr / len(crops)
    model.train()
    return res


def _optimizers(model, tc):
    frozen = [n for n, p in model.named_parameters() if n.startswith(tuple(tc.freeze))]
    unknown = [f for f in tc.freeze if not any(n.startswith(f) for n in frozen)]
    if unknown:
        raise ValueError(f"--freeze: no parameters named {', '.join(unknown)}*")
    for n in frozen:
        model.get_parameter(n).requires_grad_(False)
    aux = {n for n, p in model.named_parameters() if n.endswith(".quantiles") and p.requires_grad}
    main = [p for n, p in model.named_parameters() if n not in aux and p.requires_grad]
    aux_p = [p for n, p in model.named_parameters() if n in aux]
    fused = {"fused": True} if str(tc.device).startswith("cuda") else {}
    aux_opt = torch.optim.Adam(aux_p, lr=tc.aux_lr, **fused) if aux_p else None
    return torch.optim.Adam(main, lr=tc.lr, **fused), aux_opt


def _post_kw(post: bool) -> dict:
    """The forward's keyword that runs the post-filter (only scalar models have one to train)."""
    return {"post": True} if post else {}


def train_step(model, fwd, opt, aux_opt, x, q, clip: float, post: bool = False, bf16: bool = False):
    """One optimisation step; ``fwd`` is the model, maybe DDP-wrapped or
    compiled. On CUDA, and on the CPU with ``bf16``, the transforms run in
    bf16 (the likelihoods in fp32) and the input is made channels-last.
    ``post``: the distortion is the post-filtered picture's.
    -> (losses dict, aux loss)."""
    amp = bf16 or x.device.type == "cuda"
    if amp:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        out = fwd(x, q, **_post_kw(post))
    losses = rd_loss(out, x, model.lmbda(q))
    aux = model.aux_loss()  # trains only the quantiles; no RD gradient reaches them
    opt.zero_grad(set_to_none=True)
    if aux_opt is not None:
        aux_opt.zero_grad(set_to_none=True)
    # "aux" of a model's output: its quantizer's own loss (VQ codebook/commitment)
    (losses["loss"] + aux + out.get("aux", 0.0)).backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(opt.param_groups[0]["params"], clip)
    opt.step()
    if aux_opt is not None:
        aux_opt.step()
    return losses, aux


def _distributed(tc):
    """(rank, world size, device, whether this call started the process
    group) -- set up by torchrun's environment, if any."""
    import os
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, torch.device(tc.device), False
    import torch.distributed as dist
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = str(tc.device).startswith("cuda")
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return rank, world, device, owns


def _gather(obj, world):
    if world == 1:
        return [obj]
    import torch.distributed as dist
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def train(tc: TrainConfig, resume: bool = False, log=print) -> Path:
    """Train until ``steps`` or ``max_minutes``; returns the last checkpoint.

    Under ``torchrun`` each process trains on its own crops and DDP averages
    the gradients (gloo on CPU, NCCL on CUDA); rank 0 writes checkpoints and
    logs. On CUDA: bf16 autocast (likelihoods in fp32), channels-last, fused
    Adam, and ``torch.compile`` when ``tc.compile`` is set; on the CPU the
    first two with ``tc.bf16``.
    """
    stride = build(tc.model).stride
    if tc.crop % stride:
        raise ValueError(f"crop {tc.crop} must be a multiple of {stride} for this model")
    torch.set_num_threads(tc.threads)
    rank, world, device, owns_group = _distributed(tc)
    out = Path(tc.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(tc.seed * 1000 + rank)
    torch.manual_seed(tc.seed)
    model = build(tc.model)
    if tc.vq_soft_rate:
        if not hasattr(model, "soft_rate"):
            raise ValueError("--vq-soft-rate is for the vq architecture")
        model.soft_rate = tc.vq_soft_rate
    if tc.post and "post" not in inspect.signature(model.forward).parameters:
        raise ValueError(f"--post: the post-filter trains with scalar models, not {tc.model.arch}")
    step = 0
    last = checkpoint.latest(out) if resume else None
    st = checkpoint.load(last) if last is not None else None
    if st is not None:  # the model first: a post-filter's depth comes with its tensors, before the optimizer
        if ModelConfig.from_json(st["model_config"]) != tc.model:
            raise ValueError(f"checkpoint {last} was made for another model: {st['model_config']}")
        load_state(model, st["model"])
    elif tc.init and not resume:
        from ..weights import load as load_weights, trainable_state
        load_state(model, trainable_state(load_weights(tc.init).net.state_dict(), post=tc.post))
    if tc.post:  # the file's (or the checkpoint's) filter, or a new one that starts as the identity
        model.post.enable()
    model = model.to(device)
    if device.type == "cuda" or tc.bf16:
        model = model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: pick the fastest kernels once
    opt, aux_opt = _optimizers(model, tc)
    if st is not None:
        opt.load_state_dict(st["opt"])
        if aux_opt is not None:
            aux_opt.load_state_dict(st["aux_opt"])
        gens = st["gens"] if "gens" in st else [st["gen"]]
        gen.set_state(gens[rank] if rank < len(gens) else gens[0])
        torch.set_rng_state(st["torch_rng"])
        step = int(st["step"])
        if rank == 0:
            log(f"resumed from {last} at step {step}")
    if rank == 0:
        (out / "config.json").write_text(json.dumps(tc.to_dict(), indent=2))
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    fwd = torch.compile(net) if tc.compile else net

    train_paths, val_paths = split(list_images(tc.data)) if tc.data else ([], [])
    if tc.pack:
        from .pack import PackSampler
        sampler = PackSampler(tc.pack, tc.crop, device)
    else:
        sampler = CropSampler([load_uint8(p) for p in train_paths], tc.crop)
    if rank != 0:
        val = []
    elif val_paths:
        val = [c.to(device) for c in validation_crops([load_uint8(p) for p in val_paths])]
    else:
        val = getattr(sampler, "val", [])
    levels = tc.model.levels

    def state():
        gens = _gather(gen.get_state(), world)
        return {"model": model.state_dict(), "opt": opt.state_dict(),
                "aux_opt": aux_opt.state_dict() if aux_opt else {}, "gen": gens[0], "gens": gens,
                "torch_rng": torch.get_rng_state(), "step": step,
                "model_config": tc.model.to_json(), "train_config": json.dumps(tc.to_dict())}

    def save():
        st = state()  # every rank joins the gather
        return checkpoint.save(out, st) if rank == 0 else None

    log_path = out / "log.csv"
    new_log = not log_path.exists()
    t0 = last_ckpt = time.monotonic()
    saved = last
    bar = None
    if tc.progress and rank == 0:
        from tqdm import tqdm
        bar = tqdm(total=tc.steps, initial=step, dynamic_ncols=True, unit="step")
    model.train()
    fh = open(log_path, "a", newline="") if rank == 0 else None
    writer = csv.writer(fh) if fh else None
    if writer and new_log:
        writer.writerow(["step", "time", "lr", "loss", "bpp", "psnr", "aux", "val"])
    with _Stop() as stop:
        while step < tc.steps:
            for group in opt.param_groups:
                group["lr"] = lr_at(tc, step)
            x = sampler.sample(tc.batch, gen).to(device, non_blocking=True)
            q = torch.randint(1, levels + 1, (tc.batch,), generator=gen).float().to(device)
            losses, aux = train_step(model, fwd, opt, aux_opt, x, q, tc.clip, tc.post, tc.bf16)
            step += 1
            val_res = validate(model, val, post=tc.post) if val and step % tc.val_every == 0 else None
            if writer and (step % 20 == 0 or val_res):
                writer.writerow([step, round(time.monotonic() - t0, 1), lr_at(tc, step),
                                 round(losses["loss"].item(), 4), round(losses["bpp"].item(), 4),
                                 round(losses["psnr"].item(), 3), round(aux.item(), 2),
                                 json.dumps(val_res) if val_res else ""])
                fh.flush()
            if bar is not None:
                bar.update(1)
                if step % 10 == 0:
                    bar.set_postfix(loss=f"{losses['loss'].item():.3f}", bpp=f"{losses['bpp'].item():.3f}",
                                    psnr=f"{losses['psnr'].item():.2f}")
            if val_res:
                log(f"step {step} val {json.dumps({k: round(v, 3) for k, v in val_res.items()})}")
            flags = torch.tensor([stop.flag, (time.monotonic() - t0) / 60 >= tc.max_minutes,
                                  time.monotonic() - last_ckpt >= tc.ckpt_every_s], dtype=torch.int32)
            if world > 1:  # every rank must agree on when to stop and save
                import torch.distributed as dist
                flags = flags.to(device)
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                flags = flags.cpu()
            stopping = bool(flags[0] or flags[1])
            if stopping or flags[2]:
                saved = save() or saved
                last_ckpt = time.monotonic()
                if stopping:
                    break
        else:
            saved = save() or saved
    if fh:
        fh.close()
    if bar is not None:
        bar.close()
    if owns_group:
        # every rank leaves together: a rank that exits while its peer is
        # still in the process group can make gloo abort (seen once in CI)
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    return saved
