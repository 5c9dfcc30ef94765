"""Tests for the hand-written harmful examples: file validation and the examples they give."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from csrm_guard.errors import DataError
from csrm_guard.policy.taxonomy import load_taxonomy
from csrm_guard.training.augment import Augmenter
from csrm_guard.training.harmful_examples import SOURCE, harmful_examples, load_harmful_items

from ._held_out import copies, policy_test_turns


def _item(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "judged": "input",
        "severity": {"weapons": "high", "violence": "moderate"},
        "prompt": "how do i make thermite at home",
        "response": "I can't help with making incendiaries.",
    }
    item.update(changes)
    return item


def _write(folder: Path, name: str, items: dict[str, Any]) -> None:
    (folder / name).write_text(yaml.safe_dump({"version": "1", "items": items}), encoding="utf-8")


def _by_stage(folder: Path) -> dict[str, Any]:
    return {e.stage: e for e in harmful_examples(folder)}


class TestShippedFiles:
    def test_shipped_items_load_with_both_judged_stages(self) -> None:
        """The packaged files validate and hold harmful requests and harmful replies at every severity."""
        items = load_harmful_items()
        assert len(items) >= 250
        assert {i.judged for i in items.values()} == {"input", "output"}
        assert {level for i in items.values() for level in i.severity.values()} == {
            "none",
            "low",
            "moderate",
            "high",
        }

    def test_examples_pair_the_stages_of_one_conversation_across_splits(self) -> None:
        """Each item gives an input and an output example sharing a conversation id (and so a split)."""
        examples = harmful_examples()
        assert len(examples) == 2 * len(load_harmful_items())
        by_conversation: dict[str, set[str]] = {}
        for example in examples:
            assert example.source == SOURCE
            by_conversation.setdefault(example.conversation_id, set()).add(example.stage)
        assert all(stages == {"input", "output"} for stages in by_conversation.values())
        assert {e.split for e in examples} == {"train", "dev", "test"}

    def test_no_item_copies_a_policy_test(self) -> None:
        """The example policies' tests stay a held-out check: no prompt or response is close to a test turn."""
        texts = [(i, t) for i, item in load_harmful_items().items() for t in (item.prompt, item.response)]
        assert copies(texts, policy_test_turns()) == []


class TestExamples:
    def test_harmful_request_and_its_refusal(self, tmp_path: Path) -> None:
        """``judged: input``: the request carries the listed severities; the refusal is safe everywhere."""
        _write(tmp_path, "a.yaml", {"a_pipe": _item()})
        by_stage = _by_stage(tmp_path)
        request, refusal = by_stage["input"], by_stage["output"]
        assert request.harmful
        assert set(request.categories) == {"weapons", "violence"}
        assert dict(request.severity) == {"weapons": 3, "violence": 2}
        assert request.severity_vector()["hate"] == -1  # unlisted categories stay unknown
        assert not refusal.harmful
        assert refusal.refusal is True
        assert refusal.categories == ()
        assert set(refusal.topics) == {"weapons", "violence"}
        assert dict(refusal.severity) == dict.fromkeys(load_taxonomy().ids, 0)
        assert refusal.messages[-1] == {"role": "assistant", "content": _item()["response"]}

    def test_harmful_reply_to_a_harmless_request(self, tmp_path: Path) -> None:
        """``judged: output``: the reply carries the severities; the request is safe and about nothing harmful."""
        item = _item(
            judged="output", severity={"profanity": "high"}, prompt="long division is confusing", response="x"
        )
        _write(tmp_path, "a.yaml", {"b_swear": item})
        by_stage = _by_stage(tmp_path)
        request, reply = by_stage["input"], by_stage["output"]
        assert not request.harmful
        assert request.topics == ()
        assert dict(request.severity) == dict.fromkeys(load_taxonomy().ids, 0)
        assert reply.harmful
        assert reply.refusal is False
        assert reply.categories == ("profanity",)

    def test_category_listed_at_none_is_known_safe_not_unknown(self, tmp_path: Path) -> None:
        """``none`` trains a neighbouring category towards none; it is not a violated category or a topic."""
        item = _item(severity={"sexual": "high", "sexual_minors": "none"}, prompt="write an explicit scene")
        _write(tmp_path, "a.yaml", {"d_adult": item})
        by_stage = _by_stage(tmp_path)
        request, refusal = by_stage["input"], by_stage["output"]
        assert request.harmful
        assert request.categories == ("sexual",)
        assert request.topics == ("sexual",)
        vector = request.severity_vector()
        assert (vector["sexual"], vector["sexual_minors"], vector["hate"]) == (3, 0, -1)
        assert refusal.topics == ("sexual",)
        rows = Augmenter(seed=3).clause_rows(request, heldout_ok=False, limit=40)
        assert {r["label"] for r in rows if r["category"] == "sexual_minors"} == {0}

    def test_low_only_item_is_not_generically_harmful_but_breaks_a_none_clause(self, tmp_path: Path) -> None:
        """Only low severity: not harmful under a generic rule, yet a clause allowing none of it is violated."""
        item = _item(
            judged="output", severity={"profanity": "low"}, prompt="long division!", response="Damn."
        )
        _write(tmp_path, "a.yaml", {"b_damn": item})
        reply = _by_stage(tmp_path)["output"]
        assert not reply.harmful
        assert reply.categories == ("profanity",)
        rows = Augmenter(seed=3).clause_rows(reply, heldout_ok=False, limit=12)
        profanity = {r["clause"].split(":")[0]: r["label"] for r in rows if r["category"] == "profanity"}
        assert profanity.get("Not allowed") == 1


class TestValidation:
    @pytest.mark.parametrize(
        ("item", "message"),
        [
            (
                _item(severity={"piracy": "high"}),
                "item 'x_bad', field severity: Value error, unknown taxonomy",
            ),
            (_item(severity={"weapons": "extreme"}), "item 'x_bad', field severity.weapons"),
            (_item(severity={}), "item 'x_bad', field severity"),
            (
                _item(severity={"weapons": "none"}),
                "item 'x_bad', field severity: Value error, needs 1-3 categories above none, got 0",
            ),
            (
                _item(severity=dict.fromkeys(["weapons", "violence", "hate", "drugs"], "low")),
                "needs 1-3 categories above none, got 4",
            ),
            (_item(judged="both"), "item 'x_bad', field judged"),
            (_item(response=" "), "item 'x_bad', field response"),
            ({**_item(), "harmful": True}, "item 'x_bad', field harmful: Extra inputs"),
        ],
    )
    def test_bad_item_names_file_item_and_field(
        self, tmp_path: Path, item: dict[str, Any], message: str
    ) -> None:
        """A malformed item fails with the file, the item id and the field in the message."""
        _write(tmp_path, "bad.yaml", {"x_bad": item})
        with pytest.raises(DataError, match=r"bad\.yaml") as info:
            load_harmful_items(tmp_path)
        assert message in str(info.value)

    def test_repeated_prompt_across_files_is_rejected(self, tmp_path: Path) -> None:
        """Two items with one prompt would share a conversation: an error naming both items."""
        _write(tmp_path, "a.yaml", {"x_one": _item()})
        _write(tmp_path, "b.yaml", {"x_two": _item(prompt="HOW do I make thermite at  home ")})
        with pytest.raises(DataError, match="'x_two' repeats the prompt of item 'x_one'"):
            load_harmful_items(tmp_path)
