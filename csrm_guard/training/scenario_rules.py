"""Hand-written business-rule scenarios: semantic custom rules with violating and on-topic compliant turns.

Each file in ``csrm_guard/training/scenarios/`` holds *families*: one rule in four phrasings, user prompts, judged
turns that break the rule and judged turns on the same topic that follow it (hard negatives). This module validates
the files and turns them into clause rows shaped like every other row of ``<split>/clauses.jsonl``.

Whole families are held out: a family's ``split`` says where all of its rows go, so dev and test see rules that were
never trained on. Within training families one phrasing per family (``heldout``) never reaches a training row.
``scn:other_rule`` rows pair a transcript with the rule of an unrelated family of the same stage (label 0), so the
model has to read the rule rather than the transcript alone. ``scn:foreign`` rows (:func:`foreign_rows`) pair a
family's rule with conversations from the shared data sets, harmful or not, of either stage (label 0): a request for
a weapon recipe is harmful, but it does not break "scripts must not feature real people". Scope families (``scope:
true``, the rule limits what users may ask about or replies may cover, so any off-topic turn breaks it) get no such
rows, and never lend their rule to another family's ``scn:other_rule`` rows.

A family may also list ``flipped`` phrasings: the opposite rule, one every violating turn follows and every compliant
turn breaks ("every reply must promise a refund" beside "do not promise refunds"). Training families give
``scn:flipped`` rows with the same turns under it and the labels swapped, so the label follows what the rule asks
rather than what the turn talks about; a model that scores "talks about the rule's subject" reads duties ("the reply
must tell them to call emergency services") backwards. Flipped rules are never lent to other families.

*Narrowed-category* families (``category`` set) hold four phrasings of a service's rewritten description of a
standard category that exempts part of it ("quoting a slur in order to moderate it is not covered"):
violating turns are what the rewrite still covers, above the family's ``max_severity``; compliant turns are what it
exempts, which a standard filter would flag. Their rows are category clauses rendered as a policy with that
description renders them. They get no ``scn:other_rule`` rows (another family's rule on their turns, or their
description on another family's turns, has no known label), and their ``scn:foreign`` rows only use conversations
whose severity in the category is known to be at most ``max_severity``: narrowing a category never makes a turn
violate it.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from csrm_guard.errors import DataError
from csrm_guard.policy import CategoryRule, Severity
from csrm_guard.policy.render import render_category_clause, render_rule_clause, render_transcript
from csrm_guard.policy.taxonomy import load_taxonomy
from csrm_guard.training._yaml_files import validated, yaml_files
from csrm_guard.training.data import SPLITS, Example, conversation_id

__all__ = [
    "SOURCE",
    "FamilySpec",
    "ScenarioFamily",
    "foreign_rows",
    "load_families",
    "scenario_heldout",
    "scenario_rows",
]

logger = logging.getLogger(__name__)

SOURCE = "scenarios"
"""The ``source`` of every scenario clause row."""

_PHRASINGS = ("t1", "t2", "t3", "t4")
_SLOT = re.compile(r"\{(\w+)\}")
_FAMILY_ID = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")
# Violated/compliant rows per family; one other-rule row is added per _OTHER_EVERY of them. One per five (not
# three) keeps training positives at ~42 % rather than 37.5 %.
_BASE_ROWS = {"train": 100, "dev": 34, "test": 34}
_OTHER_EVERY = 5
# Flipped-rule rows per family with ``flipped`` phrasings; training only, so dev and test (and the threshold fit on
# dev) measure the same rows with or without them.
_FLIPPED_ROWS = {"train": 24, "dev": 0, "test": 0}
_ATTEMPTS = 4  # draws per wanted row before a small family gives up on finding unseen combinations

_Text = Field(min_length=1)


class FamilySpec(BaseModel):
    """One family as written in a scenario file (see the file format in the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    domain: str = _Text
    stage: Literal["input", "output"]
    split: Literal["train", "dev", "test"]
    slots: dict[str, list[str]] = Field(default_factory=dict)
    rules: dict[str, str]
    heldout: list[str] = Field(min_length=1, max_length=1)
    prompts: list[str] = Field(default_factory=list)
    violating: list[str] = Field(min_length=4)
    compliant: list[str] = Field(min_length=4)
    related: list[str] = Field(default_factory=list)
    flipped: list[str] = Field(default_factory=list)
    scope: bool = False
    category: str | None = None
    max_severity: Severity = Severity.NONE

    @field_validator("rules")
    @classmethod
    def _four_rules(cls, rules: dict[str, str]) -> dict[str, str]:
        if sorted(rules) != list(_PHRASINGS):
            raise ValueError(f"needs exactly the phrasings {', '.join(_PHRASINGS)}, got {sorted(rules)}")
        if any(not text.strip() for text in rules.values()):
            raise ValueError("a phrasing is empty")
        return rules

    @field_validator("slots")
    @classmethod
    def _slot_values(cls, slots: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, values in slots.items():
            if not values or any(not str(v).strip() for v in values):
                raise ValueError(f"slot {name!r} needs non-empty values")
        return slots

    @model_validator(mode="after")
    def _consistent(self) -> FamilySpec:
        # Input families judge the user turn alone, so their prompts are optional (the format says so).
        if self.stage == "output" and len(self.prompts) < 4:
            raise ValueError(f"an output family needs at least 4 prompts, got {len(self.prompts)}")
        if self.heldout[0] not in self.rules:
            raise ValueError(f"heldout phrasing {self.heldout[0]!r} is not one of the rules")
        if self.flipped and (self.scope or self.category is not None):
            raise ValueError(
                "flipped rules are only for plain rule families (not scope or narrowed-category ones)"
            )
        if self.category is not None:
            self._check_category(self.category)
        elif self.max_severity is not Severity.NONE:
            raise ValueError("max_severity is only for narrowed-category families (set category)")
        for field in ("rules", "flipped", "prompts", "violating", "compliant"):
            value = getattr(self, field)
            for key, text in value.items() if isinstance(value, dict) else enumerate(value):
                _check_text(text, self.slots, f"{field}.{key}")
        return self

    def _check_category(self, category: str) -> None:
        known = {c.id: c for c in load_taxonomy().categories}
        if category not in known:
            raise ValueError(f"category {category!r} is not a taxonomy category (one of {', '.join(known)})")
        if self.scope:
            raise ValueError("a narrowed-category family cannot also be a scope family")
        ceiling = known[category].ceiling
        if self.max_severity.rank > ceiling.rank:
            raise ValueError(
                f"max_severity {self.max_severity.value!r} is above {category!r}'s ceiling {ceiling.value!r}"
            )
        if self.max_severity is Severity.HIGH:
            raise ValueError("max_severity 'high' leaves nothing to violate")


def _check_text(text: str, slots: Mapping[str, list[str]], where: str) -> None:
    if not text.strip():
        raise ValueError(f"{where} is empty")
    undefined = sorted(set(_SLOT.findall(text)) - set(slots))
    if undefined:
        raise ValueError(f"{where} uses undefined slot(s) {undefined}")
    if "{" in _SLOT.sub("", text) or "}" in _SLOT.sub("", text):
        raise ValueError(f"{where} has a brace that is not a {{slot}} placeholder")


class _File(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal["1"]
    families: dict[str, FamilySpec] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class ScenarioFamily:
    """A validated family with its id and the file it came from.

    Attributes:
        id: The family id (unique across all files).
        file: The file name it was read from.
        spec: The family as written.
    """

    id: str
    file: str
    spec: FamilySpec

    def phrasings(self, *, heldout_ok: bool) -> list[str]:
        """The phrasing ids usable in a row (the held-out one only when ``heldout_ok``)."""
        return [t for t in _PHRASINGS if heldout_ok or t not in self.spec.heldout]


def _default_folder() -> Traversable:
    return resources.files("csrm_guard.training").joinpath("scenarios")


def _parse(entry: Traversable) -> dict[str, FamilySpec]:
    return validated(entry, _File, "families", "family").families


def load_families(folder: Path | Traversable | None = None) -> dict[str, ScenarioFamily]:
    """Load and validate every ``*.yaml`` family file in ``folder``.

    Args:
        folder: The folder to read (default: the ``scenarios`` folder shipped in the package).

    Returns:
        The families by id, in id order.

    Raises:
        DataError: When a file is not valid YAML or breaks the format (the message names the file, the family and
            the field), when a family id appears twice across files, or when ``related`` names an unknown family.
    """
    root = folder if folder is not None else _default_folder()
    families: dict[str, ScenarioFamily] = {}
    for entry in yaml_files(root):
        for family_id, spec in _parse(entry).items():
            if not _FAMILY_ID.match(family_id):
                raise DataError(
                    f"family {family_id!r}: id must be snake_case with a domain prefix", source=entry.name
                )
            if family_id in families:
                raise DataError(
                    f"family {family_id!r} is also defined in {families[family_id].file}", source=entry.name
                )
            families[family_id] = ScenarioFamily(family_id, entry.name, spec)
    for family in families.values():
        unknown = sorted(set(family.spec.related) - set(families))
        if unknown:
            raise DataError(
                f"family {family.id!r}, field related: unknown families {unknown}", source=family.file
            )
    if not families:
        logger.warning("no scenario families found in %s", root)
    return dict(sorted(families.items()))


def scenario_heldout(families: Mapping[str, ScenarioFamily] | None = None) -> frozenset[str]:
    """Phrasing ids that must never appear in training rows: held-out phrasings and every dev/test family's."""
    families = load_families() if families is None else families
    return frozenset(
        f"scenario/{f.id}/{t}"
        for f in families.values()
        for t in _PHRASINGS
        if f.spec.split != "train" or t in f.spec.heldout
    )


def _rng(*parts: object) -> random.Random:
    return random.Random(":".join(map(str, parts)))  # noqa: S311 - data sampling, not crypto


def _fill(text: str, values: Mapping[str, str]) -> str:
    return _SLOT.sub(lambda m: values[m.group(1)], text)


def _draw_slots(family: ScenarioFamily, rng: random.Random) -> dict[str, str]:
    return {name: rng.choice(values) for name, values in sorted(family.spec.slots.items())}


def _transcript(family: ScenarioFamily, prompt: str, judged: str) -> str:
    if family.spec.stage == "input":
        return render_transcript([{"role": "user", "content": judged}], stage="input")
    return render_transcript([{"role": "user", "content": prompt}], stage="output", response=judged)


class _Clause(NamedTuple):
    """A drawn phrasing of a family, rendered as the clause the model reads."""

    phrasing: str
    text: str
    kind: Literal["rule", "category"]
    category: str | None


def _row(
    family: ScenarioFamily,
    key: str,
    clause: _Clause,
    transcript: str,
    *,
    label: int,
    aug: str,
    borrowed: Example | None = None,
) -> dict[str, Any]:
    """A clause row; a ``borrowed`` example's transcript keeps that example's conversation id and stage."""
    return {
        "id": f"scenario:{family.id}:{key}",
        "conversation_id": borrowed.conversation_id if borrowed else conversation_id(transcript),
        "source": SOURCE,
        "stage": borrowed.stage if borrowed else family.spec.stage,
        "clause": clause.text,
        "clause_kind": clause.kind,
        "category": clause.category,
        "transcript": transcript,
        "label": label,
        "phrasing": clause.phrasing,
        "augmentation": aug,
    }


def _rule(
    family: ScenarioFamily, rng: random.Random, values: Mapping[str, str], *, heldout_ok: bool
) -> _Clause:
    tid = rng.choice(family.phrasings(heldout_ok=heldout_ok))
    phrasing, text = f"scenario/{family.id}/{tid}", _fill(family.spec.rules[tid], values)
    category = family.spec.category
    if category is None:
        return _Clause(phrasing, render_rule_clause(text), "rule", None)
    rule = CategoryRule(max_severity=family.spec.max_severity, description=text)
    return _Clause(phrasing, render_category_clause(category, rule), "category", category)


def _base_rows(family: ScenarioFamily, seed: int) -> list[dict[str, Any]]:
    """Violated/compliant rows (alternating labels), skipping (rule, transcript) pairs already drawn."""
    heldout_ok = family.spec.split != "train"
    return _drawn_rows(
        family,
        (seed, family.id),
        _BASE_ROWS[family.spec.split],
        lambda rng, values: _rule(family, rng, values, heldout_ok=heldout_ok),
        flipped=False,
    )


def _flipped_rows(family: ScenarioFamily, seed: int) -> list[dict[str, Any]]:
    """``scn:flipped`` rows: the family's turns under its opposite rule, with the labels swapped.

    A flipped rule is one every violating turn follows and every compliant turn breaks ("every reply must promise a
    refund"), so the same transcript is labelled by what the rule asks, not by what the turn talks about.
    """
    spec = family.spec

    def flipped_rule(rng: random.Random, values: Mapping[str, str]) -> _Clause:
        index = rng.randrange(len(spec.flipped))
        text = render_rule_clause(_fill(spec.flipped[index], values))
        return _Clause(f"scenario/{family.id}/flipped{index + 1}", text, "rule", None)

    wanted = _FLIPPED_ROWS[spec.split] if spec.flipped else 0
    return _drawn_rows(family, (seed, family.id, "flipped"), wanted, flipped_rule, flipped=True)


def _drawn_rows(
    family: ScenarioFamily,
    key: tuple[object, ...],
    wanted: int,
    draw_clause: Callable[[random.Random, Mapping[str, str]], _Clause],
    *,
    flipped: bool,
) -> list[dict[str, Any]]:
    """``wanted`` rows with alternating labels, skipping (clause, transcript) pairs already drawn.

    Label 1 takes a violating turn, or a compliant one under a ``flipped`` rule; label 0 the other list.
    """
    spec = family.spec
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for i in range(wanted * _ATTEMPTS):
        if len(rows) == wanted:
            break
        rng = _rng(*key, i)
        label = 1 - len(rows) % 2
        values = _draw_slots(family, rng)
        judged = _fill(rng.choice(spec.violating if label != flipped else spec.compliant), values)
        prompt = _fill(rng.choice(spec.prompts), values) if spec.stage == "output" else ""
        transcript = _transcript(family, prompt, judged)
        clause = draw_clause(rng, values)
        if (clause.text, transcript) in seen:
            continue
        seen.add((clause.text, transcript))
        if flipped:
            rows.append(_row(family, f"f{len(rows):03d}", clause, transcript, label=label, aug="scn:flipped"))
        else:
            aug = "scn:violated" if label else "scn:compliant"
            rows.append(_row(family, f"{len(rows):03d}", clause, transcript, label=label, aug=aug))
    if wanted and len(rows) < wanted:
        logger.info("scenario family %s: %d distinct rows (wanted %d)", family.id, len(rows), wanted)
    return rows


def _unrelated(family: ScenarioFamily, families: Mapping[str, ScenarioFamily]) -> list[ScenarioFamily]:
    """Same-stage families whose rules this family's turns cannot break: neither lists the other as related.

    Training rows only borrow training families' rules; dev/test rows may also borrow their own split's.
    Narrowed-category families neither lend nor borrow (module docstring). Scope families borrow but never lend:
    any off-topic turn breaks a scope rule, so another family's turn under it has no known label of 0.
    """
    if family.spec.category is not None:
        return []
    splits = {"train", family.spec.split}
    return [
        other
        for other in families.values()
        if other.id != family.id
        and other.spec.category is None
        and not other.spec.scope
        and other.spec.stage == family.spec.stage
        and other.spec.split in splits
        and other.id not in family.spec.related
        and family.id not in other.spec.related
    ]


def _family_rows(
    family: ScenarioFamily, families: Mapping[str, ScenarioFamily], seed: int
) -> list[dict[str, Any]]:
    base = _base_rows(family, seed)
    rows = list(base)
    candidates = _unrelated(family, families)
    for j in range(0, len(base), _OTHER_EVERY):
        if not candidates:
            break
        rng = _rng(seed, family.id, "other", j)
        other = rng.choice(candidates)
        rule = _rule(other, rng, _draw_slots(other, rng), heldout_ok=family.spec.split != "train")
        transcript = str(base[j]["transcript"])
        rows.append(_row(family, f"{len(rows):03d}", rule, transcript, label=0, aug="scn:other_rule"))
    return rows + _flipped_rows(family, seed)


def scenario_rows(seed: int, *, folder: Path | Traversable | None = None) -> dict[str, list[dict[str, Any]]]:
    """Clause rows from every scenario family, keyed by split (``train``, ``dev``, ``test``).

    Args:
        seed: The build seed; the same seed and files give the same rows.
        folder: The folder of family files (default: the shipped ``scenarios`` folder).

    Returns:
        ``{split: rows}`` with rows in id order.

    Raises:
        DataError: When a file is invalid, or a held-out phrasing or a dev/test family reached a training row.
    """
    families = load_families(folder)
    out: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for family in families.values():
        out[family.spec.split].extend(_family_rows(family, families, seed))
    _check_train(out["train"], families)
    return out


def foreign_rows(
    examples: Iterable[Example],
    seed: int,
    *,
    per_family: int,
    folder: Path | Traversable | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """``scn:foreign`` rows: each non-scope family's rule over ``per_family`` conversations of its own split (label 0).

    The conversations are English examples of the shared data sets and the hand-written hard negatives and harmful
    examples, drawn without regard to stage or harm, so the model learns that a custom rule is broken by what it
    forbids, not by harm in general.

    Args:
        examples: Candidate conversations (every split; each family draws from its own).
        seed: The build seed; the same seed, examples and files give the same rows.
        per_family: Rows per family.
        folder: The folder of family files (default: the shipped ``scenarios`` folder).

    Returns:
        ``{split: rows}`` with rows in id order.
    """
    families = load_families(folder)
    pools: dict[str, list[Example]] = {split: [] for split in SPLITS}
    for example in examples:
        if example.lang == "en":
            pools[example.split].append(example)
    out: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for family in families.values():
        pool = _foreign_pool(family, pools[family.spec.split])
        if family.spec.scope or not pool:
            continue
        rng = _rng(seed, family.id, "foreign")
        for n, example in enumerate(rng.sample(pool, min(per_family, len(pool)))):
            rule = _rule(family, rng, _draw_slots(family, rng), heldout_ok=family.spec.split != "train")
            transcript = render_transcript(list(example.messages), stage=example.stage)
            out[family.spec.split].append(
                _row(family, f"x{n:03d}", rule, transcript, label=0, aug="scn:foreign", borrowed=example)
            )
    _check_train(out["train"], families)
    return out


def _foreign_pool(family: ScenarioFamily, pool: list[Example]) -> list[Example]:
    """The conversations whose label under the family's clause is known to be 0 (module docstring)."""
    category = family.spec.category
    if category is None:
        return pool
    ceiling = family.spec.max_severity.rank
    return [e for e in pool if 0 <= e.severity.get(category, -1) <= ceiling]


def _check_train(rows: Iterable[Mapping[str, Any]], families: Mapping[str, ScenarioFamily]) -> None:
    heldout = scenario_heldout(families)
    rows = list(rows)
    leaked = sorted({str(r["phrasing"]) for r in rows if r["phrasing"] in heldout})
    leaked += sorted({fid for r in rows if families[fid := str(r["id"]).split(":")[1]].spec.split != "train"})
    if leaked:
        raise DataError(f"held-out scenario phrasings or families reached training rows: {leaked[:5]}")
