"""Shared fixtures: the anyio backend and a tiny random model bundle in the real bundle format (no torch).

``random_bundle`` is a session-wide bundle folder: an ONNX graph built with ``onnx.helper`` (token and
segment embeddings, masked mean-pool, a tanh layer and two linear heads producing ``violation_logit`` and
ordinal ``severity_logits`` for the taxonomy's categories), a WordPiece ``tokenizer.json`` built with
``tokenizers``, and a manifest with real sha256 hashes. ``random_bundle_factory(folder, **options)`` builds
another one, e.g. to corrupt.

``int8_kernel`` names the int8 matmul kernel onnxruntime runs the shipped (int8) bundle with on this CPU, because
its logits depend on it: ``saturating`` on x86 with AVX2 (or AVX-512BW) but no VNNI, where VPMADDUBSW adds pairs
of u8 x s8 products into int16 and saturates; ``exact`` with AVX-512 VNNI, AVX-VNNI or AMX, which accumulate in
int32; ``unknown`` elsewhere (other architectures, or no ``/proc/cpuinfo``). Outputs recorded on one kernel
differ from the other's by up to ~0.6 (clause) and ~1.3 (severity) logits on the shipped bundle.
"""

from __future__ import annotations

import hashlib
import platform
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from csrm_guard.model.manifest import FileEntry, Manifest
from csrm_guard.policy.render import TEMPLATE_VERSION, template_hash
from csrm_guard.policy.taxonomy import load_taxonomy

BundleFactory = Callable[..., Path]

_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_PUNCTUATION = list(".,:;!?'\"()[]-_/#*&%$@+=<>")


Int8Kernel = str  # "saturating" | "exact" | "unknown"
_EXACT_INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def int8_kernel() -> Int8Kernel:
    """The int8 matmul kernel class onnxruntime uses on this CPU (see the module docstring)."""
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return "unknown"
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return "unknown"
    flags = next(
        (line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), []
    )
    if _EXACT_INT8_FLAGS & set(flags):
        return "exact"
    return "saturating" if "avx2" in flags else "unknown"


@pytest.fixture(name="int8_kernel", scope="session")
def _int8_kernel() -> Int8Kernel:
    return int8_kernel()


@pytest.fixture(name="anyio_backend")
def _anyio_backend() -> str:
    """Async tests run on asyncio (the scorer's micro-batcher resolves asyncio futures)."""
    return "asyncio"


def _vocabulary(extra_words: int = 600) -> list[str]:
    taxonomy = load_taxonomy()
    text = " ".join(
        f"{c.title} {c.description} {c.severity.low} {c.severity.moderate} {c.severity.high}"
        for c in taxonomy.categories
    )
    text += " not allowed above severity rule guideline judged user assistant system standard harm categories"
    counts = Counter(re.findall(r"[a-z]+", text.lower()))
    words = [word for word, _ in counts.most_common(extra_words) if len(word) > 1]
    chars = [chr(code) for code in range(ord("a"), ord("z") + 1)] + [str(digit) for digit in range(10)]
    return [*_SPECIALS, *chars, *_PUNCTUATION, *(f"##{char}" for char in chars), *words]


def _write_tokenizer(path: Path) -> int:
    vocab = {token: index for index, token in enumerate(dict.fromkeys(_vocabulary()))}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(
        lowercase=True, clean_text=True, handle_chinese_chars=True
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.save(str(path))
    return len(vocab)


def _write_graph(path: Path, *, vocab_size: int, categories: int, hidden: int, seed: int) -> None:
    rng = np.random.default_rng(seed)

    def init(name: str, array: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)

    steps = np.abs(rng.normal(1.0, 0.3, size=(1, categories, 2)))
    offsets = np.concatenate([np.zeros((1, categories, 1)), np.cumsum(steps, axis=2)], axis=2)
    initializers = [
        init("tok_emb", rng.normal(0.0, 1.0, (vocab_size, hidden))),
        init("seg_emb", rng.normal(0.0, 0.5, (2, hidden))),
        init("w1", rng.normal(0.0, 1.0 / np.sqrt(hidden), (hidden, hidden)) * 2.0),
        init("b1", rng.normal(0.0, 0.1, hidden)),
        init("wv", rng.normal(0.0, 3.0 / np.sqrt(hidden), (hidden, 1))),
        init("bv", [-0.5]),
        init("ws", rng.normal(0.0, 3.0 / np.sqrt(hidden), (hidden, categories))),
        init("bs", rng.normal(0.0, 0.5, categories)),
        init("offsets", offsets),
        init("one", [1.0]),
        numpy_helper.from_array(np.asarray([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.asarray([2], dtype=np.int64), "axis2"),
    ]
    node = helper.make_node
    nodes = [
        node("Gather", ["tok_emb", "input_ids"], ["tok"]),
        node("Gather", ["seg_emb", "token_type_ids"], ["seg"]),
        node("Add", ["tok", "seg"], ["emb"]),
        node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        node("Mul", ["emb", "mask3"], ["masked"]),
        node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),
        node("Max", ["count", "one"], ["safe_count"]),
        node("Div", ["summed", "safe_count"], ["pooled"]),
        node("MatMul", ["pooled", "w1"], ["h0"]),
        node("Add", ["h0", "b1"], ["h1"]),
        node("Tanh", ["h1"], ["hidden"]),
        node("MatMul", ["hidden", "wv"], ["v0"]),
        node("Add", ["v0", "bv"], ["v1"]),
        node("Squeeze", ["v1", "axis1"], ["violation_logit"]),
        node("MatMul", ["hidden", "ws"], ["s0"]),
        node("Add", ["s0", "bs"], ["s1"]),
        node("Unsqueeze", ["s1", "axis2"], ["s2"]),
        node("Sub", ["s2", "offsets"], ["severity_logits"]),
    ]
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    outputs = [
        helper.make_tensor_value_info("violation_logit", TensorProto.FLOAT, ["batch"]),
        helper.make_tensor_value_info("severity_logits", TensorProto.FLOAT, ["batch", categories, 3]),
    ]
    graph = helper.make_graph(nodes, "random_csrm", inputs, outputs, initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="csrm-guard-tests"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_random_bundle(
    folder: Path, *, seed: int = 0, hidden: int = 16, manifest: dict[str, Any] | None = None
) -> Path:
    """Write a random bundle into ``folder`` (created); ``manifest`` overrides manifest fields."""
    folder.mkdir(parents=True, exist_ok=True)
    taxonomy = load_taxonomy()
    vocab_size = _write_tokenizer(folder / "tokenizer.json")
    _write_graph(
        folder / "model.onnx", vocab_size=vocab_size, categories=len(taxonomy.ids), hidden=hidden, seed=seed
    )
    files = {
        name: FileEntry(
            sha256=hashlib.sha256((folder / name).read_bytes()).hexdigest(),
            bytes=(folder / name).stat().st_size,
        )
        for name in ("model.onnx", "tokenizer.json")
    }
    fields: dict[str, Any] = {
        "model_id": "random-test",
        "model_version": "0",
        "files": files,
        "max_length": 128,
        "max_clause_tokens": 48,
        "template_version": TEMPLATE_VERSION,
        "template_hash": template_hash(),
        "taxonomy_version": taxonomy.version,
        "categories": taxonomy.ids,
        "quantization": "random-test",
        "calibration": {
            "temperature": 1.5,
            "severity_temperature": 1.2,
            "severity_bias": 0.4,
            "thresholds": {"input": 0.5, "output": 0.6},
        },
    }
    fields.update(manifest or {})
    (folder / "manifest.json").write_text(
        Manifest.model_validate(fields).model_dump_json(indent=2), encoding="utf-8"
    )
    return folder


@pytest.fixture(name="random_bundle_factory", scope="session")
def _random_bundle_factory() -> BundleFactory:
    """``factory(folder, *, seed=0, hidden=16, manifest=None) -> Path`` builds a bundle in ``folder``."""
    return build_random_bundle


@pytest.fixture(name="random_bundle", scope="session")
def _random_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random bundle folder in the real format, shared by the whole test session (do not modify it)."""
    return build_random_bundle(tmp_path_factory.mktemp("bundle") / "random")
