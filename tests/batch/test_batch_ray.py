"""The Ray engine on a local two-CPU cluster: identical to the local engine, and no row lost to a crash."""

from __future__ import annotations

import sys

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'csrm-guard[ray]')")

from csrm_guard.batch import score_dataset  # noqa: E402  (after the skip, like the module it tests)
from csrm_guard.errors import ScorerError  # noqa: E402

# Ray Data's own DataContext warns about its deprecated defaults on first use; that is not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")


@pytest.fixture(name="cluster", scope="module")
def _cluster(tmp_path_factory):
    """A local Ray cluster with two CPUs, shared by the module's tests."""
    from ray import cloudpickle  # noqa: PLC0415

    # Test folders are not importable packages: ship the scorer factories to the workers by value.
    cloudpickle.register_pickle_by_value(sys.modules[_factory_module()])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
    )
    yield
    ray.shutdown()


def _factory_module() -> str:
    return next(
        name
        for name, module in sys.modules.items()
        if name.endswith("conftest") and hasattr(module, "HashScorerFactory")
    )


def test_local_and_ray_give_identical_output(cluster, corpus_factory, policy, hash_factory, tmp_path):
    """On 2,000 rows (malformed ones included) both engines write byte-identical output."""
    path = corpus_factory(2000, malformed=True)
    local = score_dataset(
        path, policy, out=tmp_path / "local.jsonl", scorer_factory=hash_factory(), shard_size=500
    )
    remote = score_dataset(
        path, policy, out=tmp_path / "ray.jsonl", scorer_factory=hash_factory(), engine="ray", shard_size=500
    )
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert (remote.rows, remote.scored, remote.errors) == (2000, 2000, 5)
    assert remote.outcomes == local.outcomes


def test_a_crashed_actor_loses_nothing(cluster, corpus_factory, policy, hash_factory, read_jsonl, tmp_path):
    """An actor process that dies mid-chunk is restarted, its chunk retried, and the output stays complete."""
    path = corpus_factory(400)
    marker = tmp_path / "crashed"
    crashing = hash_factory(crash_on="question number 250", crash_marker=str(marker))
    result = score_dataset(
        path,
        policy,
        out=tmp_path / "ray.jsonl",
        scorer_factory=crashing,
        engine="ray",
        batch_size=16,
        shard_size=100,
    )
    assert marker.exists(), "the actor never crashed: the test did not test anything"
    rows = read_jsonl(tmp_path / "ray.jsonl")
    assert [r["id"] for r in rows] == [f"row-{i:05d}" for i in range(400)]
    assert result.errors == 0
    score_dataset(
        path,
        policy,
        out=tmp_path / "local.jsonl",
        scorer_factory=hash_factory(),
        batch_size=16,
        shard_size=100,
    )
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()


def test_ray_actors_load_the_bundle_themselves(cluster, corpus_factory, policy, random_bundle, tmp_path):
    """With a model bundle, each actor builds its own ONNX session and scores match the local engine's."""
    path = corpus_factory(60, malformed=True)
    score_dataset(path, policy, out=tmp_path / "local.jsonl", model=random_bundle, threads=1, batch_size=8)
    result = score_dataset(
        path,
        policy,
        out=tmp_path / "ray.jsonl",
        model=random_bundle,
        engine="ray",
        batch_size=8,
        num_actors=2,
    )
    assert result.errors == 5
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()


def test_a_cluster_that_cannot_start_is_an_operational_error(
    corpus_factory, policy, hash_factory, tmp_path, monkeypatch
):
    """When Ray cannot start or join a cluster, the run fails with a ScorerError naming the address."""

    def broken_init(**_):
        raise Exception("The current node timed out during startup.")  # what ray.init raises on a stuck node

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", broken_init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    with pytest.raises(ScorerError, match=r"could not start or join the Ray cluster \(head:6379\)"):
        score_dataset(
            corpus_factory(4),
            policy,
            out=tmp_path / "o.jsonl",
            scorer_factory=hash_factory(),
            engine="ray",
            address="head:6379",
        )


def test_no_progress_timeout_is_off_while_scoring_and_restored_after():
    """Ray Data's 30-minute no-progress abort is disabled for the job (slow is not stuck) and then restored."""
    from csrm_guard.batch.ray_engine import _quiet_progress  # noqa: PLC0415

    context = ray.data.DataContext.get_current()
    before = context.execution_no_progress_timeout_s
    with _quiet_progress():
        assert context.execution_no_progress_timeout_s == -1
        assert context.enable_progress_bars is False
    assert context.execution_no_progress_timeout_s == before
