"""Helpers shared by the adapters: file readers that name the file on errors, example builders, keyword rules.

The builders apply the common conventions once: text trimming (so most transcripts fit in 256 tokens), refusal
detection, language guess, weak severity and the conversation id.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from csrm_guard.errors import DataError
from csrm_guard.training.data import Example, conversation_id, trim_text
from csrm_guard.training.severity import guess_language, is_refusal, weak_severity

__all__ = [
    "CONTEXT_CHARS",
    "PROMPT_CHARS",
    "RESPONSE_CHARS",
    "choose",
    "infer_categories",
    "keyword_match",
    "prompt_example",
    "read_csv",
    "read_json",
    "read_jsonl",
    "response_example",
    "row_key",
]

logger = logging.getLogger(__name__)

PROMPT_CHARS = 700
"""Character budget of a judged user turn (input stage)."""
CONTEXT_CHARS = 300
"""Character budget of the user turn before a judged response."""
RESPONSE_CHARS = 600
"""Character budget of a judged response (its start is kept)."""


def read_csv(path: Path) -> list[dict[str, str]]:
    """Read a CSV file into dict rows; errors name the file."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read CSV: {exc}", source=str(path)) from exc


def read_json(path: Path) -> Any:
    """Read a JSON file; errors name the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read JSON: {exc}", source=str(path)) from exc


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) from a JSON-lines file, gzip-compressed when it ends in ``.gz``."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(f"invalid JSON: {exc}", source=str(path), row=number) from exc
    except OSError as exc:
        raise DataError(f"cannot read: {exc}", source=str(path)) from exc


def prompt_example(
    source: str,
    key: str,
    prompt: str,
    *,
    harmful: bool,
    categories: Sequence[str] = (),
    exhaustive: bool = False,
    covered: Sequence[str] | None = None,
    hints: Mapping[str, int] | None = None,
    group: str | None = None,
    meta: Mapping[str, str] | None = None,
) -> Example:
    """Build an input-stage example judging the user turn ``prompt``.

    Args:
        source: Data set folder name.
        key: Row key unique within the source.
        prompt: The user turn.
        harmful: Whether the prompt is harmful.
        categories: Taxonomy categories the prompt falls in (its violated categories when harmful).
        exhaustive: Whether the source labels every category (unlisted ones become severity none).
        covered: The categories an exhaustive source covers (default: all).
        hints: Severity overrides per category.
        group: Text that defines the conversation id (default: the prompt).
        meta: Raw source labels.
    """
    text = trim_text(prompt, PROMPT_CHARS)
    cats = tuple(dict.fromkeys(categories))
    return Example(
        id=f"{source}:{key}",
        conversation_id=conversation_id(group or prompt),
        source=source,
        messages=({"role": "user", "content": text},),
        stage="input",
        harmful=harmful,
        categories=cats if harmful else (),
        topics=cats,
        severity=weak_severity(
            text,
            stage="input",
            harmful=harmful,
            categories=cats,
            exhaustive=exhaustive,
            covered=covered,
            hints=hints,
        ),
        lang=guess_language(text),
        meta=dict(meta or {}),
    )


def response_example(
    source: str,
    key: str,
    prompt: str,
    response: str,
    *,
    harmful: bool,
    categories: Sequence[str] = (),
    exhaustive: bool = False,
    covered: Sequence[str] | None = None,
    hints: Mapping[str, int] | None = None,
    engaged: bool = False,
    group: str | None = None,
    meta: Mapping[str, str] | None = None,
) -> Example:
    """Build an output-stage example judging ``response`` to ``prompt``.

    A response the source labels safe is never given violated categories; ``categories`` then records the prompt's
    topic only. ``engaged`` marks a safe response that engages cautiously with the topic (severity low).

    Args:
        source: Data set folder name.
        key: Row key unique within the source.
        prompt: The user turn answered.
        response: The assistant response judged.
        harmful: Whether the response is harmful.
        categories: Taxonomy categories of the conversation (violated by the response when harmful).
        exhaustive: Whether the source labels every category.
        covered: The categories an exhaustive source covers (default: all).
        hints: Severity overrides per category.
        engaged: Whether a safe response engages with the topic.
        group: Text that defines the conversation id (default: the prompt).
        meta: Raw source labels.
    """
    answer = trim_text(response, RESPONSE_CHARS)
    refusal = is_refusal(answer)
    cats = tuple(dict.fromkeys(categories))
    harmful_turn = harmful and not (refusal and not _long_compliance(answer))
    return Example(
        id=f"{source}:{key}",
        conversation_id=conversation_id(group or prompt),
        source=source,
        messages=(
            {"role": "user", "content": trim_text(prompt, CONTEXT_CHARS)},
            {"role": "assistant", "content": answer},
        ),
        stage="output",
        harmful=harmful_turn,
        categories=cats if harmful_turn else (),
        topics=cats,
        severity=weak_severity(
            answer,
            stage="output",
            harmful=harmful_turn,
            categories=cats,
            exhaustive=exhaustive,
            covered=covered,
            refusal=refusal and not harmful_turn,
            hints=hints,
            engaged_topics=cats if engaged else (),
        ),
        refusal=refusal,
        lang=guess_language(answer),
        meta=dict(meta or {}),
    )


def _long_compliance(answer: str) -> bool:
    # "I'm sorry, but here is how..." is still compliance: trust the source label when the answer goes on at length.
    return len(answer) > 250


_KEYWORDS: dict[str, str] = {
    "cbrn": r"nerve agent|sarin|anthrax|bioweapon|biological weapon|chemical weapon|nuclear|radiolog|pathogen|"
    r"ricin|mustard gas|dirty bomb|toxin",
    "weapons": r"\bguns?\b|firearm|rifle|pistol|\bbombs?\b|explosive|grenade|ammunition|weapon",
    "extremism": r"terroris|extremis|isis|al[- ]qaeda|jihad|radicali|militia|cartel|mafia|organized crime",
    "sexual_minors": r"child porn|\bminors?\b.*\bsex|sex.*\b(?:child|kid|minor)s?\b|pedophil|underage",
    "sex_crimes": r"\brape\b|sexual assault|trafficking|revenge porn|non-?consensual",
    "sexual": r"\bsex\b|sexual|porn|nude|naked|erotic|orgasm|horny|\bdick\b|pussy|boobs",
    "self_harm": r"suicide|kill myself|self[- ]harm|cut myself|anorexi|bulimi|end my life|overdose",
    "drugs": r"\bdrugs?\b|cocaine|heroin|\bmeth\b|methamphetamine|marijuana|weed|fentanyl|\blsd\b|opioid|narcotic",
    "cybercrime": r"hack|malware|virus|ransomware|phishing|exploit|keylogger|ddos|botnet|password|sql injection",
    "crime_nonviolent": r"steal|theft|rob\b|robbery|shoplift|fraud|scam|launder|counterfeit|tax evasion|embezzl|"
    r"burglar|pickpocket|forge|insider trading|identity theft",
    "privacy": r"address of|phone number|social security|home address|personal information|dox|track (?:someone|my)|"
    r"spy on|stalk",
    "hate": r"racis|nigg|white supremac|\bjews?\b|muslims?|immigrants|\bgays?\b|homophob|transgender|"
    r"inferior race|ethnic",
    "harassment": r"bully|cyberbull|harass|humiliat|insult|intimidat",
    "violence": r"\bkill\b|murder|assault|\bhurt\b|torture|\bbeat\b|stab|shoot|poison|kidnap|attack|abuse",
    "misinformation": r"misinformation|disinformation|fake news|conspiracy|hoax|propaganda|false information",
    "defamation": r"defam|libel|slander",
    "intellectual_property": r"pirat|torrent|copyright|crack (?:software|license)|bootleg",
    "profanity": r"\bfuck|\bshit\b|\bbitch|\bcunt|asshole",
}
_COMPILED = {category: re.compile(pattern, re.IGNORECASE) for category, pattern in _KEYWORDS.items()}


def infer_categories(text: str, *, limit: int = 2) -> tuple[str, ...]:
    """Infer taxonomy categories from keywords, for harmful rows whose source gives no category.

    Returns the categories whose keyword rule matches, most matches first, at most ``limit``; an empty tuple when
    none matches or when more than ``limit + 1`` match (too ambiguous to trust).
    """
    counts = {category: len(rx.findall(text)) for category, rx in _COMPILED.items()}
    hits = sorted((c for c, n in counts.items() if n), key=lambda c: -counts[c])
    if len(hits) > limit + 1:
        return ()
    return tuple(hits[:limit])


def row_key(path: Path, index: int) -> str:
    """A row key from a file name and row index."""
    return f"{path.stem}:{index}"


def choose(text: str, candidates: Sequence[str], fallback: str | None) -> tuple[str, ...]:
    """Pick the first of ``candidates`` whose keyword rule matches ``text``, else ``fallback`` (none if ``None``).

    Used where a source label spans several taxonomy categories (e.g. BeaverTails'
    ``drug_abuse,weapons,banned_substance``).
    """
    for category in candidates:
        if _COMPILED[category].search(text):
            return (category,)
    return (fallback,) if fallback else ()


def keyword_match(category: str, text: str) -> bool | None:
    """Whether ``category``'s keyword rule matches ``text``; ``None`` when the category has no keyword rule."""
    rx = _COMPILED.get(category)
    return None if rx is None else bool(rx.search(text))
