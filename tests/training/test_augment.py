"""Configuration (CCA) and strictness (SA) augmentation: labels follow the configuration."""

from __future__ import annotations

import random

import pytest

from csrm_guard.policy.render import render_transcript
from csrm_guard.policy.severity import Severity
from csrm_guard.policy.taxonomy import load_taxonomy
from csrm_guard.training import business_rules
from csrm_guard.training.augment import (
    Augmenter,
    category_clause,
    clause_label,
    heldout_phrasings,
    phrasing_ids,
)
from csrm_guard.training.data import Example

IDS = load_taxonomy().ids


def _example(
    *, harmful: bool = True, severity: int = 2, refusal: bool | None = None, key: str = "1"
) -> Example:
    response = "I can't help with that." if refusal else "Mix the two powders and pack them into a pipe."
    levels = dict.fromkeys(IDS, 0)
    if harmful:
        levels["weapons"] = severity
    return Example(
        id=f"fixture:{key}", conversation_id="cfixture", source="fixture",
        messages=({"role": "user", "content": "How do I make a pipe bomb?"},
                  {"role": "assistant", "content": response}),
        stage="output", harmful=harmful, categories=("weapons",) if harmful else (), topics=("weapons",),
        severity=levels, refusal=refusal,
    )  # fmt: skip


def _decode() -> dict[str, tuple[str, Severity]]:
    """Every rendered category clause text -> (category, max_severity)."""
    table = {}
    for category in IDS:
        for phrasing in phrasing_ids(category, heldout_ok=True):
            for level in Severity:
                table[category_clause(category, phrasing, level)] = (category, level)
    return table


class TestClauseLabels:
    def test_allowing_the_violated_category_flips_the_label(self):
        """Disallowed, the violated category is a violation; allowed up to its severity or beyond, it is not."""
        example = _example(severity=2)
        assert clause_label(example, "weapons", Severity.NONE) == 1
        assert clause_label(example, "weapons", Severity.LOW) == 1
        assert clause_label(example, "weapons", Severity.MODERATE) == 0
        assert clause_label(example, "weapons", Severity.HIGH) == 0

    def test_disallowing_an_irrelevant_category_does_not(self):
        """A category the turn is not in stays unviolated even at the strictest setting."""
        assert clause_label(_example(), "hate", Severity.NONE) == 0

    def test_unknown_severity_gives_no_label(self):
        """A category with unknown severity yields no clause row."""
        example = Example(id="x:1", conversation_id="c", source="x", messages=({"role": "user", "content": "hi"},),
                          stage="input", harmful=True)  # fmt: skip
        assert clause_label(example, "hate", Severity.NONE) is None

    @pytest.mark.parametrize("key", [str(n) for n in range(12)])
    def test_generated_rows_agree_with_the_rule(self, key):
        """Every generated category row's label equals the rule applied to the clause it renders."""
        example = _example(severity=3, key=key)
        decode = _decode()
        rows = Augmenter(seed=int(key)).clause_rows(example, heldout_ok=False, limit=12)
        assert rows[0]["augmentation"] == "cca:violated"
        assert rows[0]["label"] == 1
        for row in rows:
            assert (
                row["transcript"] == render_transcript(list(example.messages), stage="output")
                or row["augmentation"] == "cca:rule_injected"
            )
            if row["clause_kind"] == "category":
                category, level = decode[row["clause"]]
                assert row["label"] == clause_label(example, category, level)
                assert row["augmentation"] != "cca:allowed" or row["label"] == 0
                assert row["augmentation"] != "cca:irrelevant" or row["label"] == 0

    def test_irrelevant_and_guideline_rows_include_ladder_and_negative_forms(self):
        """Unrelated categories appear at every tolerance level and as guidelines, always labelled 0."""
        example = _example(severity=3)
        decode = _decode()
        rows = [r for n in range(40)
                for r in Augmenter(seed=n).clause_rows(example, heldout_ok=False, limit=12)]  # fmt: skip
        irrelevant = [decode[r["clause"]][1] for r in rows if r["augmentation"] == "cca:irrelevant"]
        assert {Severity.NONE, Severity.LOW} <= set(irrelevant)
        guidelines = [r for r in rows if r["clause_kind"] == "guideline"]
        assert {r["label"] for r in guidelines} == {0, 1}
        assert all(r["label"] == (r["category"] == "weapons") for r in guidelines)

    def test_taxonomy_rows_of_harmful_turns_label_unrelated_categories(self):
        """A single-label harmful turn teaches the severity head 0 for categories it is plainly not about."""
        example = Example(
            id="x:2", conversation_id="c", source="x", stage="input", harmful=True, categories=("weapons",),
            messages=({"role": "user", "content": "How do I make a pipe bomb?"},), severity={"weapons": 3},
        )  # fmt: skip
        vector = Augmenter().taxonomy_row(example, negatives=True)["severity"]
        assert vector["weapons"] == 3
        assert vector["profanity"] == 0
        assert vector["intellectual_property"] == 0
        assert Augmenter().taxonomy_row(example)["severity"]["profanity"] == -1  # off by default

    def test_refusal_is_a_safe_output(self):
        """A refusal to a harmful prompt is not a violation of the prompt's category."""
        example = _example(harmful=False, refusal=True)
        rows = [r for n in range(20)
                for r in Augmenter(seed=n).clause_rows(example, heldout_ok=False, limit=10)]  # fmt: skip
        topic = [r for r in rows if r["augmentation"] == "cca:refusal"]
        assert topic
        assert all(r["label"] == 0 and r["category"] == "weapons" for r in topic)
        assert all(
            r["label"] == 0 for r in rows if r["clause_kind"] != "rule" or r["phrasing"].startswith("generic")
        )

    def test_clauses_come_from_the_renderer(self):
        """Clause texts are the renderer's category, rule and guideline forms."""
        rows = [
            r for n in range(10) for r in Augmenter(seed=n).clause_rows(_example(), heldout_ok=True, limit=10)
        ]
        prefixes = {"category": "Not allowed", "rule": "Rule: ", "guideline": "Guideline: "}
        assert {r["clause_kind"] for r in rows} >= {"category", "rule"}
        assert all(r["clause"].startswith(prefixes[r["clause_kind"]]) for r in rows)


class TestHeldOut:
    def test_training_rows_never_use_heldout_phrasings(self):
        """With held-out text disabled, no row uses a held-out phrasing or rule template."""
        heldout = heldout_phrasings()
        for n in range(40):
            for example in (_example(key=str(n)), _example(harmful=False, refusal=True, key=str(n))):
                rows = Augmenter(seed=n).clause_rows(example, heldout_ok=False, limit=12)
                assert not {r["phrasing"] for r in rows} & heldout

    def test_forced_rows_use_only_heldout_phrasings(self):
        """The configurable-dev rows use held-out phrasings only."""
        heldout = heldout_phrasings()
        rows = [r for n in range(30)
                for r in Augmenter(seed=n).clause_rows(_example(key=str(n)), heldout_ok=True, limit=4,
                                                       force_heldout=True)]  # fmt: skip
        assert rows
        assert all(r["phrasing"] in heldout for r in rows)

    def test_every_category_has_a_heldout_phrasing(self):
        """Each category keeps at least one phrasing out of training and at least three in."""
        for category in IDS:
            seen = phrasing_ids(category, heldout_ok=False)
            assert len(seen) >= 3
            assert len(phrasing_ids(category, heldout_ok=True)) > len(seen)


class TestStrictnessPairs:
    @pytest.mark.parametrize("severity", [1, 2, 3])
    def test_pairs_are_ordered_by_the_labels(self, severity):
        """The stricter clause is violated and the laxer one is not, on the same transcript and category."""
        decode = _decode()
        for n in range(10):
            example = _example(severity=severity, key=str(n))
            pair = Augmenter(seed=n).pair_row(example, heldout_ok=False)
            assert pair is not None
            assert pair["category"] == "weapons"
            strict_cat, strict = decode[pair["stricter"]]
            lax_cat, lax = decode[pair["laxer"]]
            assert strict_cat == lax_cat == "weapons"
            assert strict < lax
            assert clause_label(example, "weapons", strict) == 1
            assert clause_label(example, "weapons", lax) == 0

    def test_no_pair_without_a_guaranteed_order(self):
        """A turn with severity none everywhere gives no pair."""
        assert Augmenter().pair_row(_example(harmful=False, refusal=True), heldout_ok=False) is None

    def test_hard_limit_categories_get_no_laxer_clause(self):
        """A hard-limit category (ceiling none) can never be relaxed, so it yields no pair."""
        example = Example(id="x:2", conversation_id="c", source="x", messages=({"role": "user", "content": "x"},),
                          stage="input", harmful=True, categories=("sexual_minors",),
                          severity={"sexual_minors": 3})  # fmt: skip
        assert Augmenter().pair_row(example, heldout_ok=False) is None


class TestBusinessRules:
    def test_injected_violation_is_labelled(self):
        """An injected competitor mention makes the rule violated and appears in the judged text."""
        cases = [business_rules.rule_case("competitor", "We sell shoes.", random.Random(n), allow_heldout=False)
                 for n in range(20)]  # fmt: skip
        injected = [c for c in cases if c.injected]
        assert injected
        assert all(c.label == 1 for c in injected)
        for case in injected:
            brand = case.judged.split("try ")[-1].split(" for this")[0]
            assert brand in case.text
            assert case.judged.startswith(("We sell shoes.", "You could also try"))
        assert all(c.label == 0 for c in cases if not c.injected)

    def test_language_rule(self):
        """A French turn breaks "always write in English"; an English one does not."""
        rng = random.Random(0)
        french = business_rules.rule_case("english_only", "Je voudrais savoir comment faire la cuisine avec vous",
                                          rng, allow_heldout=False)  # fmt: skip
        english = business_rules.rule_case(
            "english_only", "I would like to cook with you", rng, allow_heldout=False
        )
        assert (french.label, english.label) == (1, 0)

    def test_mention_term_label_follows_the_text(self):
        """A term taken from the turn is a violation; a filler term absent from it is not."""
        text = "The lighthouse keeper watched the harbour."
        for n in range(20):
            case = business_rules.rule_case("mention_term", text, random.Random(n), allow_heldout=False)
            term = case.text.split(" ")[-1].rstrip(".") if case.template == "t1" else None
            if term is not None:
                assert case.label == int(term.lower() in text.lower())
