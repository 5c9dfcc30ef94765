"""Tests for the CSRM objective and the ordinal severity head."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from csrm_guard.training.losses import (  # noqa: E402
    LossWeights,
    bradley_terry_loss,
    combined_loss,
    severity_loss,
)


class TestBradleyTerry:
    def test_lower_when_stricter_gets_higher_violation_logit(self):
        """The loss is small when the stricter clause gets the higher violation logit (lower compliance)."""
        right = bradley_terry_loss(torch.tensor([3.0]), torch.tensor([-3.0]))
        wrong = bradley_terry_loss(torch.tensor([-3.0]), torch.tensor([3.0]))
        assert right < 0.1 < wrong

    def test_gradient_pushes_stricter_up(self):
        """Gradient descent raises the stricter clause's violation logit and lowers the laxer one's."""
        stricter = torch.zeros(1, requires_grad=True)
        laxer = torch.zeros(1, requires_grad=True)
        bradley_terry_loss(stricter, laxer).backward()
        assert stricter.grad is not None
        assert laxer.grad is not None
        assert stricter.grad.item() < 0 < laxer.grad.item()

    def test_margin_raises_loss(self):
        """A positive margin demands a larger gap, so the same logits cost more."""
        s, lx = torch.tensor([1.0]), torch.tensor([0.0])
        assert bradley_terry_loss(s, lx, margin=1.0) > bradley_terry_loss(s, lx)


def test_severity_loss_masks_unknown_targets():
    """Cells with target -1 do not change the loss."""
    logits = torch.randn(2, 3, 3)
    known = torch.tensor([[2, 0, 1], [3, 1, 0]])
    masked = known.clone()
    masked[0, 1] = -1
    perturbed = logits.clone()
    perturbed[0, 1] += 100.0
    assert torch.isclose(severity_loss(logits, masked), severity_loss(perturbed, masked) * 1.0)
    assert not torch.isclose(severity_loss(logits, known), severity_loss(perturbed, known))


def test_combined_loss_weights_pairs_by_gamma():
    """The pair term enters the total multiplied by gamma."""
    violation = torch.tensor([2.0, -1.0, 0.5])
    severity = torch.zeros(3, 2, 3)
    empty = torch.tensor([], dtype=torch.long)
    batch = {
        "clause_idx": torch.tensor([0]),
        "labels": torch.tensor([1.0]),
        "taxonomy_idx": empty,
        "severity": torch.zeros(0, 2, dtype=torch.long),
        "stricter_idx": torch.tensor([1]),
        "laxer_idx": torch.tensor([2]),
    }
    low, parts = combined_loss(violation, severity, batch, LossWeights(gamma=0.1))
    high, _ = combined_loss(violation, severity, batch, LossWeights(gamma=1.0))
    assert torch.isclose(high - low, torch.tensor(0.9 * parts["pairs"]))


def test_severity_head_is_non_increasing(tiny_model, tokenizer):
    """Cumulative severity logits never increase from >=low to >=high, whatever the input."""
    torch.manual_seed(1)
    ids = torch.randint(5, tokenizer.get_vocab_size(), (8, 12))
    with torch.no_grad():
        for layer in (tiny_model.severity_base, tiny_model.severity_deltas):
            layer.weight.normal_(0, 5.0)
        _, severity = tiny_model(ids, torch.ones_like(ids), torch.zeros_like(ids))
    assert severity.shape == (8, tiny_model.num_categories, 3)
    assert torch.all(severity[..., 1:] <= severity[..., :-1])
