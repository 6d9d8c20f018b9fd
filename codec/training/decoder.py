"""Fine-tuning a trained scalar codec's synthesis at fixed latents.

The post-filter (post.py) was trained after g_s, with g_s fixed, and took
about a decibel back from a synthesis that training left short. This trains
the two together, end to end, on what a decoder actually receives: the
encoder, the entropy models and the context model do not change, so a crop's
latent (g_s's input, exactly as the decoder rebuilds it) is coded once into a
bank (training/post.py's, with ``coded_input`` in place of g_s's output), and
every file keeps its bits; only the picture changes. Each step draws crops
from the bank and minimises the mean over crops of log MSE of the filtered
picture: every crop's decibels count alike, at every quality. (No
transposes, unlike the post-filter's training: a transposed latent is not
what g_a gives for the transposed crop, and learning to decode it as one
costs decibels -- 5 dB at quality 8 in 100 steps when tried.) Adam, step decay, checkpoints and ``--resume`` through parts.fit;
validation on the held-out split (never Kodak): the PSNR gained over the
decoder the run started from, per quality. ``install`` writes the weights
file with only ``g_s.*`` and ``post.*`` replaced. A run is keyed to the
tensors its bank depends on (all but the decoder's, :func:`bank_key`), so it
can resume from, and install again into, a file its own checkpoint went
into; that install's card entry then holds the steps since
(``continued_from``: the run's step at the earlier install).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import parts
from .post import BankConfig, banks

#: the tensors a decoder update replaces (prefixes of the state dict)
DECODER_PREFIXES = ("g_s.", "post.")


@dataclass
class DecoderConfig(BankConfig):
    out: str = "runs/decoder"
    crops: int = 6000
    val_crops: int = 24          # per validation quality
    steps: int = 5000
    batch: int = 8
    lr: float = 5e-6             # 2e-5 lost 0.18 dB at quality 8 in 100 steps (batch 8: the noise of small batches)
    decay_at: tuple = (4000,)
    clip: float = 1.0
    validate_every: int = 500


def coded_input(net, rgb, q: float) -> torch.Tensor:
    """g_s's input for a crop (fp32), exactly as the decoder rebuilds it."""
    from ..tiling import coded_latent
    with torch.inference_mode():
        y_in = coded_latent(net, rgb, q, 0, y_tables=True, y_context=getattr(net, "has_context", False))[2][0]
    return y_in.float().clone()   # a normal tensor (training saves it for backward)


class Decoder(nn.Module):
    """The synthesis of a HyperpriorCodec with its post-filter, shared with it."""

    def __init__(self, net) -> None:
        super().__init__()
        self.g_s, self.post = net.g_s, net.post

    def forward(self, y_in: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        return self.post(self.g_s(y_in), quality)


def _mse(dec, x, y_in, q):
    return ((dec(y_in, q) - x) ** 2).mean((1, 2, 3))


@torch.no_grad()
def evaluate(dec: Decoder, val, start: dict | None = None) -> dict:
    """Mean PSNR (dB) of the validation bank per quality; with ``start``
    (an earlier result), the gain over it."""
    x, y_in, q = val
    res = {}
    for level in sorted(set(q.tolist())):
        sel = torch.nonzero(q == level)[:, 0]
        psnr = [-10 * torch.log10(_mse(dec, x[i:i + 1].float() / 255, y_in[i:i + 1], q[i:i + 1]).clamp_min(1e-10))
                for i in sel.tolist()]
        res[f"q{level:g}"] = torch.cat(psnr).mean().item()
    if start:
        res = {k: v - start[k] for k, v in res.items()}
    return res


def _describe(ev: dict) -> str:
    return "validation PSNR gain " + " ".join(f"{k} {v:+.3f} dB" for k, v in ev.items())


def prepare(net):
    """``net``'s decoder made trainable (everything else fixed)."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if not net.has_post:
        raise ValueError("train-decoder tunes g_s with its post-filter; the weights file has none "
                         "(aecodec train-post first)")
    dec = Decoder(net)
    for p in dec.parameters():
        p.requires_grad_(True)
    return dec


def train(net, dc: DecoderConfig, resume: bool = False, minutes: float | None = None, log=print) -> Decoder:
    """Fine-tune ``net``'s g_s and post-filter in place; resumes from ``dc.out``/ckpt.pt."""
    dec = prepare(net)
    (x_bank, y_bank, q_bank), val = banks(net, dc, log, code=coded_input)
    start = evaluate(dec, val)
    log("start: validation PSNR " + " ".join(f"{k} {v:.3f} dB" for k, v in start.items()))
    opt = torch.optim.Adam(dec.parameters(), lr=dc.lr)
    gen = torch.Generator().manual_seed(dc.seed + 2)

    def step():
        idx = torch.randint(len(x_bank), (dc.batch,), generator=gen)
        x, y_in, q = x_bank[idx].float() / 255, y_bank[idx], q_bank[idx]
        loss = torch.log(_mse(dec, x, y_in, q).clamp_min(1e-10)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(dec.parameters(), dc.clip)
        opt.step()

    try:
        parts.fit(dc, dec, "decoder", opt, gen, step, lambda: evaluate(dec, val, start), _describe,
                  resume, minutes, log=log)
    finally:
        net._cache.clear()   # the fast copies of g_s and the filter are stale
    return dec


def load_checkpoint(net, dc: DecoderConfig) -> Decoder:
    """``net`` with ``dc.out``'s checkpointed decoder loaded."""
    dec = prepare(net)
    dec.load_state_dict(parts.checkpoint(dc)["decoder"])
    net._cache.clear()
    return dec


def install(weights_path, dec: Decoder, dc: DecoderConfig, out_path) -> dict:
    """Write ``out_path``: ``weights_path``'s tensors with g_s's and the post-filter's replaced."""
    from safetensors.torch import load_file

    from .. import weights
    tensors = load_file(str(weights_path))
    new = weights.stored(dec.state_dict())
    missing = set(new) - set(tensors)
    if missing:
        raise ValueError(f"{weights_path} has no tensor {sorted(missing)[0]}")
    start = weights.load(weights_path)
    _, val = banks(start.net, dc, print, code=coded_input)
    before = evaluate(Decoder(start.net), val)
    tensors.update(new)
    metadata = dict(weights.file_metadata(weights_path))
    meta = json.loads(metadata.get("meta", "{}"))
    rec = parts.record(dc)
    entry = {"steps": rec.steps, "train_minutes": rec.minutes, "hardware": rec.hardware}
    earlier = [e for e in meta.get("decoder", []) if rec.run_id and e.get("run") == rec.run_id]
    if earlier:  # this run's earlier checkpoint is in the file already: record what it added since
        last = earlier[-1]
        if rec.steps <= last["run_steps"]:
            raise ValueError(f"{weights_path} already holds the run in {dc.out} at step {last['run_steps']} "
                             f"(its checkpoint is at step {rec.steps})")
        entry.update(steps=rec.steps - last["run_steps"], continued_from=last["run_steps"],
                     train_minutes=(None if rec.minutes is None or last.get("run_minutes") is None
                                    else round(rec.minutes - last["run_minutes"], 1)))
    entry |= {"run": rec.run_id, "run_steps": rec.steps, "run_minutes": rec.minutes,
             "data": [str(d) for d in dc.data],
             "crops": dc.crops, "crop": dc.crop, "batch": dc.batch, "seed": dc.seed, "lr": dc.lr,
             "decay_at": list(dc.decay_at),
             "validation_psnr_gain_db": {k: round(v, 3) for k, v in evaluate(dec, val, before).items()}}
    meta["decoder"] = meta.get("decoder", []) + [entry]   # each fine-tuning, in order
    metadata["meta"] = json.dumps(meta, sort_keys=True)
    weights.write_safetensors(tensors, out_path, metadata)
    return {"file": str(out_path), "weights_hash": weights.file_hash(out_path).hex(),
            **entry["validation_psnr_gain_db"]}


def bank_key(weights_path) -> str:
    """The hash of what a run's bank depends on: every tensor but the
    decoder's (DECODER_PREFIXES), with the config. A file this run's decoder
    was installed into keeps it, so the run can resume from that file and
    install into it again."""
    from safetensors.torch import load_file

    from .. import weights
    tensors = {k: v for k, v in load_file(str(weights_path)).items() if not k.startswith(DECODER_PREFIXES)}
    return weights.content_hash(tensors, weights.file_metadata(weights_path).get("config", "")).hex()


def run(weights_path, data, out: str, steps: int = DecoderConfig.steps, decay_at: tuple | None = None,
        minutes: float | None = None, resume: bool = False, output=None, install_only: bool = False,
        log=print, **config) -> dict:
    """Train (or, ``install_only``, take ``out``'s checkpoint) and, with
    ``output``, install: what ``aecodec train-decoder`` runs.
    ``decay_at`` None: 80 % of ``steps``."""
    from .. import weights
    decay = tuple(decay_at) if decay_at else (int(0.8 * steps),)
    lm = weights.load(weights_path)
    if lm.net.latent_kind != "scalar":
        raise ValueError(f"train-decoder fine-tunes scalar models; {weights_path} has a "
                         f"{lm.net.latent_kind} latent")
    dc = DecoderConfig(data=tuple(data), out=str(out), steps=steps, decay_at=decay,
                       key=bank_key(weights_path), **config)
    if install_only:
        dc = parts.trained_config(dc)
    dec = (load_checkpoint(lm.net, dc) if install_only
           else train(lm.net, dc, resume=resume, minutes=minutes, log=log))
    report = {"steps": parts.record(dc).steps, "checkpoint": str(Path(out) / "ckpt.pt")}
    if output:
        report.update(install(weights_path, dec, dc, output))
    return report
