"""Tests for rendering policies into clauses, reviewer text and transcripts (with golden files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from csrm_guard import CategoryRule, Policy, Rule
from csrm_guard.errors import InputError
from csrm_guard.policy.render import (
    TEMPLATE_VERSION,
    render_category_clause,
    render_policy,
    render_refusal,
    render_transcript,
    split_guidelines,
    template_hash,
)
from csrm_guard.policy.taxonomy import load_taxonomy

_GOLDENS = Path(__file__).parent / "goldens"
_UPDATE = os.environ.get("CSRM_UPDATE_GOLDENS") == "1"


def _golden(name: str, text: str) -> None:
    """Compare ``text`` with goldens/<name>; CSRM_UPDATE_GOLDENS=1 rewrites it."""
    path = _GOLDENS / name
    if _UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; review and set CSRM_UPDATE_GOLDENS=1"


@pytest.fixture(name="policy")
def _policy() -> Policy:
    return Policy(
        name="demo",
        version="7",
        description="A demo deployment.",
        categories={
            "violence": CategoryRule(max_severity="low"),
            "hate": CategoryRule(),
            "profanity": CategoryRule(allowed=True),
            "drugs": CategoryRule(
                max_severity="low", description="Help making or buying drugs.", action="block"
            ),
        },
        rules=[Rule(id="no-refunds", text="Do not promise refunds.", stages=("output",))],
        guidelines="Tone:\n- Be kind to users.\n- Never mock anyone.",
        output={"action": "regenerate", "max_attempts": 3},
        refusal="Sorry ({{ violations | join(', ') }}).",
    )


class TestClauses:
    def test_golden_policy_rendering(self, policy):
        """The reviewer text of a fixed policy matches its golden file."""
        _golden("demo_rendered.txt", render_policy(policy).text)

    def test_golden_category_clauses(self):
        """Category clause texts at every tolerated severity match their golden file."""
        texts = [
            f"{level}: {render_category_clause('violence', CategoryRule(max_severity=level))}"
            for level in ("none", "low", "moderate", "high")
        ]
        _golden("violence_clauses.txt", "\n".join(texts) + "\n")

    def test_clause_order_and_kinds(self, policy):
        """Clauses come in taxonomy order, then rules, then guidelines; allowed categories have none."""
        rendered = render_policy(policy)
        ids = [clause.id for clause in rendered.clauses]
        taxonomy_order = [
            cid for cid in load_taxonomy().ids if cid in {"violence", "hate", "drugs", "sexual_minors"}
        ]
        assert ids == [*taxonomy_order, "no-refunds", "guidelines.1", "guidelines.2"]
        assert "profanity" not in ids

    def test_hard_limits_always_present(self):
        """Hard-limit categories produce a clause even when the policy lists nothing."""
        rendered = render_policy(Policy(name="empty"))
        hard = [c.id for c in load_taxonomy().categories if c.hard_limit]
        assert [clause.id for clause in rendered.clauses] == hard

    def test_standard_flag_and_action(self, policy):
        """A rewritten description clears the standard flag; the category action is carried."""
        clauses = {clause.id: clause for clause in render_policy(policy).clauses}
        assert clauses["violence"].standard
        assert not clauses["drugs"].standard
        assert "Help making or buying drugs." in clauses["drugs"].text
        assert clauses["drugs"].action is not None
        assert clauses["drugs"].action.value == "block"

    def test_clause_lists_allowed_and_disallowed_levels(self):
        """A 'low' clause marks low as allowed and moderate and high as not allowed."""
        text = render_category_clause("violence", CategoryRule(max_severity="low"))
        assert "Allowed (low)" in text
        assert "Not allowed (moderate)" in text
        assert "Not allowed (high)" in text
        assert text.startswith("Not allowed above low severity: Violence.")

    def test_for_stage(self, policy):
        """Output-only rules are not input clauses."""
        rendered = render_policy(policy)
        assert "no-refunds" in {c.id for c in rendered.for_stage("output")}
        assert "no-refunds" not in {c.id for c in rendered.for_stage("input")}


class TestHashes:
    def test_render_is_cached_and_hash_stable(self, policy):
        """Rendering the same policy twice returns the cached object with the same hash."""
        first = render_policy(policy)
        assert render_policy(policy.model_copy()) is first
        assert first.template_version == TEMPLATE_VERSION
        assert len(first.hash) == 64

    def test_hash_changes_with_the_text(self, policy):
        """A different clause text gives a different rendered hash."""
        changed = policy.model_copy(update={"rules": (Rule(id="no-refunds", text="Other."),)})
        assert render_policy(changed).hash != render_policy(policy).hash

    def test_template_hash_is_stable(self):
        """The template hash is a sha256 that does not change between calls."""
        assert template_hash() == template_hash()
        assert len(template_hash()) == 64


class TestGuidelines:
    def test_split_with_heading_and_bullets(self):
        """Bullets become clauses prefixed by their heading."""
        assert split_guidelines("Tone:\n- Be kind.\n- Be brief.\n\nNo medical advice.") == [
            "Tone: Be kind.",
            "Tone: Be brief.",
            "Tone: No medical advice.",
        ]

    def test_long_paragraph_split_at_sentences(self):
        """A long paragraph is split at sentence ends into pieces under the cap."""
        sentence = "This is one rule sentence that is fairly long. "
        pieces = split_guidelines(sentence * 20, max_chars=120)
        assert len(pieces) > 1
        assert all(len(piece) <= 120 for piece in pieces)


class TestTranscript:
    def test_golden_transcript(self):
        """A multi-turn transcript matches its golden file."""
        messages = [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello, how can I help?"},
            {"role": "user", "content": "Tell me a joke."},
        ]
        text = render_transcript(messages, stage="input") + "\n---\n"
        text += (
            render_transcript(messages, stage="output", response="Why did the chicken cross the road?") + "\n"
        )
        _golden("transcript.txt", text)

    def test_input_judges_the_last_user_turn(self):
        """For input, the last user turn is judged and anything after it dropped."""
        messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
        assert render_transcript(messages, stage="input") == "[judged] User: a"

    def test_output_without_response_judges_last_assistant_turn(self):
        """For output without a response, the last assistant message is judged."""
        messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
        assert render_transcript(messages, stage="output").endswith("[judged] Assistant: b")

    def test_content_parts_are_joined(self):
        """OpenAI content parts contribute their text."""
        messages = [
            {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}
        ]
        assert render_transcript(messages, stage="input") == "[judged] User: one two"  # type: ignore[list-item]

    @pytest.mark.parametrize(
        ("messages", "location"),
        [
            ("hello", "messages"),
            ([{"role": "robot", "content": "x"}], "messages[0].role"),
            ([{"role": "user", "content": 5}], "messages[0].content"),
            ([{"role": "assistant", "content": "x"}], "messages"),
            (["not a mapping"], "messages[0]"),
        ],
    )
    def test_bad_messages(self, messages, location):
        """Malformed conversations raise InputError naming where."""
        with pytest.raises(InputError) as info:
            render_transcript(messages, stage="input")
        assert info.value.location == location


class TestRefusal:
    def test_variables(self, policy):
        """The refusal template sees the violations, stage and policy name."""
        assert (
            render_refusal(policy, stage="output", violations=["hate", "no-refunds"])
            == "Sorry (hate, no-refunds)."
        )
