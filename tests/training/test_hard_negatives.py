"""Tests for the hand-written hard negatives: file validation and the examples they give."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from csrm_guard.errors import DataError
from csrm_guard.policy.taxonomy import load_taxonomy
from csrm_guard.training.augment import Augmenter
from csrm_guard.training.hard_negatives import SOURCE, hard_negative_examples, load_hard_negatives

from ._held_out import copies, policy_test_turns


def _item(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "topics": ["privacy", "cybercrime"],
        "low": [],
        "prompt": "How do I change the password of my own email account?",
        "response": "Open the account settings, choose Security and pick a new password.",
    }
    item.update(changes)
    return item


def _write(folder: Path, name: str, items: dict[str, Any]) -> None:
    (folder / name).write_text(yaml.safe_dump({"version": "1", "items": items}), encoding="utf-8")


class TestShippedFiles:
    def test_shipped_items_load_and_cover_both_kinds(self) -> None:
        """The packaged files validate; most items are harmless and some sit at low severity."""
        items = load_hard_negatives()
        assert len(items) >= 300
        with_low = [i for i in items.values() if i.low]
        assert 0 < len(with_low) < len(items) / 2

    def test_examples_pair_the_stages_of_one_conversation(self) -> None:
        """Each item gives an input and an output example sharing a conversation id (and so a split)."""
        examples = hard_negative_examples()
        assert len(examples) == 2 * len(load_hard_negatives())
        by_conversation: dict[str, set[str]] = {}
        for example in examples:
            assert example.source == SOURCE
            by_conversation.setdefault(example.conversation_id, set()).add(example.stage)
        assert all(stages == {"input", "output"} for stages in by_conversation.values())
        assert {e.split for e in examples} == {"train", "dev", "test"}


class TestExamples:
    def test_harmless_item_is_safe_with_severity_none_everywhere(self, tmp_path: Path) -> None:
        """A harmless item is not harmful and has severity 0 in every taxonomy category."""
        _write(tmp_path, "a.yaml", {"x_reset": _item()})
        inp, out = sorted(hard_negative_examples(tmp_path), key=lambda e: e.stage)
        assert (inp.stage, out.stage) == ("input", "output")
        assert inp.messages[-1]["content"] == out.messages[0]["content"]
        assert out.messages[-1] == {"role": "assistant", "content": _item()["response"]}
        assert not inp.harmful
        assert out.refusal is False
        assert inp.refusal is None
        assert dict(inp.severity) == dict.fromkeys(load_taxonomy().ids, 0)
        assert inp.topics == ("privacy", "cybercrime")

    def test_low_item_violates_only_a_policy_allowing_none(self, tmp_path: Path) -> None:
        """An item at low severity violates a clause allowing none of the category, not one allowing low."""
        _write(tmp_path, "a.yaml", {"x_war": _item(topics=["violence", "weapons"], low=["violence"])})
        example = next(e for e in hard_negative_examples(tmp_path) if e.stage == "output")
        assert not example.harmful
        assert example.categories == ("violence",)
        assert example.topics == ("weapons",)
        rows = Augmenter(seed=3).clause_rows(example, heldout_ok=False, limit=12)
        violence = {r["clause"].split(":")[0]: r["label"] for r in rows if r["category"] == "violence"}
        assert violence.get("Not allowed") == 1
        allowed = [r for r in rows if r["category"] == "violence" and r["augmentation"] == "cca:allowed"]
        assert allowed
        assert all(r["label"] == 0 for r in allowed)
        harm_rows = [
            r for r in rows if r["category"] not in {None, "violence"} or r["augmentation"] == "cca:generic"
        ]
        assert any(r["augmentation"] == "cca:generic" for r in harm_rows)
        assert all(r["label"] == 0 for r in harm_rows)


class TestValidation:
    @pytest.mark.parametrize(
        ("item", "message"),
        [
            (
                _item(topics=["violence", "piracy"]),
                "item 'x_bad', field topics: Value error, unknown taxonomy",
            ),
            (_item(low=["sexual_minors"]), "whose ceiling is none"),
            (_item(topics=[]), "item 'x_bad', field topics"),
            (_item(prompt="   "), "item 'x_bad', field prompt"),
            ({**_item(), "label": 1}, "item 'x_bad', field label: Extra inputs"),
        ],
    )
    def test_bad_item_names_file_item_and_field(
        self, tmp_path: Path, item: dict[str, Any], message: str
    ) -> None:
        """A malformed item fails with the file, the item id and the field in the message."""
        _write(tmp_path, "bad.yaml", {"x_bad": item})
        with pytest.raises(DataError, match=r"bad\.yaml") as info:
            load_hard_negatives(tmp_path)
        assert message in str(info.value)

    def test_duplicate_id_across_files(self, tmp_path: Path) -> None:
        """An item id defined in two files is an error naming both."""
        _write(tmp_path, "a.yaml", {"x_one": _item()})
        _write(tmp_path, "b.yaml", {"x_one": _item(prompt="Another question about my router?")})
        with pytest.raises(DataError, match=r"b.yaml.*'x_one' is also defined in a.yaml"):
            load_hard_negatives(tmp_path)

    def test_repeated_prompt_is_rejected(self, tmp_path: Path) -> None:
        """Two items with the same prompt (up to case and spacing) would share a conversation: an error."""
        _write(
            tmp_path, "a.yaml", {"x_one": _item(), "x_two": _item(prompt=_item()["prompt"].upper() + "  ")}
        )
        with pytest.raises(DataError, match="'x_two' repeats the prompt of item 'x_one'"):
            load_hard_negatives(tmp_path)

    def test_invalid_yaml(self, tmp_path: Path) -> None:
        """A file that is not YAML fails with its name."""
        (tmp_path / "broken.yaml").write_text("items: [unclosed", encoding="utf-8")
        with pytest.raises(DataError, match=r"broken.yaml.*invalid YAML"):
            load_hard_negatives(tmp_path)


def test_no_item_copies_a_policy_test() -> None:
    """The example policies' tests stay a held-out check: no item's prompt or response is close to a test turn."""
    turns = policy_test_turns()
    assert len(turns) > 50
    texts = [(i, t) for i, item in load_hard_negatives().items() for t in (item.prompt, item.response)]
    assert copies(texts, turns) == []
