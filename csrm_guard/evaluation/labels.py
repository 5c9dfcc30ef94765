"""Labels that follow from a policy when a turn's severity is known in the categories it is about."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from csrm_guard.policy import Policy

__all__ = ["exceeds_policy"]


def exceeds_policy(policy: Policy, categories: Iterable[str], severity: Mapping[str, int]) -> bool:
    """Whether a turn breaks ``policy`` through one of its ``categories``.

    Args:
        policy: The policy.
        categories: The taxonomy categories the turn is in.
        severity: The turn's severity rank per category (0 none .. 3 high); every one of ``categories`` must be here.

    Returns:
        True when, in one of the categories the policy covers, the turn's severity is above what the policy allows
        (a hard negative at ``low`` violates only where the policy allows none of its category).
    """
    return any(
        c in policy.categories and severity[c] > policy.categories[c].effective_max.rank for c in categories
    )
