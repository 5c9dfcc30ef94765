"""Tests for the hand-written business-rule scenarios: file validation and clause-row generation."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from csrm_guard.errors import DataError
from csrm_guard.policy import CategoryRule, Severity
from csrm_guard.policy.render import render_category_clause, render_rule_clause, render_transcript
from csrm_guard.training.data import Example, conversation_id
from csrm_guard.training.scenario_rules import foreign_rows, load_families, scenario_heldout, scenario_rows

ROW_KEYS = {
    "id",
    "conversation_id",
    "source",
    "stage",
    "clause",
    "clause_kind",
    "category",
    "transcript",
    "label",
    "phrasing",
    "augmentation",
}


def _family(**changes: Any) -> dict[str, Any]:
    family: dict[str, Any] = {
        "domain": "test shop",
        "stage": "output",
        "split": "train",
        "slots": {"shop": ["Acme Widgets", "Bolt Supply"]},
        "rules": {f"t{i}": f"Do not promise refunds at {{shop}} (phrasing {i})." for i in range(1, 5)},
        "heldout": ["t4"],
        "prompts": [f"Refund my order {i} from {{shop}}." for i in range(4)],
        "violating": [f"Your refund {i} is approved." for i in range(4)],
        "compliant": [f"The returns team will review request {i}." for i in range(4)],
        "related": [],
    }
    family.update(changes)
    return family


def _write(folder: Path, name: str, families: dict[str, Any]) -> None:
    (folder / name).write_text(yaml.safe_dump({"version": "1", "families": families}), encoding="utf-8")


@pytest.fixture(name="rows", scope="module")
def _rows() -> dict[str, list[dict[str, Any]]]:
    return scenario_rows(13)


class TestShippedFiles:
    def test_every_shipped_file_loads(self) -> None:
        """The packaged scenario files validate and part1 holds 20 families over both stages and all splits."""
        families = load_families()
        part1 = [f for f in families.values() if f.file == "part1.yaml"]
        assert len(part1) == 20
        assert {f.spec.stage for f in part1} == {"input", "output"}
        assert {f.spec.split for f in part1} == {"train", "dev", "test"}

    def test_rows_have_the_clause_row_fields(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        """Every row has the clause-row fields, a rendered rule (or narrowed category) clause and the source."""
        families = load_families()
        for split_rows in rows.values():
            for row in split_rows:
                assert set(row) == ROW_KEYS
                assert row["source"] == "scenarios"
                category = families[row["id"].split(":")[1]].spec.category
                assert (row["clause_kind"], row["category"]) == (
                    "rule" if category is None else "category",
                    category,
                )
                if category is None:
                    assert row["clause"].startswith(render_rule_clause("X")[:-2])
                assert row["transcript"].count("[judged]") == 1
        assert {r["category"] for split_rows in rows.values() for r in split_rows} > {
            None,
            "drugs",
            "violence",
        }

    def test_generation_is_deterministic(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        """The same seed gives identical rows and another seed gives different ones."""
        assert scenario_rows(13) == rows
        assert scenario_rows(14)["train"] != rows["train"]

    def test_train_holds_no_heldout_phrasing_or_family(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        """No training row uses a held-out phrasing or comes from (or borrows the rule of) a dev/test family."""
        families = load_families()
        heldout = scenario_heldout(families)
        for row in rows["train"]:
            assert row["phrasing"] not in heldout
            assert families[row["id"].split(":")[1]].spec.split == "train"
            assert families[row["phrasing"].split("/")[1]].spec.split == "train"
        assert any(r["phrasing"] in heldout for r in rows["dev"] + rows["test"])

    def test_train_labels_are_balanced(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        """Violating rows make up between 40 % and 60 % of the training rows."""
        share = sum(r["label"] for r in rows["train"]) / len(rows["train"])
        assert 0.4 <= share <= 0.6

    def test_other_rule_rows_never_pair_related_families(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        """An other-rule negative borrows the rule of a different, unrelated family of the same stage."""
        families = load_families()
        other_rows = [
            r for split_rows in rows.values() for r in split_rows if r["augmentation"] == "scn:other_rule"
        ]
        assert other_rows
        for row in other_rows:
            own, other = families[row["id"].split(":")[1]], families[row["phrasing"].split("/")[1]]
            assert own.id != other.id
            assert own.spec.stage == other.spec.stage == row["stage"]
            assert other.id not in own.spec.related
            assert own.id not in other.spec.related
            assert row["label"] == 0


class TestMalformedFiles:
    def test_missing_field_names_file_and_family(self, tmp_path: Path) -> None:
        """A family without ``compliant`` is a DataError naming the file, the family and the field."""
        family = _family()
        del family["compliant"]
        _write(tmp_path, "bad.yaml", {"shop_refunds": family})
        with pytest.raises(DataError, match=r"bad\.yaml.*'shop_refunds'.*compliant"):
            load_families(tmp_path)

    def test_undefined_slot_names_file_and_family(self, tmp_path: Path) -> None:
        """A placeholder without a slot definition is a DataError naming the file, family and slot."""
        family = _family(violating=["Your refund at {store} is approved.", *_family()["violating"][1:]])
        _write(tmp_path, "slots.yaml", {"shop_refunds": family})
        with pytest.raises(DataError, match=r"slots\.yaml.*'shop_refunds'.*store"):
            load_families(tmp_path)

    def test_duplicate_id_across_files_names_both(self, tmp_path: Path) -> None:
        """A family id defined in two files is a DataError naming both files and the family."""
        _write(tmp_path, "a.yaml", {"shop_refunds": _family()})
        _write(tmp_path, "b.yaml", {"shop_refunds": copy.deepcopy(_family())})
        with pytest.raises(DataError, match=r"b\.yaml.*'shop_refunds'.*a\.yaml"):
            load_families(tmp_path)

    def test_wrong_rule_count_is_rejected(self, tmp_path: Path) -> None:
        """A family with three phrasings instead of four is a DataError."""
        family = _family(rules={f"t{i}": "Do not promise refunds." for i in range(1, 4)})
        _write(tmp_path, "rules.yaml", {"shop_refunds": family})
        with pytest.raises(DataError, match=r"rules\.yaml.*'shop_refunds'.*rules"):
            load_families(tmp_path)

    def test_extra_key_is_rejected(self, tmp_path: Path) -> None:
        """An unknown key in a family is a DataError naming it."""
        _write(tmp_path, "extra.yaml", {"shop_refunds": _family(notes="hi")})
        with pytest.raises(DataError, match=r"extra\.yaml.*'shop_refunds'.*notes"):
            load_families(tmp_path)


def test_folder_parameter_generates_rows(tmp_path: Path) -> None:
    """A folder of valid files yields rows whose slots are filled consistently within each row."""
    _write(tmp_path, "one.yaml", {"shop_refunds": _family(), "shop_other_rule": _family()})
    rows = scenario_rows(3, folder=tmp_path)["train"]
    assert rows
    assert not rows[0]["clause"].count("{")
    for row in rows:
        if row["augmentation"] != "scn:other_rule":
            shop = "Acme Widgets" if "Acme Widgets" in row["clause"] else "Bolt Supply"
            assert shop in row["transcript"]


def _examples(count: int, *, lang: str = "en") -> list[Example]:
    """Input and output examples, harmful and not, with prompts numbered so their splits vary."""
    examples = []
    for n in range(count):
        prompt = f"question number {n} about something ({lang})"
        messages: tuple[dict[str, str], ...] = ({"role": "user", "content": prompt},)
        stage = "input" if n % 2 else "output"
        if stage == "output":
            messages = (*messages, {"role": "assistant", "content": f"answer {n}"})
        examples.append(
            Example(
                id=f"src:{lang}{n}",
                conversation_id=conversation_id(prompt),
                source="src",
                messages=messages,
                stage=stage,
                harmful=n % 3 == 0,
                lang=lang,
            )
        )
    return examples


class TestForeignRows:
    @pytest.fixture(name="folder")
    def _folder(self, tmp_path: Path) -> Path:
        _write(
            tmp_path,
            "one.yaml",
            {
                "shop_refunds": _family(),
                "shop_topics_scope": _family(stage="input", scope=True),
                "shop_dev_rule": _family(split="dev"),
            },
        )
        return tmp_path

    def test_non_scope_families_get_label_zero_rows_from_their_own_split(self, folder: Path) -> None:
        """Each non-scope family pairs its rule with `per_family` English conversations of its split, label 0."""
        examples = [*_examples(200), *_examples(50, lang="fr")]
        by_transcript = {_transcript_of(e): e for e in examples}
        rows = foreign_rows(examples, 5, per_family=6, folder=folder)
        train = [r for r in rows["train"] if r["id"].startswith("scenario:shop_refunds:")]
        assert len(train) == 6
        assert len(rows["dev"]) == 6
        assert not [r for split in rows.values() for r in split if "shop_topics_scope" in r["id"]]
        for split, split_rows in rows.items():
            for row in split_rows:
                example = by_transcript[row["transcript"]]
                assert (row["label"], row["augmentation"]) == (0, "scn:foreign")
                assert example.split == split
                assert example.lang == "en"
                assert row["stage"] == example.stage
                assert row["conversation_id"] == example.conversation_id
                assert "Do not promise refunds at" in row["clause"]
                assert "{" not in row["clause"]
        assert {r["stage"] for r in rows["train"]} == {"input", "output"}
        assert not [r for r in rows["train"] if r["phrasing"].endswith("/t4")]

    def test_rows_are_deterministic_and_ids_distinct_from_base_rows(self, folder: Path) -> None:
        """The same seed gives the same rows; their ids never collide with the family's base rows."""
        examples = _examples(120)
        first = foreign_rows(examples, 5, per_family=4, folder=folder)
        assert first == foreign_rows(examples, 5, per_family=4, folder=folder)
        base_ids = {r["id"] for split in scenario_rows(5, folder=folder).values() for r in split}
        assert not base_ids & {r["id"] for split in first.values() for r in split}

    def test_scope_rules_are_never_lent_to_other_families_turns(self, tmp_path: Path) -> None:
        """An off-topic turn breaks a scope rule, so no other family's row pairs its turn with one (label 0)."""
        scope_rule = {f"t{i}": f"Replies must stay on shop topics (phrasing {i})." for i in range(1, 5)}
        _write(
            tmp_path,
            "one.yaml",
            {
                "shop_refunds": _family(),
                "shop_topics_scope": _family(rules=scope_rule, scope=True),
            },
        )
        rows = scenario_rows(5, folder=tmp_path)["train"]
        borrowed = {r["id"].split(":")[1]: r["clause"] for r in rows if r["augmentation"] == "scn:other_rule"}
        assert "shop_refunds" not in borrowed
        assert "Do not promise refunds" in borrowed["shop_topics_scope"]

    def test_scope_flag_is_set_on_the_shipped_scope_families(self) -> None:
        """The shipped families whose rule any off-topic turn breaks are marked, so they get no foreign rows."""
        families = load_families()
        assert families["recipe_cooking_scope"].spec.scope
        assert families["transit_journey_scope"].spec.scope
        assert not families["podcast_real_people_scripts"].spec.scope


def _transcript_of(example: Example) -> str:
    return render_transcript(list(example.messages), stage=example.stage)


def _narrowed(**changes: Any) -> dict[str, Any]:
    """A narrowed-category family: drug-checking questions are exempt, sourcing requests are not."""
    family = _family(
        stage="input",
        prompts=[],
        category="drugs",
        max_severity="low",
        rules={
            f"t{i}": f"Helping someone buy drugs (phrasing {i}). Drug checking at {{shop}} is not covered."
            for i in range(1, 5)
        },
        violating=[f"where do I buy pills near {{shop}}, version {i}" for i in range(4)],
        compliant=[f"how reliable are test kits at {{shop}}, version {i}" for i in range(4)],
    )
    family.update(changes)
    return family


class TestNarrowedCategoryFamilies:
    @pytest.fixture(name="folder")
    def _folder(self, tmp_path: Path) -> Path:
        _write(
            tmp_path,
            "one.yaml",
            {"shop_refunds": _family(), "shop_other_rule": _family(), "shop_drug_checking": _narrowed()},
        )
        return tmp_path

    def test_rows_are_category_clauses_with_the_family_description(self, folder: Path) -> None:
        """Violating turns are label 1 and exempt turns label 0 under the category clause a policy would render."""
        rows = [
            r for r in scenario_rows(3, folder=folder)["train"] if r["id"].startswith("scenario:shop_drug_")
        ]
        assert {r["label"] for r in rows} == {0, 1}
        for row in rows:
            shop = "Acme Widgets" if "Acme Widgets" in row["transcript"] else "Bolt Supply"
            n = row["phrasing"][-1]
            text = f"Helping someone buy drugs (phrasing {n}). Drug checking at {shop} is not covered."
            assert row["clause"] == render_category_clause(
                "drugs", CategoryRule(max_severity="low", description=text)
            )
            assert (row["clause_kind"], row["category"]) == ("category", "drugs")
            assert row["label"] == int("where do I buy" in row["transcript"])
            assert row["augmentation"] in {"scn:violated", "scn:compliant"}

    def test_no_other_rule_rows_in_either_direction(self, folder: Path) -> None:
        """A narrowed family neither borrows another family's rule nor lends its description to other families."""
        rows = scenario_rows(3, folder=folder)["train"]
        other = [r for r in rows if r["augmentation"] == "scn:other_rule"]
        assert other
        assert all(r["clause_kind"] == "rule" and "shop_drug_" not in r["id"] for r in other)

    def test_foreign_rows_use_only_conversations_known_to_be_within_max_severity(self, folder: Path) -> None:
        """Narrowing never makes a turn violate, so only conversations at most `max_severity` become label-0 rows."""
        examples = [
            dataclasses.replace(e, severity={"drugs": n % 4} if n % 5 else {})
            for n, e in enumerate(_examples(200))
        ]
        by_transcript = {_transcript_of(e): e for e in examples}
        rows = foreign_rows(examples, 5, per_family=20, folder=folder)
        narrowed = [r for split in rows.values() for r in split if r["id"].startswith("scenario:shop_drug_")]
        assert narrowed
        for row in narrowed:
            assert row["label"] == 0
            assert 0 <= by_transcript[row["transcript"]].severity.get("drugs", -1) <= Severity.LOW.rank

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"category": "narcotics"}, "'narcotics' is not a taxonomy category"),
            ({"category": "sexual_minors"}, "above 'sexual_minors'.s ceiling 'none'"),
            ({"max_severity": "high"}, "nothing to violate"),
            ({"scope": True}, "cannot also be a scope family"),
            ({"category": None}, "max_severity is only for narrowed-category families"),
        ],
    )
    def test_invalid_narrowed_family_names_the_problem(
        self, tmp_path: Path, changes: dict[str, Any], message: str
    ) -> None:
        """Unknown categories, impossible severities and mixed family kinds are DataErrors naming the family."""
        _write(tmp_path, "bad.yaml", {"shop_drug_checking": _narrowed(**changes)})
        with pytest.raises(DataError, match=rf"bad\.yaml.*'shop_drug_checking'.*{message}"):
            load_families(tmp_path)


FLIPPED = ("Every reply must promise a refund at {shop}.", "Always confirm the refund yourself.")


class TestFlippedRules:
    def test_training_families_get_their_turns_under_the_opposite_rule_with_swapped_labels(
        self, tmp_path: Path
    ) -> None:
        """A compliant turn breaks the flipped rule (label 1), a violating one follows it (label 0)."""
        _write(tmp_path, "one.yaml", {"shop_refunds": _family(flipped=list(FLIPPED))})
        rows = scenario_rows(5, folder=tmp_path)["train"]
        flipped = [r for r in rows if r["augmentation"] == "scn:flipped"]
        assert len(flipped) == 24
        for row in flipped:
            turn = row["transcript"].split("[judged] Assistant: ")[1]
            assert row["label"] == (1 if turn.startswith("The returns team") else 0)
            assert row["phrasing"] in {"scenario/shop_refunds/flipped1", "scenario/shop_refunds/flipped2"}
            assert "{" not in row["clause"]
        assert {r["label"] for r in flipped} == {0, 1}
        assert len({r["id"] for r in rows}) == len(rows)

    def test_other_rows_are_unchanged_and_dev_families_get_none(self, tmp_path: Path) -> None:
        """Adding flipped phrasings leaves a family's other rows as they were; dev and test get no flipped rows."""
        _write(tmp_path, "one.yaml", {"shop_refunds": _family(), "shop_dev_rule": _family(split="dev")})
        before = scenario_rows(5, folder=tmp_path)
        _write(
            tmp_path,
            "one.yaml",
            {
                "shop_refunds": _family(flipped=list(FLIPPED)),
                "shop_dev_rule": _family(split="dev", flipped=list(FLIPPED)),
            },
        )
        after = scenario_rows(5, folder=tmp_path)
        assert [r for r in after["train"] if r["augmentation"] != "scn:flipped"] == before["train"]
        assert after["dev"] == before["dev"]

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"scope": True}, "only for plain rule families"),
            ({"category": "drugs", "max_severity": "low"}, "only for plain rule families"),
            ({"flipped": ["Always promise refunds at {store}."]}, r"flipped\.0 uses undefined slot"),
        ],
    )
    def test_invalid_flipped_rules_name_the_problem(
        self, tmp_path: Path, changes: dict[str, Any], message: str
    ) -> None:
        """Flipped rules on scope or narrowed families, or with an unknown slot, are DataErrors naming the family."""
        family = _family(flipped=list(FLIPPED))
        family.update(changes)
        _write(tmp_path, "bad.yaml", {"shop_refunds": family})
        with pytest.raises(DataError, match=rf"bad\.yaml.*'shop_refunds'.*{message}"):
            load_families(tmp_path)
