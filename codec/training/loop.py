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
import json
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..models import ModelConfig, build
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
    max_minutes: float = float("inf")
    ckpt_every_s: float = 300.0
    val_every: int = 1000
    threads: int = 1
    seed: int = 0
    device: str = "cpu"
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
    return tc.lr * (tc.decay_factor if step >= tc.decay_at else 1.0)


@torch.no_grad()
def validate(model, crops, qualities=(1, 4, 8)) -> dict:
    """Rounded-latent forward pass on fixed crops: mean bpp and PSNR per quality."""
    model.eval()
    res = {}
    for q in qualities:
        bpp = psnr = 0.0
        for x in crops:
            out = model(x, torch.tensor([float(q)]))
            bpp += float(bits_per_pixel(out["likelihoods"], x.shape[-1] * x.shape[-2]))
            mse = float((out["x_hat"].clamp(0, 1) - x).pow(2).mean())
            psnr += -10 * torch.log10(torch.tensor(mse)).item()
        res[f"q{q}_bpp"], res[f"q{q}_psnr"] = bpp / len(crops), psnr / len(crops)
    model.train()
    return res


def _optimizers(model, tc):
    aux = {n for n, _ in model.named_parameters() if n.endswith(".quantiles")}
    main = [p for n, p in model.named_parameters() if n not in aux]
    aux_p = [p for n, p in model.named_parameters() if n in aux]
    return torch.optim.Adam(main, lr=tc.lr), torch.optim.Adam(aux_p, lr=tc.aux_lr)


def train(tc: TrainConfig, resume: bool = False, log=print) -> Path:
    """Train until ``steps`` or ``max_minutes``; returns the last checkpoint."""
    torch.set_num_threads(tc.threads)
    out = Path(tc.out)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(tc.seed)
    torch.manual_seed(tc.seed)
    model = build(tc.model).to(tc.device)
    opt, aux_opt = _optimizers(model, tc)
    step = 0
    last = checkpoint.latest(out) if resume else None
    if last is not None:
        st = checkpoint.load(last)
        if st["model_config"] != tc.model.to_json():
            raise ValueError(f"checkpoint {last} was made for another model: {st['model_config']}")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        aux_opt.load_state_dict(st["aux_opt"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["torch_rng"])
        step = int(st["step"])
        log(f"resumed from {last} at step {step}")
    (out / "config.json").write_text(json.dumps(tc.to_dict(), indent=2))

    paths = list_images(tc.data)
    train_paths, val_paths = split(paths)
    sampler = CropSampler([load_uint8(p) for p in train_paths], tc.crop)
    val = [c.to(tc.device) for c in validation_crops([load_uint8(p) for p in val_paths])]
    levels = tc.model.levels

    def state():
        return {"model": model.state_dict(), "opt": opt.state_dict(),
                "aux_opt": aux_opt.state_dict(), "gen": gen.get_state(),
                "torch_rng": torch.get_rng_state(), "step": step,
                "model_config": tc.model.to_json(), "train_config": json.dumps(tc.to_dict())}

    log_path = out / "log.csv"
    new_log = not log_path.exists()
    t0 = last_ckpt = time.monotonic()
    saved = last
    bar = None
    if tc.progress:
        from tqdm import tqdm
        bar = tqdm(total=tc.steps, initial=step, dynamic_ncols=True, unit="step")
    model.train()
    with open(log_path, "a", newline="") as fh, _Stop() as stop:
        writer = csv.writer(fh)
        if new_log:
            writer.writerow(["step", "time", "lr", "loss", "bpp", "psnr", "aux", "val"])
        while step < tc.steps:
            for group in opt.param_groups:
                group["lr"] = lr_at(tc, step)
            x = sampler.sample(tc.batch, gen).to(tc.device)
            q = torch.randint(1, levels + 1, (tc.batch,), generator=gen).float().to(tc.device)
            out_ = model(x, q)
            losses = rd_loss(out_, x, model.lmbda(q))
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if tc.clip:
                torch.nn.utils.clip_grad_norm_(opt.param_groups[0]["params"], tc.clip)
            opt.step()
            aux = model.aux_loss()
            aux_opt.zero_grad(set_to_none=True)
            aux.backward()
            aux_opt.step()
            step += 1
            val_res = validate(model, val) if step % tc.val_every == 0 else None
            if step % 20 == 0 or val_res:
                writer.writerow([step, round(time.monotonic() - t0, 1), lr_at(tc, step),
                                 round(float(losses["loss"]), 4), round(float(losses["bpp"]), 4),
                                 round(float(losses["psnr"]), 3), round(float(aux), 2),
                                 json.dumps(val_res) if val_res else ""])
                fh.flush()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(losses['loss']):.3f}", bpp=f"{float(losses['bpp']):.3f}",
                                psnr=f"{float(losses['psnr']):.2f}")
            if val_res:
                log(f"step {step} val {json.dumps({k: round(v, 3) for k, v in val_res.items()})}")
            timeout = (time.monotonic() - t0) / 60 >= tc.max_minutes
            if stop.flag or timeout or time.monotonic() - last_ckpt >= tc.ckpt_every_s:
                saved = checkpoint.save(out, state())
                last_ckpt = time.monotonic()
                if stop.flag or timeout:
                    break
        else:
            saved = checkpoint.save(out, state())
    if bar is not None:
        bar.close()
    return saved
