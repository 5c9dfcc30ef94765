"""Reading inputs in chunks, and the output side: shard files, manifests, resume and merge."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from csrm_guard.batch.io import open_source, plan_chunks, read_chunk
from csrm_guard.batch.shards import ShardStats, Target
from csrm_guard.errors import DataError


class TestPlan:
    def test_chunks_tile_the_rows_and_stay_inside_shards(self, corpus_factory):
        """Chunks cover every row once, in order, and never cross a shard boundary."""
        plan = plan_chunks(open_source(corpus_factory(23)), chunk_size=4, shard_size=10)
        assert plan.rows == 23
        assert [len(shard) for shard in plan.shards] == [3, 3, 1]
        chunks = [chunk for shard in plan.shards for chunk in shard]
        assert [(c.start, c.stop) for c in chunks][:4] == [(0, 4), (4, 8), (8, 10), (10, 14)]
        assert all(c.shard == c.start // 10 == (c.stop - 1) // 10 for c in chunks)

    def test_blank_lines_are_not_rows(self, tmp_path):
        """Blank lines are skipped; line numbers in records still point at the file's lines."""
        path = tmp_path / "in.jsonl"
        path.write_text('{"id": 1}\n\n   \n{"id": 2}\n', encoding="utf-8")
        source = open_source(path)
        plan = plan_chunks(source, chunk_size=1, shard_size=5)
        assert plan.rows == 2
        second = read_chunk(source, plan.shards[0][1])
        assert second[0].data == {"id": 2}
        assert second[0].where == "line 4"

    def test_unknown_suffix_is_refused(self, tmp_path):
        """An input that is neither JSONL nor Parquet fails with an error naming the file."""
        path = tmp_path / "in.csv"
        path.write_text("id\n1\n", encoding="utf-8")
        with pytest.raises(DataError, match=r"in\.csv.*unknown input format"):
            open_source(path)

    def test_missing_input_is_refused(self, tmp_path):
        """A missing input fails with a DataError, not a traceback from deep inside."""
        with pytest.raises(DataError, match="cannot read input"):
            open_source(tmp_path / "absent.jsonl")


class TestRead:
    def test_chunk_read_by_offset_matches_the_file(self, corpus_factory):
        """Reading a chunk seeks to its offset and returns exactly its rows."""
        path = corpus_factory(50)
        source = open_source(path)
        plan = plan_chunks(source, chunk_size=7, shard_size=50)
        lines = path.read_text(encoding="utf-8").splitlines()
        records = read_chunk(source, plan.shards[0][3])
        assert [r.row for r in records] == list(range(21, 28))
        assert [r.data for r in records] == [json.loads(line) for line in lines[21:28]]

    def test_malformed_lines_become_records_with_errors(self, corpus_factory):
        """A line that is not JSON or not an object keeps its raw text and says why."""
        source = open_source(corpus_factory(20, malformed=True))
        plan = plan_chunks(source, chunk_size=20, shard_size=20)
        records = {r.row: r for r in read_chunk(source, plan.shards[0][0])}
        assert records[7].data is None
        assert records[7].raw == "{this is not json"
        assert "invalid JSON" in (records[7].error or "")
        assert "expected a JSON object, got list" in (records[19].error or "")

    def test_parquet_chunks_span_row_groups(self, tmp_path):
        """A Parquet chunk crossing row groups returns the right rows."""
        table = pa.table({"id": [f"r{i}" for i in range(25)], "n": list(range(25))})
        path = tmp_path / "in.parquet"
        pq.write_table(table, path, row_group_size=6)
        source = open_source(path)
        plan = plan_chunks(source, chunk_size=8, shard_size=25)
        records = read_chunk(source, plan.shards[0][1])
        assert [r.data["n"] for r in records if r.data] == list(range(8, 16))
        assert records[0].where == "row 9"

    def test_parquet_without_id_is_refused(self, tmp_path):
        """A Parquet input needs an id column."""
        path = tmp_path / "in.parquet"
        pq.write_table(pa.table({"messages": ["x"]}), path)
        with pytest.raises(DataError, match="no 'id' column"):
            plan_chunks(open_source(path), chunk_size=4, shard_size=4)


class TestTarget:
    def test_existing_output_needs_overwrite_or_resume(self, tmp_path):
        """An existing output file is never replaced silently."""
        out = tmp_path / "out.jsonl"
        out.write_text("old\n", encoding="utf-8")
        target = Target.for_output(out, "jsonl")
        with pytest.raises(FileExistsError, match="already exists"):
            target.prepare({"stage": "output"}, resume=False, overwrite=False)
        assert target.prepare({"stage": "output"}, resume=False, overwrite=True) == {}
        assert not out.exists()

    def test_resume_returns_finished_shards_only(self, tmp_path):
        """A shard counts as finished only when both its part file and its marker exist."""
        target = Target.for_output(tmp_path / "out.jsonl", "jsonl")
        target.prepare({"stage": "output"}, resume=False, overwrite=False)
        target.part(0).write_text("{}\n", encoding="utf-8")
        target.mark_done(0, ShardStats(rows=1))
        target.part(1).write_text("{}\n", encoding="utf-8")  # written, but the run died before its marker
        done = target.prepare({"stage": "output"}, resume=True, overwrite=False)
        assert set(done) == {0}
        assert done[0].rows == 1

    def test_unfinished_run_needs_resume_or_overwrite(self, tmp_path):
        """Starting over an unfinished run without resume or overwrite is refused."""
        target = Target.for_output(tmp_path / "out.jsonl", "jsonl")
        target.prepare({"stage": "output"}, resume=False, overwrite=False)
        with pytest.raises(FileExistsError, match="unfinished run"):
            target.prepare({"stage": "output"}, resume=False, overwrite=False)

    def test_resume_with_other_settings_is_refused(self, tmp_path):
        """Resuming with a different manifest names what changed."""
        target = Target.for_output(tmp_path / "out.jsonl", "jsonl")
        target.prepare({"policy_hash": "aaa", "stage": "output"}, resume=False, overwrite=False)
        with pytest.raises(DataError, match="policy_hash: was 'aaa', now 'bbb'"):
            target.prepare({"policy_hash": "bbb", "stage": "output"}, resume=True, overwrite=False)

    def test_folder_output_is_marked_complete(self, tmp_path):
        """A folder output keeps its parts and gets a _SUCCESS marker."""
        target = Target.for_output(tmp_path / "scored", "jsonl")
        assert target.folder
        target.prepare({}, resume=False, overwrite=False)
        target.part(0).write_text("{}\n", encoding="utf-8")
        target.finalize(1, None)
        assert (tmp_path / "scored" / "_SUCCESS").exists()
        assert (tmp_path / "scored" / "part-00000.jsonl").exists()

    def test_foreign_folder_is_not_touched(self, tmp_path):
        """A non-empty folder that holds no csrm-guard run is refused, not cleaned."""
        folder = tmp_path / "mine"
        folder.mkdir()
        (folder / "notes.txt").write_text("keep me", encoding="utf-8")
        with pytest.raises(DataError, match="holds no csrm-guard run"):
            Target.for_output(folder, "jsonl").prepare({}, resume=False, overwrite=True)
        assert (folder / "notes.txt").exists()
