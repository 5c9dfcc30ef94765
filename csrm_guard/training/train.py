"""The training loop: ``csrm-guard train --config FILE``.

Full fine-tuning of the CSRM on ``data build`` output, on CPU: bf16 autocast, attention dropout 0,
length-bucketed
dynamic padding, mixed batches of clause rows, taxonomy rows and strictness pairs, AdamW with linear warmup
and
decay. Every ``checkpoint_minutes`` the loop evaluates a dev sample, appends it to ``RUN/log.jsonl`` and
writes
``RUN/checkpoints/last.pt`` (model, optimizer, scheduler, position), so that a killed run resumes where it
stopped
when started again with the same config. The final weights go to ``RUN/checkpoints/final.pt``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError
from tokenizers import Tokenizer
from tqdm import tqdm

from csrm_guard.errors import DataError
from csrm_guard.policy.taxonomy import load_taxonomy
from csrm_guard.training.batching import Item, PairEncoder, iterate, load_items, make_batches
from csrm_guard.training.losses import LossWeights, combined_loss
from csrm_guard.training.model import CsrmModel, base_model_dir, load_base_model
from csrm_guard.training.predict import dev_metrics

__all__ = ["TrainConfig", "load_config", "save_checkpoint", "train"]

logger = logging.getLogger(__name__)

Limits = dict[str, int | None]


def _all_rows() -> Limits:
    return {"clauses": None, "taxonomy": None, "pairs": None}


def _dev_sample() -> Limits:
    return {"clauses": 800, "taxonomy": 200, "pairs": 300}


class TrainConfig(BaseModel):
    """Everything a training run depends on (the config file's schema; unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Field(description="`csrm-guard data build` output folder")
    run_dir: Path = Field(description="where checkpoints, the tokenizer and log.jsonl go")
    max_length: int = 256
    max_clause_tokens: int = 96
    taxonomy_query: str = "Standard harm categories."
    batch_size: int = Field(default=32, description="sequences per batch (a pair counts two)")
    lr: float = 4e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    epochs: int = 1
    gamma: float = 0.1
    margin: float = 0.0
    severity_weight: float = 1.0
    head_dropout: float = 0.1
    train_limits: Limits = Field(default_factory=_all_rows)
    dev_limits: Limits = Field(default_factory=_dev_sample)
    checkpoint_minutes: float = 10.0
    max_minutes: float | None = Field(default=None, description="stop (with a checkpoint) after this long")
    time_budget_minutes: float | None = Field(
        default=None, description="finish (lr decayed to 0) after this much training time"
    )
    freeze_embeddings: bool = False
    freeze_layers: int = Field(default=0, ge=0, description="freeze the bottom N encoder layers")
    log_every: int = 20
    seed: int = 13
    threads: int = 2
    bf16: bool = True
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="where to train: `auto` takes a CUDA GPU when torch sees one, else the CPU",
    )
    unconditioned: bool = Field(default=False, description="baseline: the encoder never sees the clause")
    oversample: dict[str, PositiveInt] = Field(
        default_factory=dict,
        description="training clause rows of these sources are repeated this many times (e.g. {scenarios: 3})",
    )
    init_checkpoint: Path | None = Field(
        default=None,
        description="warm start: initial weights from this checkpoint (fresh optimizer and schedule)",
    )


def load_config(path: Path) -> TrainConfig:
    """Read a YAML or JSON training config; relative paths resolve against the current directory.

    Raises:
        DataError: When the file is missing, unreadable or invalid (the message names the field).
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return TrainConfig.model_validate(raw)
    except OSError as exc:
        raise DataError(f"cannot read config: {exc}", source=str(path)) from exc
    except yaml.YAMLError as exc:
        raise DataError(f"invalid YAML: {exc}", source=str(path)) from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise DataError(f"invalid config: {problems}", source=str(path)) from exc


class _Schedule:
    """Linear warmup then linear decay, driven by steps or by wall time, whichever is further along.

    With ``time_budget_minutes`` set, the run's progress is ``max(step / total_steps, elapsed / budget)``: the
    learning rate reaches 0 and the run finishes when the budget is spent, however fast the machine is.
    """

    def __init__(self, optimizer: Any, config: TrainConfig, total_steps: int) -> None:
        self.optimizer = optimizer
        self.base_lr = config.lr
        self.warmup = config.warmup_ratio
        self.total_steps = max(1, total_steps)
        budget = config.time_budget_minutes
        self.budget_s = budget * 60 if budget else None
        self.elapsed_before = 0.0
        self.started = time.monotonic()
        self.lr = 0.0

    def elapsed(self) -> float:
        """Seconds of training so far, across resumes."""
        return self.elapsed_before + time.monotonic() - self.started

    def progress(self, step: int) -> float:
        """Fraction of the run done (1.0 = finished)."""
        done = step / self.total_steps
        if self.budget_s:
            done = max(done, self.elapsed() / self.budget_s)
        return min(done, 1.0)

    def apply(self, step: int) -> None:
        """Set the optimizer's learning rate for ``step``."""
        progress = self.progress(step)
        if progress < self.warmup:
            factor = max(progress / self.warmup, 1.0 / self.total_steps)
        else:
            factor = max(0.0, (1.0 - progress) / max(1e-9, 1.0 - self.warmup))
        self.lr = self.base_lr * factor
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr

    def state_dict(self) -> dict[str, float]:
        """What a checkpoint keeps."""
        return {"elapsed": self.elapsed()}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Continue the clock of a resumed run."""
        self.elapsed_before = float(state.get("elapsed", 0.0))
        self.started = time.monotonic()


def _freeze(model: CsrmModel, config: TrainConfig) -> None:
    if config.freeze_embeddings:
        model.encoder.embeddings.requires_grad_(False)
    for layer in model.encoder.encoder.layer[: config.freeze_layers]:
        layer.requires_grad_(False)


def _optimizer(model: CsrmModel, config: TrainConfig, total_steps: int) -> tuple[Any, _Schedule]:
    _freeze(model, config)
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    return optimizer, _Schedule(optimizer, config, total_steps)


def save_checkpoint(path: Path, model: CsrmModel, config: TrainConfig, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically: weights, encoder config, run config and ``state``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": model.state_dict(),
        "bert_config": model.encoder.config.to_dict(),
        "num_categories": model.num_categories,
        "config": config.model_dump(mode="json"),
        **state,
    }
    temp = path.with_suffix(".tmp")
    torch.save(payload, temp)
    temp.replace(path)


def _log(run_dir: Path, record: dict[str, Any]) -> None:
    with (run_dir / "log.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"time": round(time.time(), 1), **record}) + "\n")


def _prepare(config: TrainConfig, tokenizer: Tokenizer | None) -> tuple[PairEncoder, list[str]]:
    config.run_dir.mkdir(parents=True, exist_ok=True)
    if tokenizer is None:
        source = base_model_dir() / "tokenizer.json"
        shutil.copyfile(source, config.run_dir / "tokenizer.json")
        tokenizer = Tokenizer.from_file(str(source))
    else:
        tokenizer.save(str(config.run_dir / "tokenizer.json"))
    categories = [category.id for category in load_taxonomy().categories]
    return PairEncoder(tokenizer, config.max_length, config.max_clause_tokens), categories


def _load_split(config: TrainConfig, encoder: PairEncoder, categories: list[str], split: str) -> list[Item]:
    limits = config.train_limits if split == "train" else config.dev_limits
    items = load_items(
        config.data_dir / split,
        encoder,
        categories,
        taxonomy_query=config.taxonomy_query,
        limits=limits,
        seed=config.seed,
        unconditioned=config.unconditioned,
    )
    if split != "train" or not config.oversample:
        return items
    extra = [
        item
        for item in items
        if item.kind == "clause"
        for _ in range(config.oversample.get(str(item.meta.get("source")), 1) - 1)
    ]
    logger.info("oversampling %s: %d extra clause rows", config.oversample, len(extra))
    return items + extra


def train(config: TrainConfig, *, model: CsrmModel | None = None, tokenizer: Tokenizer | None = None) -> Path:
    """Train (or resume) a run and return the path of its final checkpoint.

    Args:
        config: The run's configuration.
        model: A model to train instead of MiniLM (tests pass a tiny random BERT).
        tokenizer: Its tokenizer (default: MiniLM's).

    Returns:
        ``RUN/checkpoints/final.pt``.
    """
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    encoder, categories = _prepare(config, tokenizer)
    model = model or load_base_model(len(categories), head_dropout=config.head_dropout)
    device = _device(config)
    model.to(device)
    train_items = _load_split(config, encoder, categories, "train")
    dev_items = _load_split(config, encoder, categories, "dev")
    epochs = [make_batches(train_items, config.batch_size, config.seed + e) for e in range(config.epochs)]
    total_steps = sum(len(batches) for batches in epochs)
    optimizer, scheduler = _optimizer(model, config, total_steps)
    logger.info("%d batches on %s; bf16 autocast %s", total_steps, device, "on" if config.bf16 else "off")
    last = config.run_dir / "checkpoints" / "last.pt"
    if config.init_checkpoint is not None and not last.exists():
        _warm_start(config.init_checkpoint, model)
    position = _resume(last, model, optimizer, scheduler)
    _log(
        config.run_dir,
        {
            "event": "start",
            "train_items": len(train_items),
            "dev_items": len(dev_items),
            "steps": total_steps,
            "resumed_at": position,
        },
    )
    finished = _run_epochs(config, model, optimizer, scheduler, epochs, dev_items, position)
    final = config.run_dir / "checkpoints" / ("final.pt" if finished else "last.pt")
    if finished:
        save_checkpoint(final, model, config, {"step": total_steps, "finished": True})
    return final


def _device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" and not torch.cuda.is_available():
        raise DataError("device: cuda was asked for, but torch sees no CUDA GPU (a CPU build of torch?)")
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def _warm_start(path: Path, model: CsrmModel) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
    except (OSError, KeyError, RuntimeError) as exc:
        raise DataError(f"cannot warm-start from this checkpoint: {exc}", source=str(path)) from exc
    logger.info("warm start from %s", path)


def _resume(path: Path, model: CsrmModel, optimizer: Any, scheduler: Any) -> dict[str, int]:
    if not path.exists():
        return {"epoch": 0, "batch": 0, "step": 0}
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    logger.info("resumed from %s at step %d", path, state["position"]["step"])
    return dict(state["position"])


def _run_epochs(  # noqa: PLR0917 - private, called once
    config: TrainConfig,
    model: CsrmModel,
    optimizer: Any,
    scheduler: Any,
    epochs: list[list[list[Item]]],
    dev_items: list[Item],
    position: dict[str, int],
) -> bool:
    weights = LossWeights(gamma=config.gamma, margin=config.margin, severity=config.severity_weight)
    started = last_checkpoint = time.monotonic()
    step = position["step"]
    progress = tqdm(
        total=sum(len(b) for b in epochs), initial=step, desc="train", unit="batch", mininterval=10
    )
    budget_spent = False
    for epoch in range(position["epoch"], len(epochs)):
        start = position["batch"] if epoch == position["epoch"] else 0
        for number, batch in iterate(epochs[epoch], start):
            if budget_spent:
                break
            scheduler.apply(step)
            parts = _step(model, optimizer, batch, weights, config.bf16)
            step += 1
            progress.update(1)
            if step % config.log_every == 0:
                _log(config.run_dir, {"event": "step", "step": step, "lr": scheduler.lr, **parts})
            now = time.monotonic()
            out_of_time = config.max_minutes is not None and now - started >= config.max_minutes * 60
            if now - last_checkpoint >= config.checkpoint_minutes * 60 or out_of_time:
                state = {"epoch": epoch, "batch": number + 1, "step": step}
                _checkpoint(config, model, optimizer, scheduler, dev_items, state)
                last_checkpoint = time.monotonic()
            if out_of_time:
                progress.close()
                return False
            budget_spent = scheduler.progress(step) >= 1.0  # the lr has decayed to 0: finish
    progress.close()
    _log(config.run_dir, {"event": "dev", "step": step, **_evaluate(model, dev_items, config)})
    return True


def _step(
    model: CsrmModel,
    optimizer: Any,
    batch: dict[str, torch.Tensor],
    weights: LossWeights,
    bf16: bool,
) -> dict[str, float]:
    model.train()
    device = next(model.parameters()).device
    batch = {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        violation, severity = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    loss, parts = combined_loss(violation.float(), severity.float(), batch, weights)
    if not math.isfinite(float(loss.detach())):
        raise DataError(f"non-finite loss (parts {parts})")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return {"loss": float(loss.detach()), **parts}


def _evaluate(model: CsrmModel, dev_items: list[Item], config: TrainConfig) -> dict[str, float]:
    return dev_metrics(model, dev_items, batch_size=config.batch_size, bf16=config.bf16)


def _checkpoint(  # noqa: PLR0917 - private
    config: TrainConfig,
    model: CsrmModel,
    optimizer: Any,
    scheduler: Any,
    dev: list[Item],
    position: dict[str, int],
) -> None:
    metrics = _evaluate(model, dev, config)
    _log(config.run_dir, {"event": "dev", "step": position["step"], **metrics})
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "position": position}
    save_checkpoint(config.run_dir / "checkpoints" / "last.pt", model, config, state)
    logger.info("checkpoint at step %d: %s", position["step"], metrics)
