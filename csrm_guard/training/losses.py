"""The CSRM objective: clause BCE, cumulative (ordinal) severity BCE and a Bradley-Terry strictness term.

* Clause loss: binary cross-entropy of ``violation_logit`` against the clause label (1 = violation).
* Severity loss: for a target severity ``s`` in 0..3, the cumulative targets are ``[s >= 1, s >= 2, s >= 3]``;
  binary cross-entropy on ``severity_logits`` per category, with ``-1`` (unknown) masked out.
* Strictness loss (Bradley-Terry, margin ``m``): reward is compliance log-odds, ``r = -violation_logit``. The
  stricter clause must get the *lower* compliance, so ``loss = -log sigmoid(r_laxer - r_stricter - m)``.

Total: ``clause + severity_weight * severity + gamma * strictness``, each term averaged over the rows of its
kind
that are present in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812

__all__ = ["LossWeights", "bradley_terry_loss", "clause_loss", "combined_loss", "severity_loss"]


@dataclass(frozen=True, slots=True)
class LossWeights:
    """Weights of the three terms.

    Attributes:
        gamma: Weight of the Bradley-Terry strictness term.
        margin: Margin of the Bradley-Terry term (in logits).
        severity: Weight of the cumulative severity term.
    """

    gamma: float = 0.1
    margin: float = 0.0
    severity: float = 1.0


def clause_loss(violation_logit: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the clause head (labels 0/1, 1 = violation)."""
    return F.binary_cross_entropy_with_logits(violation_logit.float(), labels.float())


def severity_loss(severity_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cumulative binary cross-entropy of the severity head.

    Args:
        severity_logits: ``[B, C, 3]`` cumulative logits.
        targets: ``[B, C]`` severity ranks 0..3, ``-1`` where unknown (masked).

    Returns:
        The mean over known (row, category, threshold) cells; 0 when none is known.
    """
    known = targets >= 0
    thresholds = torch.arange(1, 4, device=targets.device)
    cumulative = (targets.unsqueeze(-1) >= thresholds).float()
    mask = known.unsqueeze(-1).expand_as(cumulative).float()
    cells = F.binary_cross_entropy_with_logits(severity_logits.float(), cumulative, reduction="none")
    return (cells * mask).sum() / mask.sum().clamp_min(1.0)


def bradley_terry_loss(
    stricter_logit: torch.Tensor, laxer_logit: torch.Tensor, margin: float = 0.0
) -> torch.Tensor:
    """Bradley-Terry loss on compliance rewards: the stricter clause must get the lower reward.

    Args:
        stricter_logit: Violation logits under the stricter clause.
        laxer_logit: Violation logits under the laxer clause, same transcripts.
        margin: Required reward gap.

    Returns:
        ``mean(-log sigmoid(r_laxer - r_stricter - margin))`` with ``r = -violation_logit``.
    """
    reward_stricter = -stricter_logit.float()
    reward_laxer = -laxer_logit.float()
    return -F.logsigmoid(reward_laxer - reward_stricter - margin).mean()


def combined_loss(
    violation_logit: torch.Tensor,
    severity_logits: torch.Tensor,
    batch: dict[str, torch.Tensor],
    weights: LossWeights,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The total loss of one mixed batch and its parts.

    The batch's index tensors say which rows are what: ``clause_idx`` with ``labels``, ``taxonomy_idx`` with
    ``severity``, and ``stricter_idx``/``laxer_idx`` for pairs.

    Returns:
        ``(total, parts)`` where ``parts`` holds the float value of each present term.
    """
    total = violation_logit.new_zeros((), dtype=torch.float32)
    parts: dict[str, float] = {}
    if batch["clause_idx"].numel():
        term = clause_loss(violation_logit[batch["clause_idx"]], batch["labels"])
        total, parts["clause"] = total + term, float(term.detach())
    if batch["taxonomy_idx"].numel():
        term = severity_loss(severity_logits[batch["taxonomy_idx"]], batch["severity"])
        total, parts["severity"] = total + weights.severity * term, float(term.detach())
    if batch["stricter_idx"].numel():
        term = bradley_terry_loss(
            violation_logit[batch["stricter_idx"]], violation_logit[batch["laxer_idx"]], weights.margin
        )
        total, parts["pairs"] = total + weights.gamma * term, float(term.detach())
    return total, parts
