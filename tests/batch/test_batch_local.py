"""score_dataset with the local engine: complete output, kept malformed rows, resume, formats, real bundles."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from csrm_guard.batch import BundleScorer, score_dataset
from csrm_guard.batch.io import SCORE_COLUMNS
from csrm_guard.errors import BundleError, DataError, MissingDependencyError
from csrm_guard.guard import Guard
from csrm_guard.policy.render import render_policy


class TestOutput:
    def test_one_row_per_input_row_with_the_same_ids(
        self, corpus_factory, policy, hash_factory, read_jsonl, tmp_path
    ):
        """The output has every input row once, in input order, with its id and input fields kept."""
        path = corpus_factory(120)
        result = score_dataset(
            path,
            policy,
            out=tmp_path / "out.jsonl",
            scorer_factory=hash_factory(),
            batch_size=16,
            shard_size=50,
        )
        rows = read_jsonl(tmp_path / "out.jsonl")
        inputs = read_jsonl(path)
        assert [r["id"] for r in rows] == [r["id"] for r in inputs]
        assert [r["input_row"] for r in rows] == list(range(120))
        assert rows[5]["meta"] == {"n": 5}
        assert (result.rows, result.scored, result.errors, result.shards) == (120, 120, 0, 3)
        assert sum(result.outcomes.values()) == 120

    def test_scores_match_the_guard(self, corpus_factory, policy, hash_factory, read_jsonl, tmp_path):
        """Each row carries the decision the guard itself reaches for that conversation."""
        path = corpus_factory(10)
        score_dataset(path, policy, out=tmp_path / "out.jsonl", scorer_factory=hash_factory(), batch_size=4)
        guard = Guard(policy, scorer=hash_factory()())
        for row in read_jsonl(tmp_path / "out.jsonl"):
            decision = guard.check_output(row["messages"], row["response"])
            assert row["outcome"] == decision.outcome
            assert row["violation_probability"] == decision.violation_probability
            assert row["reward"] == decision.reward
            assert row["violations"] == [v.id for v in decision.violations]
            assert row["policy_hash"] == render_policy(policy).hash
            assert row["model_id"] == "hash-scorer"
            assert row["error"] is None

    def test_malformed_rows_are_kept_with_an_error(
        self, corpus_factory, policy, hash_factory, read_jsonl, tmp_path
    ):
        """Unparseable lines, missing ids and bad messages get an error column and stay in place."""
        result = score_dataset(
            corpus_factory(60, malformed=True),
            policy,
            out=tmp_path / "out.jsonl",
            scorer_factory=hash_factory(),
            batch_size=8,
            shard_size=25,
        )
        rows = read_jsonl(tmp_path / "out.jsonl")
        assert len(rows) == 60
        errors = {r["input_row"]: r["error"] for r in rows if r["error"]}
        assert set(errors) == {7, 19, 23, 31, 43}
        assert errors[7].startswith("line 8: invalid JSON")
        assert rows[7]["raw"] == "{this is not json"
        assert errors[23] == "line 24: missing 'id'"
        assert "messages" in errors[31]
        assert "messages[0].role" in errors[43]
        assert all(rows[i]["outcome"] is None and rows[i]["violation_probability"] is None for i in errors)
        assert result.errors == 5
        assert sum(result.outcomes.values()) == 55

    def test_input_stage_judges_the_user_turn(
        self, corpus_factory, policy, hash_factory, read_jsonl, tmp_path
    ):
        """With stage="input" the response is ignored and the last user message is judged."""
        path = corpus_factory(6)
        score_dataset(path, policy, out=tmp_path / "out.jsonl", scorer_factory=hash_factory(), stage="input")
        guard = Guard(policy, scorer=hash_factory()())
        for row in read_jsonl(tmp_path / "out.jsonl"):
            assert row["violation_probability"] == guard.check_input(row["messages"]).violation_probability


class TestFormats:
    def test_parquet_in_parquet_out_keeps_the_input_schema(self, policy, hash_factory, tmp_path):
        """Parquet input columns keep their types, and score columns are appended."""
        table = pa.table(
            {
                "id": pa.array(range(30), pa.int64()),
                "messages": [[{"role": "user", "content": f"q{i}"}] for i in range(30)],
                "response": [f"a{i}" for i in range(30)],
                "weight": [i / 2 for i in range(30)],
            }
        )
        pq.write_table(table, tmp_path / "in.parquet", row_group_size=7)
        score_dataset(
            tmp_path / "in.parquet",
            policy,
            out=tmp_path / "out.parquet",
            scorer_factory=hash_factory(),
            batch_size=4,
            shard_size=10,
        )
        out = pq.read_table(tmp_path / "out.parquet")
        assert out.num_rows == 30
        assert out.column("id").to_pylist() == list(range(30))
        assert out.schema.field("id").type == pa.int64()
        assert out.column_names[-len(SCORE_COLUMNS) :] == list(SCORE_COLUMNS)
        assert out.column("error").null_count == 30

    def test_jsonl_to_parquet_and_back_gives_the_same_scores(
        self, corpus_factory, policy, hash_factory, read_jsonl, tmp_path
    ):
        """Scoring a JSONL file to Parquet and re-scoring that Parquet file to JSONL gives the same scores."""
        path = corpus_factory(40, malformed=True)
        score_dataset(path, policy, out=tmp_path / "a.parquet", scorer_factory=hash_factory(), batch_size=8)
        score_dataset(
            tmp_path / "a.parquet",
            policy,
            out=tmp_path / "b.jsonl",
            scorer_factory=hash_factory(),
            batch_size=8,
        )
        first = pq.read_table(tmp_path / "a.parquet").to_pylist()
        second = read_jsonl(tmp_path / "b.jsonl")
        assert [r["id"] for r in first] == [r["id"] for r in second]
        valid = [i for i, r in enumerate(first) if r["error"] is None]
        assert len(valid) == 36  # rows 7, 19, 23 and 31 are malformed
        assert all(first[i]["violation_probability"] == second[i]["violation_probability"] for i in valid)

    def test_folder_output_holds_one_part_per_shard(self, corpus_factory, policy, hash_factory, tmp_path):
        """An output without a file suffix is a folder of part files in the input's format."""
        score_dataset(
            corpus_factory(25), policy, out=tmp_path / "scored", scorer_factory=hash_factory(), shard_size=10
        )
        names = sorted(p.name for p in (tmp_path / "scored").iterdir())
        assert [n for n in names if n.endswith(".jsonl")] == [f"part-0000{i}.jsonl" for i in range(3)]
        assert "_SUCCESS" in names


class TestResume:
    def test_resume_skips_finished_shards(
        self, corpus_factory, policy, hash_factory, read_jsonl, tmp_path, monkeypatch
    ):
        """After a crash in shard 2, --resume scores only the unfinished shards and the output is complete."""
        path = corpus_factory(50)
        out = tmp_path / "out.jsonl"
        crash = hash_factory(crash_on="question number 27", crash_marker=str(tmp_path / "crashed"))
        monkeypatch.setattr("os._exit", _raise_exit)
        with pytest.raises(SystemExit):
            score_dataset(path, policy, out=out, scorer_factory=crash, batch_size=5, shard_size=10)
        assert not out.exists()
        result = score_dataset(
            path, policy, out=out, scorer_factory=crash, batch_size=5, shard_size=10, resume=True
        )
        assert (result.shards_skipped, result.scored) == (2, 30)
        reference = tmp_path / "ref.jsonl"
        score_dataset(path, policy, out=reference, scorer_factory=hash_factory(), batch_size=5, shard_size=10)
        assert out.read_bytes() == reference.read_bytes()
        assert not (tmp_path / "out.jsonl.shards").exists()

    def test_resume_with_another_policy_is_refused(self, corpus_factory, policy, hash_factory, tmp_path):
        """An unfinished run cannot be resumed under a different policy."""
        path = corpus_factory(20)
        out = tmp_path / "out.jsonl"
        target_work = tmp_path / "out.jsonl.shards"
        target_work.mkdir()
        (target_work / "manifest.json").write_text(json.dumps({"version": 1, "policy_hash": "x"}), "utf-8")
        with pytest.raises(DataError, match="cannot resume"):
            score_dataset(path, policy, out=out, scorer_factory=hash_factory(), resume=True)


class TestModelBundle:
    def test_bundle_scorer_scores_with_onnx(
        self, corpus_factory, policy, random_bundle, read_jsonl, tmp_path
    ):
        """A BundleScorer factory loads the bundle in the worker and fills model_id from it."""
        path = corpus_factory(12)
        result = score_dataset(path, policy, out=tmp_path / "out.jsonl", model=random_bundle, threads=1)
        rows = read_jsonl(tmp_path / "out.jsonl")
        assert result.errors == 0
        assert {r["model_id"].split("@")[0] for r in rows} == {"random-test"}
        assert all(0.0 <= r["violation_probability"] <= 1.0 for r in rows)

    def test_bundle_scorer_pickles_without_a_session(self, random_bundle):
        """The factory is a small value: it pickles to the bundle path and options, not an ONNX session."""
        factory = BundleScorer(str(random_bundle), threads=1)
        assert pickle.loads(pickle.dumps(factory)) == factory


def test_jsonl_runs_import_neither_pyarrow_nor_ray(tmp_path):
    """A JSONL run on the local engine needs only the runtime: pyarrow and ray stay unimported."""
    script = tmp_path / "run.py"
    (tmp_path / "in.jsonl").write_text(
        json.dumps({"id": 1, "messages": [{"role": "user", "content": "hi"}], "response": "hello"}) + "\n",
        encoding="utf-8",
    )
    script.write_text(
        "import sys\n"
        "import csrm_guard.cli.batch_cmds\n"
        "from csrm_guard import Policy\n"
        "from csrm_guard.batch import score_dataset\n"
        "from csrm_guard.testing import StaticScorer\n"
        "score_dataset(sys.argv[1], Policy(name='p'), out=sys.argv[2], scorer_factory=lambda: StaticScorer(0.1))\n"
        "print(sorted(m for m in ('pyarrow', 'ray') if m in sys.modules))\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"
    assert (tmp_path / "out.jsonl").exists()


def test_parquet_without_pyarrow_names_the_extra(corpus_factory, policy, hash_factory, tmp_path, monkeypatch):
    """Asking for Parquet output without pyarrow fails before scoring, naming the extra to install."""
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.delitem(sys.modules, "csrm_guard.batch._parquet", raising=False)
    with pytest.raises(MissingDependencyError, match=r"csrm-guard\[parquet\]"):
        score_dataset(corpus_factory(3), policy, out=tmp_path / "o.parquet", scorer_factory=hash_factory())


def test_ray_engine_checks_the_bundle_before_starting(corpus_factory, policy, tmp_path):
    """A missing bundle fails on the driver, before any cluster or actor is started."""
    with pytest.raises(BundleError):
        score_dataset(
            corpus_factory(3), policy, out=tmp_path / "o.jsonl", model=tmp_path / "nope", engine="ray"
        )
    assert not (tmp_path / "o.jsonl.shards").exists()


def test_ray_engine_without_ray_names_the_extra(corpus_factory, policy, hash_factory, tmp_path, monkeypatch):
    """Without the ray extra, engine="ray" fails with a message naming the extra to install."""
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "csrm_guard.batch.ray_engine", raising=False)
    with pytest.raises(MissingDependencyError, match=r"csrm-guard\[ray\]"):
        score_dataset(
            corpus_factory(3), policy, out=tmp_path / "o.jsonl", scorer_factory=hash_factory(), engine="ray"
        )


def _raise_exit(code: int) -> None:
    raise SystemExit(code)
