"""Smoke tests of the training loop on a tiny random BERT: a step, checkpoints, resume, encoding."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from csrm_guard.errors import DataError  # noqa: E402
from csrm_guard.training.batching import PairEncoder, collate, load_items, make_batches  # noqa: E402
from csrm_guard.training.predict import load_checkpoint, predict_with, torch_forward  # noqa: E402
from csrm_guard.training.train import TrainConfig, load_config, train  # noqa: E402


def _config(data_dir: Path, run_dir: Path, **extra) -> TrainConfig:
    settings = {"max_length": 48, "max_clause_tokens": 12, "batch_size": 8, "lr": 1e-3, "bf16": False}
    settings |= {"log_every": 1, "checkpoint_minutes": 60.0, **extra}
    return TrainConfig(data_dir=data_dir, run_dir=run_dir, **settings)


class TestEncoding:
    def test_clause_capped_and_transcript_cut_from_left(self, tokenizer):
        """The clause keeps its first tokens and the transcript keeps its last (judged) tokens."""
        encoder = PairEncoder(tokenizer, max_length=11, max_clause_tokens=3)
        ((ids, types),) = encoder.encode(
            ["rule forbid any violence"], ["hello the cake thanks recipe judged"]
        )
        tokens = [tokenizer.id_to_token(i) for i in ids]
        assert tokens == [
            "[CLS]",
            "rule",
            "forbid",
            "any",
            "[SEP]",
            "the",
            "cake",
            "thanks",
            "recipe",
            "judged",
            "[SEP]",
        ]
        assert types == [0] * 5 + [1] * 6

    def test_batches_mix_kinds_and_cover_all_items(self, tokenizer, data_dir, categories):
        """Every item lands in exactly one batch and a pair occupies two consecutive rows."""
        encoder = PairEncoder(tokenizer, 48, 12)
        items = load_items(
            data_dir / "train", encoder, categories, taxonomy_query="standard harm categories", limits={}
        )
        batches = make_batches(items, batch_size=8, seed=0)
        assert sum(len(b) for b in batches) == len(items) == 72
        batch = collate(batches[0])
        assert batch["input_ids"].shape[0] <= 8
        assert torch.all(batch["laxer_idx"] == batch["stricter_idx"] + 1)

    def test_bad_row_names_file_and_line(self, tokenizer, data_dir, categories):
        """A malformed line raises DataError with the file and line number."""
        path = data_dir / "train" / "clauses.jsonl"
        path.write_text(path.read_text() + "{not json\n")
        with pytest.raises(DataError, match=r"clauses.jsonl:25"):
            load_items(data_dir / "train", PairEncoder(tokenizer), categories, taxonomy_query="q", limits={})


def test_training_reduces_loss_and_writes_log(tmp_path, data_dir, tiny_model, tokenizer, categories):
    """Training on separable synthetic data lowers the clause loss on the training rows and logs dev metrics."""
    items = load_items(
        data_dir / "train",
        PairEncoder(tokenizer, 48, 12),
        categories,
        taxonomy_query="q",
        limits={"taxonomy": 0, "pairs": 0},
    )

    def clause_bce() -> float:
        pred = predict_with(torch_forward(tiny_model, bf16=False), items, len(categories))
        logits, labels = torch.tensor(pred.clause_logits), torch.tensor(pred.labels)
        return float(torch.nn.functional.binary_cross_entropy_with_logits(logits, labels))

    before = clause_bce()
    run = tmp_path / "run"
    final = train(_config(data_dir, run, epochs=4), model=tiny_model, tokenizer=tokenizer)
    assert final.name == "final.pt"
    assert clause_bce() < before
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any("dev_f1" in r for r in records if r["event"] == "dev")
    model, config = load_checkpoint(final)
    assert config["max_length"] == 48
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, tiny_model.state_dict()[name])


def test_stop_and_resume_continue_from_checkpoint(tmp_path, data_dir, tiny_model, tokenizer):
    """A run stopped by max_minutes leaves last.pt, and a second start resumes from its step to the end."""
    run = tmp_path / "run"
    stopped = train(_config(data_dir, run, epochs=2, max_minutes=0.0), model=tiny_model, tokenizer=tokenizer)
    assert stopped.name == "last.pt"
    assert torch.load(stopped, weights_only=False)["position"]["step"] == 1
    final = train(_config(data_dir, run, epochs=2), model=tiny_model, tokenizer=tokenizer)
    starts = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    resumed = [r["resumed_at"]["step"] for r in starts if r["event"] == "start"]
    assert resumed == [0, 1]
    assert final.name == "final.pt"


def test_config_errors_name_the_field(tmp_path):
    """An unknown key in the config file is reported with the file name."""
    path = tmp_path / "train.yaml"
    path.write_text("data_dir: d\nrun_dir: r\nlearning_rate: 3\n")
    with pytest.raises(DataError, match=r"train.yaml.*learning_rate"):
        load_config(path)


def test_time_budget_finishes_the_schedule(tmp_path, data_dir, tiny_model, tokenizer):
    """When the time budget is spent the run finishes early with final.pt and the lr decayed to 0."""
    run = tmp_path / "run"
    final = train(
        _config(data_dir, run, epochs=3, time_budget_minutes=1e-6), model=tiny_model, tokenizer=tokenizer
    )
    assert final.name == "final.pt"
    steps = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if r["event"] == "step"] == [1]


def test_warm_start_loads_the_initial_weights(tmp_path, data_dir, tiny_model, tokenizer):
    """init_checkpoint starts a new run from another run's weights, not from the model passed in."""
    untrained = copy.deepcopy(tiny_model)
    first = train(_config(data_dir, tmp_path / "a"), model=tiny_model, tokenizer=tokenizer)
    trained = torch.load(first, weights_only=False)["model"]
    assert any(not torch.equal(t, trained[n]) for n, t in untrained.state_dict().items())
    config = _config(data_dir, tmp_path / "b", init_checkpoint=first, lr=0.0)
    train(config, model=untrained, tokenizer=tokenizer)
    for name, tensor in untrained.state_dict().items():
        assert torch.equal(tensor, trained[name]), name


def test_warm_start_from_a_missing_checkpoint_names_it(tmp_path, data_dir, tiny_model, tokenizer):
    """A wrong init_checkpoint path fails with a DataError naming the file."""
    missing = tmp_path / "nope.pt"
    with pytest.raises(DataError, match=r"nope\.pt"):
        train(
            _config(data_dir, tmp_path / "r", init_checkpoint=missing), model=tiny_model, tokenizer=tokenizer
        )


def test_oversample_repeats_the_named_source(tmp_path, data_dir, tiny_model, tokenizer):
    """oversample {source: 3} adds two extra copies of that source's training clause rows."""

    def train_items(run: Path, **extra) -> int:
        train(_config(data_dir, run, max_minutes=0.0, **extra), model=tiny_model, tokenizer=tokenizer)
        starts = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        return int(starts[0]["train_items"])

    clause_rows = len((data_dir / "train" / "clauses.jsonl").read_text().splitlines())
    plain = train_items(tmp_path / "a")
    assert train_items(tmp_path / "b", oversample={"synthetic": 3}) == plain + 2 * clause_rows
    assert train_items(tmp_path / "c", oversample={"other-source": 3}) == plain


def test_oversample_factor_below_one_is_a_config_error(tmp_path):
    """An oversample factor of 0 would silently drop nothing and mean nothing: the config names it."""
    path = tmp_path / "train.yaml"
    path.write_text("data_dir: d\nrun_dir: r\noversample: {scenarios: 0}\n")
    with pytest.raises(DataError, match=r"oversample\.scenarios"):
        load_config(path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where torch sees no GPU")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, data_dir, tiny_model, tokenizer):
    """device: cuda on a machine where torch sees no GPU fails before training, saying so."""
    with pytest.raises(DataError, match="no CUDA GPU"):
        train(_config(data_dir, tmp_path / "r", device="cuda"), model=tiny_model, tokenizer=tokenizer)
    assert not (tmp_path / "r" / "checkpoints").exists()


@pytest.mark.parametrize(("setting", "expected"), [("auto", "cuda"), ("cuda", "cuda"), ("cpu", "cpu")])
def test_device_setting_picks_where_the_model_goes(
    setting, expected, monkeypatch, tmp_path, data_dir, tiny_model, tokenizer
):
    """With a GPU visible, auto and cuda move the model to it and cpu keeps it on the CPU (the move is recorded,
    not made, so this runs on machines without a GPU)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    moved: list[str] = []

    def record(device):
        moved.append(torch.device(device).type)
        return tiny_model

    monkeypatch.setattr(tiny_model, "to", record)
    train(_config(data_dir, tmp_path / "r", device=setting), model=tiny_model, tokenizer=tokenizer)
    assert moved == [expected]


def test_device_defaults_to_auto(tmp_path):
    """A config that does not name a device trains wherever torch can."""
    assert TrainConfig(data_dir=tmp_path, run_dir=tmp_path).device == "auto"


def test_unknown_device_is_a_config_error(tmp_path):
    """Only auto, cpu and cuda are accepted; the message names the field."""
    path = tmp_path / "train.yaml"
    path.write_text("data_dir: d\nrun_dir: r\ndevice: tpu\n")
    with pytest.raises(DataError, match="device"):
        load_config(path)
