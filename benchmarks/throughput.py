"""Side-by-side training-step throughput: ours against the library a user would otherwise pick.

    python -m benchmarks.throughput --suite mae --size tiny                   # CPU, fp32
    python -m benchmarks.throughput --suite mae --size base --device cuda --compile --batch 256
    python -m benchmarks.throughput --suite mim --size tiny --batch 256       # MAE vs SimMIM vs data2vec 2.0 steps
    python -m benchmarks.throughput --suite objectives --size tiny            # the five text objectives' steps
    ... --write benchmarks/RESULTS.md                                         # record the figures

Both sides run the same config, batch, optimizer (AdamW, fused on CUDA) and precision in one
process; repetitions are interleaved (ours, peer, peer, ours, ...) so machine noise hits both,
and the ratio of medians is printed. A step is forward + backward + optimizer step.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from selfsup.distributed import autocast, pick_device, resolve_precision
from selfsup.metrics import count_training_flops, peak_flops
from selfsup.results import stamp


@dataclass
class Contender:
    name: str
    model: torch.nn.Module
    loss: Callable[[torch.nn.Module, object], torch.Tensor]   # (model, batch) -> scalar loss


@dataclass
class Suite:
    unit: str                         # what a sample is: "img", "seq", "caption"
    batch: object                     # one batch, already on the device
    batch_size: int
    tokens_per_sample: int            # for tokens/s (1 for images)
    contenders: list[Contender]
    train: bool = True                # False: time the callable under no_grad (decoding), no optimizer
    same_work: bool = True            # contenders compute the same thing (one FLOP count for all); False: methods
                                      # that differ (mim), each counted on its own


def mae_suite(size: str, batch_size: int, device: torch.device) -> Suite:
    from vision.interop import to_hf
    from vision.mae import MAE, MAEConfig, MAETask
    from vision.vit import ViTConfig
    preset = MAETask.presets["tiny" if size == "tiny" else "vit-b16"]["task"]   # the presets' architectures
    vit = ViTConfig(**preset["vit"])
    ours = MAE(vit, MAEConfig(**preset["mae"]))
    peer = to_hf(ours).train()           # same weights, transformers' ViTMAEForPreTraining with SDPA
    x = torch.randn(batch_size, 3, vit.img_size, vit.img_size, device=device)
    return Suite("img", x, batch_size, 1, [
        Contender("selfsup MAE", ours, lambda m, b: m(b)[0]),
        Contender("transformers ViTMAEForPreTraining", peer, lambda m, b: m(pixel_values=b).loss),
    ])


def bert_suite(size: str, batch_size: int, device: torch.device) -> Suite:
    from transformers import BertForPreTraining

    from language.model import BertModelConfig, BertPretrainer, hf_config
    if size == "tiny":   # the `bert --preset tiny` model
        cfg, vocab, T, P = BertModelConfig(), 8000, 128, 20
    else:                # BERT-base, phase 1
        cfg = BertModelConfig(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, max_position=512)
        vocab, T, P = 30522, 128, 20
    cfg.dropout = 0.1
    ours = BertPretrainer(hf_config(cfg, vocab))
    peer = BertForPreTraining(hf_config(cfg, vocab))
    peer.load_state_dict(ours.hf.state_dict())
    g = torch.Generator().manual_seed(0)
    positions = torch.stack([torch.randperm(T - 2, generator=g)[:P] + 1 for _ in range(batch_size)])
    masked_ids = torch.randint(5, vocab, (batch_size, P), generator=g)
    labels = torch.full((batch_size, T), -100).scatter_(1, positions, masked_ids)
    batch = {"input_ids": torch.randint(5, vocab, (batch_size, T), generator=g),
             "token_type_ids": (torch.arange(T) >= T // 2).long().expand(batch_size, T).contiguous(),
             "attention_mask": torch.ones(batch_size, T, dtype=torch.long), "masked_positions": positions,
             "masked_ids": masked_ids, "masked_weights": torch.ones(batch_size, P),
             "pair_label": torch.randint(0, 2, (batch_size,), generator=g), "labels": labels}
    batch = {k: v.to(device) for k, v in batch.items()}
    mine = {k: v for k, v in batch.items() if k != "labels"}
    return Suite("seq", batch, batch_size, T, [
        Contender("selfsup BERT (MLM head on masked positions)", ours, lambda m, b: m(**mine)[0]),
        Contender("transformers BertForPreTraining", peer, lambda m, b: m(
            input_ids=b["input_ids"], token_type_ids=b["token_type_ids"], attention_mask=b["attention_mask"],
            labels=b["labels"], next_sentence_label=b["pair_label"]).loss),
    ])


def caption_suite(size: str, batch_size: int, device: torch.device, num_beams: int = 1) -> Suite:
    """Decoding speed: our Captioner.generate vs VisionEncoderDecoderModel.generate (ViT + BERT decoder with
    cross-attention), same sizes, both with a KV cache, fixed length (no early stop) so both do equal work."""
    from transformers import BertLMHeadModel, VisionEncoderDecoderModel, ViTConfig, ViTModel

    from language.model import BertModelConfig, hf_config
    from multimodal.model import Captioner
    from vision import vit as V
    from vision.encoder import ViTEncoder
    vcfg = V.ViTConfig(**V.vit_size("tiny" if size == "tiny" else "b16"))
    tcfg = BertModelConfig() if size == "tiny" else BertModelConfig(768, 12, 12, 3072, 512)
    vocab, length = (1000, 20) if size == "tiny" else (30522, 30)
    dec_cfg = hf_config(tcfg, vocab)
    dec_cfg.is_decoder, dec_cfg.add_cross_attention = True, True
    dec_cfg.bos_token_id, dec_cfg.eos_token_id, dec_cfg.pad_token_id = 2, 3, 0
    ours = Captioner(ViTEncoder.random(vcfg), BertLMHeadModel(dec_cfg)).eval()
    vit = ViTModel(ViTConfig(image_size=vcfg.img_size, patch_size=vcfg.patch_size, hidden_size=vcfg.embed_dim,
                             num_hidden_layers=vcfg.depth, num_attention_heads=vcfg.num_heads,
                             intermediate_size=int(vcfg.embed_dim * vcfg.mlp_ratio), attn_implementation="sdpa"),
                   add_pooling_layer=False)
    peer = VisionEncoderDecoderModel(encoder=vit, decoder=BertLMHeadModel(dec_cfg)).eval()
    peer.config.decoder_start_token_id, peer.config.pad_token_id, peer.config.eos_token_id = 2, 0, 3
    images = torch.randint(0, 256, (batch_size, 3, vcfg.img_size, vcfg.img_size), dtype=torch.uint8, device=device)
    from vision.transforms import normalize
    pixels = normalize(images)
    common = dict(num_beams=num_beams, min_new_tokens=length)
    return Suite("caption", images, batch_size, length, [
        Contender("selfsup Captioner.generate", ours,
                  lambda m, b: m.generate(b, max_len=length, num_beams=num_beams, min_len=length)),
        Contender("transformers VisionEncoderDecoderModel.generate", peer,
                  lambda m, b: m.generate(pixel_values=pixels, max_new_tokens=length, do_sample=False, **common)),
    ], train=False)


def mim_suite(size: str, batch_size: int, device: torch.device) -> Suite:
    """The masked-image-modeling methods at their presets (tiny: the same ViT and batch; base: the vit-b16
    recipes), one training step each on the same images: what a minute buys with each method. data2vec's step
    includes its teacher's forward and EMA update and its M masked copies per image."""
    from selfsup.config import resolve, to_object
    from vision.data2vec import Data2VecTask
    from vision.mae import MAETask
    from vision.simmim import SimMIMTask
    preset = "tiny" if size == "tiny" else "vit-b16"
    contenders, img = [], 0
    for cls in (MAETask, SimMIMTask, Data2VecTask):
        task = cls(to_object(resolve(cls.Config, cls.presets, preset=preset)).task)   # builds no data
        contenders.append(Contender(f"selfsup {cls.name}", task.build_model(), lambda m, b: m(b)[0]))
        img = task.cfg.vit.img_size
    x = torch.randn(batch_size, 3, img, img, device=device)
    return Suite("img", x, batch_size, 1, contenders, same_work=False)


def objectives_suite(size: str, batch_size: int, device: torch.device, overrides: tuple[str, ...] = ()) -> Suite:
    """The text objectives at the `bert` presets (tiny: the 2x128 encoder and its 8k WordPiece; base: BERT-base),
    one training step each on a batch of its own examples from one corpus (the stdlib docstrings, or ``overrides``
    of the preset): BERT's and ALBERT's sentence pairs, RoBERTa's packed sequences, ELECTRA's generator and
    discriminator, data2vec's teacher pass and masked copies. What a minute buys with each (the `language`
    leaderboard suite sets equal training time from these ratios)."""
    from language.objectives import OBJECTIVES
    from language.task import BertTask
    from selfsup.config import resolve, to_object
    from selfsup.task import BatchPlan
    preset, contenders, tokens = "tiny" if size == "tiny" else "bert-base", [], 0
    for objective in OBJECTIVES:
        cfg = resolve(BertTask.Config, BertTask.presets, preset=preset,    # one pass of pairs: only a batch is used
                      overrides=["task.dupe_factor=1", *overrides, f"task.objective={objective}"])
        task = BertTask(to_object(cfg).task)       # reads the corpus (cached tokenizer) for its examples
        loader = task.train_batches(BatchPlan(batch_size, 1, 0, 1, seed=0, start_step=0))
        batch = {k: v.to(device) for k, v in next(iter(loader)).items()}
        tokens = task.cfg.max_len
        contenders.append(Contender(f"selfsup {objective}", task.build_model(),
                                    lambda m, _, t=task, b=batch: t.objective.forward(m, b)[0]))
    return Suite("seq", None, batch_size, tokens, contenders, same_work=False)


SUITES = {"mae": mae_suite, "bert": bert_suite, "caption": caption_suite, "mim": mim_suite,
          "objectives": objectives_suite}


def training_step(c: Contender, batch, device: torch.device, precision: str, compile: bool) -> Callable[[], None]:
    """One contender's step as timed: forward under autocast, backward, AdamW (fused on CUDA); compiled and warmed
    up (3 steps) before it is returned."""
    model = c.model.to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                            fused=device.type == "cuda" or None)

    def step():
        with autocast(device, precision):
            loss = c.loss(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if compile:
        model.compile()
    for _ in range(3):                      # warm-up (and compilation)
        step()
    return step


def measure(suite: Suite, device: torch.device, precision: str, compile: bool, steps: int, repeats: int) -> list[dict]:
    if not suite.train:
        return measure_inference(suite, device, precision, steps, repeats)
    runners = []
    for c in suite.contenders:
        model = c.model.to(device).train()
        flops = count_training_flops(lambda m=model, f=c.loss: f(m, suite.batch).backward())
        model.zero_grad(set_to_none=True)
        runners.append((c.name, training_step(c, suite.batch, device, precision, compile), flops))

    times = interleaved([(name, step) for name, step, _ in runners], device, steps, repeats)
    peak = peak_flops(device, precision)
    flops0 = runners[0][2]
    rows = []
    for name, _, flops in runners:
        t = statistics.median(times[name])
        sps = suite.batch_size / t
        # MFU uses our FLOP count for both sides: the same function, so the same useful work
        useful = (flops0 or flops) if suite.same_work else flops
        rows.append({"name": name, "step_s": t, "samples_per_s": sps, "tokens_per_s": sps * suite.tokens_per_sample,
                     "tflops": useful / t / 1e12 if useful else None,
                     "mfu": useful / t / peak if (useful and peak) else None,
                     "spread": statistics.pstdev(times[name]) / t})
    return rows


def interleaved(runners, device: torch.device, steps: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each runner; repetitions alternate the order so drift hits both sides."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()
    times: dict[str, list[float]] = {name: [] for name, _ in runners}
    for r in range(repeats):
        for name, fn in (runners if r % 2 == 0 else runners[::-1]):
            sync()
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            sync()
            times[name].append((time.perf_counter() - start) / steps)
    return times


@torch.no_grad()
def measure_inference(suite: Suite, device, precision, steps, repeats) -> list[dict]:
    runners = []
    for c in suite.contenders:
        model = c.model.to(device).eval()

        def call(model=model, fn=c.loss):
            with autocast(device, precision):
                fn(model, suite.batch)
        call()                                   # warm-up
        runners.append((c.name, call))
    times = interleaved(runners, device, steps, repeats)
    return [{"name": name, "step_s": statistics.median(t), "samples_per_s": suite.batch_size / statistics.median(t),
             "tokens_per_s": suite.batch_size * suite.tokens_per_sample / statistics.median(t), "tflops": None,
             "mfu": None, "spread": statistics.pstdev(t) / statistics.median(t)} for name, t in times.items()]


def render(rows: list[dict], suite_name: str, unit: str, args, device: torch.device, precision: str) -> list[str]:
    base = rows[0]["samples_per_s"]
    what = "decoding" if unit == "caption" else "training step"
    lines = [f"### {suite_name} {what} — {args.size}, batch {args.batch}, {precision}"
             f"{', compiled' if args.compile else ''}"
             f"{f', beams {args.beams}' if unit == 'caption' else ''}",
             "", stamp(device, python=True), "",
             f"Command: `python -m benchmarks.throughput --suite {suite_name} --size {args.size} "
             f"--device {args.device} "
             f"--batch {args.batch} --steps {args.steps} --repeats {args.repeats}{' --compile' if args.compile else ''}"
             f"{f' --beams {args.beams}' if args.suite == 'caption' else ''}"
             f"{' --set ' + ' '.join(args.set) if args.suite == 'objectives' and args.set else ''}`", "",
             f"| implementation | {unit}/s | step (ms) | TFLOP/s | MFU | {rows[0].get('first', 'ours')} ÷ this |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        tf = f"{r['tflops']:.3f}" if r["tflops"] else "-"
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] else "-"
        lines.append(f"| {r['name']} | {r['samples_per_s']:,.1f} | "
                     f"{1000 * r['step_s']:.1f} ± {100 * r['spread']:.0f}% | "
                     f"{tf} | {mfu} | {base / r['samples_per_s']:.2f}× |")
    return lines


def spread_table(first: str, rows: dict[str, list[dict[str, float]]], measures: list[str]) -> list[str]:
    """A Markdown table: a row per measure, a column per group of runs, each cell the mean ± std over the group's
    runs (only the mean for one run; empty where no run has the measure)."""
    lines = [f"| {first} | " + " | ".join(rows) + " |", "|---" * (1 + len(rows)) + "|"]
    for m in measures:
        cells = []
        for runs in rows.values():
            v = [r[m] for r in runs if m in r]
            cells.append((f"{statistics.mean(v):.3f}" + (f" ± {statistics.stdev(v):.3f}" if len(v) > 1 else ""))
                         if v else "")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def publish(lines: list[str], write: str | None, key: str) -> str:
    """Print a measured table and, with --write, put it in RESULTS.md under its key."""
    text = "\n".join(lines) + "\n"
    print(text)
    if write:
        write_section(Path(write), key, text)
        print(f"written to {write}")
    return text


def write_section(path: Path, key: str, text: str) -> None:
    """Replace this suite/size/device's section in RESULTS.md, keeping the others."""
    from selfsup.io import atomic_write_text
    begin, end = f"<!-- {key} -->", f"<!-- /{key} -->"
    old = (path.read_text() if path.exists()
           else "# Measured figures\n\nWritten by the benchmark scripts (`--write`); no figure is typed by hand.\n")
    block = f"{begin}\n{text}{end}"
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(path, new)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="selfsup bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=sorted(SUITES) + ["ppo", "decode"], default="mae",
                   help="ppo: env steps/s with cached frozen embeddings vs re-encoding (see benchmarks/ppo_speed.py); "
                        "decode: images/s of in-memory, lazy and sharded image data (see benchmarks/decode_speed.py)")
    p.add_argument("--size", choices=["tiny", "base"], default="tiny")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", help="auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="steps per timed repetition")
    p.add_argument("--repeats", type=int, default=6, help="interleaved repetitions per implementation")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--beams", type=int, default=1, help="caption suite: beam size (1: greedy)")
    p.add_argument("--write", help="update this RESULTS.md with the table")
    p.add_argument("--set", nargs="*", default=[], help="ppo suite: overrides of the ppo minigrid preset; "
                                                         "objectives suite: of the bert preset (e.g. the corpus)")
    p.add_argument("--data", help="decode suite: an ImageFolder to read (default: synthetic 500x375 JPEGs)")
    p.add_argument("--images", type=int, default=512, help="decode suite: synthetic images to write")
    p.add_argument("--store-size", type=int, default=256, help="decode suite: storage size images are decoded to")
    p.add_argument("--crop", type=int, default=224, help="decode suite: size of the augmented crops")
    p.add_argument("--workers", type=int, default=2, help="decode suite: DataLoader workers of the parallel rows")
    args = p.parse_args(argv)
    device = pick_device(args.device, 0)
    precision = resolve_precision(args.precision, device)
    torch.manual_seed(0)
    if args.suite == "ppo":
        from .ppo_speed import measure_ppo
        from .ppo_speed import render as render_ppo
        header = [f"### PPO env steps/s, frozen ViT encoder — MiniGrid-Empty-5x5, preset minigrid, {precision}", "",
                  stamp(device), "",
                  f"Command: `selfsup bench --suite ppo --device {args.device} --repeats {args.repeats}"
                  f"{' --set ' + ' '.join(args.set) if args.set else ''}`", ""]
        rows = measure_ppo(device, precision, args.repeats, args.set)
        publish(render_ppo(rows, header), args.write, f"ppo-{device.type}-{precision}")
        return
    if args.suite == "decode":
        from .decode_speed import run as run_decode
        source = f"--data {args.data}" if args.data else f"--images {args.images}"
        what = f"`{args.data}`" if args.data else f"{args.images} synthetic 500x375 JPEGs"
        header = [f"### Image decoding for training — {what}, stored at {args.store_size} px, crops {args.crop} px, "
                  f"batch {args.batch}", "",
                  stamp(device), "",
                  f"Command: `selfsup bench --suite decode {source} --store-size {args.store_size} --crop {args.crop} "
                  f"--batch {args.batch} --workers {args.workers} --steps {args.steps} --repeats {args.repeats}`", ""]
        publish(run_decode(args, header), args.write, f"decode-{Path(args.data).name if args.data else 'synthetic'}")
        return
    extra = {"num_beams": args.beams} if args.suite == "caption" else \
        {"overrides": tuple(args.set)} if args.suite == "objectives" else {}
    suite = SUITES[args.suite](args.size, args.batch, device, **extra)
    rows = measure(suite, device, precision, args.compile, args.steps, args.repeats)
    if not suite.same_work:
        for r in rows:
            r["first"] = rows[0]["name"]
    key = (f"{args.suite}-{args.size}-{device.type}-{precision}{'-compiled' if args.compile else ''}"
           f"{f'-beam{args.beams}' if args.suite == 'caption' else ''}")
    publish(render(rows, args.suite, suite.unit, args, device, precision), args.write, key)


if __name__ == "__main__":
    main()
