"""Tests for csrm_guard.model.session: provider choice, CUDA fallback (mocked: no GPU here), options, warm-up."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from csrm_guard.errors import ModelError
from csrm_guard.model import session as session_module
from csrm_guard.model.session import CPU, CUDA, build_session, resolve_providers, warm_up


@pytest.fixture(name="model_path")
def _model_path(random_bundle: Path) -> Path:
    return random_bundle / "model.onnx"


@pytest.fixture(name="gpu_build")
def _gpu_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend onnxruntime-gpu is installed (CUDA listed), as on a machine whose GPU may or may not work."""
    monkeypatch.setattr(session_module, "available_providers", lambda: [CUDA, CPU])


class _FakeSession:
    """Stands in for onnxruntime.InferenceSession: CUDA becomes active only when ``cuda_works``."""

    cuda_works = False

    def __init__(self, path: str, *, sess_options: Any, providers: list[str]) -> None:
        self.requested = providers
        self.options = sess_options

    def get_providers(self) -> list[str]:
        return [p for p in self.requested if p != CUDA or self.cuda_works]

    def get_inputs(self) -> list[Any]:
        return [SimpleNamespace(name=n) for n in ("input_ids", "attention_mask", "token_type_ids")]

    def get_outputs(self) -> list[Any]:
        return [SimpleNamespace(name=n) for n in ("violation_logit", "severity_logits")]


@pytest.fixture(name="fake_runtime")
def _fake_runtime(monkeypatch: pytest.MonkeyPatch, gpu_build: None) -> type[_FakeSession]:
    fake = SimpleNamespace(
        InferenceSession=_FakeSession,
        SessionOptions=onnxruntime.SessionOptions,
        GraphOptimizationLevel=onnxruntime.GraphOptimizationLevel,
        ExecutionMode=onnxruntime.ExecutionMode,
        get_available_providers=lambda: [CUDA, CPU],
    )
    monkeypatch.setattr(session_module, "_onnxruntime", lambda: fake)
    _FakeSession.cuda_works = False
    return _FakeSession


class TestResolve:
    def test_cpu_alias(self):
        """'cpu' means the CPU provider only."""
        assert resolve_providers("cpu") == [CPU]

    def test_auto_without_cuda_build(self, monkeypatch):
        """auto picks CPU when onnxruntime has no CUDA provider."""
        monkeypatch.setattr(session_module, "available_providers", lambda: [CPU])
        assert resolve_providers("auto") == [CPU]

    def test_auto_with_cuda_build(self, gpu_build):
        """auto tries CUDA first, with CPU as the fallback, when onnxruntime-gpu is installed."""
        assert resolve_providers("AUTO") == [CUDA, CPU]

    def test_unknown_explicit_provider_lists_available_ones(self):
        """An explicit provider this build lacks is an error that lists the available providers."""
        with pytest.raises(ModelError, match="not available") as info:
            resolve_providers(["TensorrtExecutionProvider"])
        assert CPU in str(info.value)

    def test_unknown_name_string(self):
        """A misspelled provider string is an error too, naming the aliases."""
        with pytest.raises(ModelError, match="aliases: auto, cpu, cuda"):
            resolve_providers("cdua")

    def test_empty_list(self):
        """An empty provider list is rejected."""
        with pytest.raises(ModelError, match="no execution provider"):
            resolve_providers([])


class TestCudaFallback:
    def test_cuda_requested_on_cpu_only_build_warns_and_runs_on_cpu(self, model_path):
        """Asking for CUDA with the CPU-only onnxruntime warns and gives a working CPU session."""
        with pytest.warns(RuntimeWarning, match="CUDA was requested but is not active"):
            session = build_session(model_path, providers="cuda")
        assert session.get_providers() == [CPU]
        warm_up(session, (8,))

    def test_cuda_requested_but_gpu_unusable_warns(self, fake_runtime, model_path):
        """onnxruntime-gpu without a usable GPU falls back to CPU with a warning."""
        with pytest.warns(RuntimeWarning, match="running on CPU"):
            session = build_session(model_path, providers="cuda")
        assert session.requested == [CUDA, CPU]
        assert session.get_providers() == [CPU]

    def test_cuda_active_does_not_warn(self, fake_runtime, model_path, recwarn):
        """When CUDA is active nothing is warned and CUDA leads the provider list."""
        fake_runtime.cuda_works = True
        session = build_session(model_path, providers="cuda")
        assert session.get_providers() == [CUDA, CPU]
        assert not recwarn.list

    def test_auto_falls_back_silently(self, fake_runtime, model_path, recwarn, caplog):
        """auto with an unusable GPU runs on CPU without a warning (it was not a request for CUDA)."""
        caplog.set_level("INFO", logger="csrm_guard.model.session")
        session = build_session(model_path, providers="auto")
        assert session.get_providers() == [CPU]
        assert not recwarn.list
        assert "no usable GPU" in caplog.text


class TestOptions:
    def test_threads_and_optimisation(self, fake_runtime, model_path):
        """Sessions get the requested intra-op threads, one inter-op thread and full graph optimisation."""
        session = build_session(model_path, providers="cpu", threads=3)
        assert session.options.intra_op_num_threads == 3
        assert session.options.inter_op_num_threads == 1
        assert session.options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL

    def test_bad_thread_count(self, model_path):
        """threads must be positive."""
        with pytest.raises(ModelError, match="threads"):
            build_session(model_path, threads=0)


class TestGraphs:
    def test_unreadable_graph(self, tmp_path):
        """A file onnxruntime cannot parse is a ModelError naming it."""
        path = tmp_path / "model.onnx"
        path.write_bytes(b"not a model")
        with pytest.raises(ModelError, match="could not load"):
            build_session(path, providers="cpu")

    def test_graph_without_contract_outputs(self, tmp_path):
        """A graph whose outputs are not violation_logit/severity_logits is refused."""
        inputs = [
            helper.make_tensor_value_info(n, TensorProto.INT64, ["b", "s"])
            for n in ("input_ids", "attention_mask", "token_type_ids")
        ]
        out = helper.make_tensor_value_info("logits", TensorProto.INT64, ["b", "s"])
        graph = helper.make_graph(
            [helper.make_node("Identity", ["input_ids"], ["logits"])], "g", inputs, [out]
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        path = tmp_path / "model.onnx"
        onnx.save(model, str(path))
        with pytest.raises(ModelError, match="lacks output"):
            build_session(path, providers="cpu")
