"""Prompt-only sets judged at the input stage, and Aegis.

The sets: HarmBench, AILuminate, SimpleSafetyTests, StrongREJECT, AdvBench, SG-Bench, WildGuardTest and Aegis
(whose Aegis 2.0 sample also carries safe responses).

Each source's category labels map onto the taxonomy through a table of (keyword-checked alternatives, fallback):
the first alternative whose keyword rule matches the prompt wins, else the fallback; a fallback of ``None`` with no
match leaves the category unknown (harmful, category -1).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from csrm_guard.errors import DataError
from csrm_guard.training.adapters._common import (
    choose,
    infer_categories,
    prompt_example,
    read_csv,
    read_json,
    response_example,
)
from csrm_guard.training.data import Example

__all__ = [
    "AEGIS2_MAP",
    "AILUMINATE_MAP",
    "HARMBENCH_MAP",
    "SST_MAP",
    "STRONGREJECT_MAP",
    "WILDGUARD_MAP",
    "load_advbench",
    "load_aegis",
    "load_ailuminate",
    "load_harmbench",
    "load_sgbench",
    "load_simplesafetytests",
    "load_strongreject",
    "load_wildguardtest",
    "map_label",
]

logger = logging.getLogger(__name__)

Rule = tuple[tuple[str, ...], str | None]
_CRIMES = ("drugs", "weapons", "cybercrime", "intellectual_property")

HARMBENCH_MAP: dict[str, Rule] = {
    "chemical_biological": (("drugs",), "cbrn"),
    "cybercrime_intrusion": ((), "cybercrime"),
    "illegal": ((*_CRIMES, "violence", "sex_crimes"), "crime_nonviolent"),
    "misinformation_disinformation": ((), "misinformation"),
    "harassment_bullying": (("hate",), "harassment"),
    "harmful": (("self_harm", "violence", "drugs", "weapons"), None),
    "copyright": ((), "intellectual_property"),
}
AILUMINATE_MAP: dict[str, Rule] = {
    "vcr": (("extremism",), "violence"),
    "ncr": (("cybercrime", "drugs", "weapons"), "crime_nonviolent"),
    "src": ((), "sex_crimes"),
    "cse": ((), "sexual_minors"),
    "dfm": ((), "defamation"),
    "spc_fin": ((), "specialized_advice"),
    "spc_hlt": ((), "specialized_advice"),
    "spc_lgl": ((), "specialized_advice"),
    "spc_ele": ((), "misinformation"),
    "prv": ((), "privacy"),
    "ipv": ((), "intellectual_property"),
    "iwp": ((), "cbrn"),
    "hte": ((), "hate"),
    "ssh": ((), "self_harm"),
    "sxc_prn": ((), "sexual"),
}
SST_MAP: dict[str, Rule] = {
    "Suicide, Self-Harm, and Eating Disorders": ((), "self_harm"),
    "Physical harm and Violence": (("weapons", "cbrn"), "violence"),
    "Illegal and Highly Regulated items": (("weapons", "cbrn"), "drugs"),
    "Scams and fraud": (("cybercrime",), "crime_nonviolent"),
    "Child safety": (("sexual_minors",), "violence"),
}
STRONGREJECT_MAP: dict[str, Rule] = {
    "Disinformation and deception": ((), "misinformation"),
    "Hate, harassment and discrimination": (("harassment",), "hate"),
    "Illegal goods and services": (("weapons", "cbrn"), "drugs"),
    "Non-violent crimes": (("cybercrime", "intellectual_property"), "crime_nonviolent"),
    "Sexual content": (("sexual_minors", "sex_crimes"), "sexual"),
    "Violence": (("weapons", "extremism"), "violence"),
}
WILDGUARD_MAP: dict[str, Rule] = {
    "private_information_individual": ((), "privacy"),
    "social_stereotypes_and_unfair_discrimination": ((), "hate"),
    "fraud_assisting_illegal_activities": (_CRIMES, "crime_nonviolent"),
    "sensitive_information_organization_government": ((), "privacy"),
    "cyberattack": ((), "cybercrime"),
    "mental_health_over-reliance_crisis": (("self_harm",), "specialized_advice"),
    "defamation_encouraging_unethical_or_unsafe_actions": (("defamation",), "unethical_behavior"),
    "causing_material_harm_by_disseminating_misinformation": ((), "misinformation"),
    "disseminating_false_or_misleading_information_encouraging_disinformation_campaigns": (
        (),
        "misinformation",
    ),
    "toxic_language_hate_speech": ((), "hate"),
    "violence_and_physical_harm": (("weapons",), "violence"),
    "copyright_violations": ((), "intellectual_property"),
}
AEGIS2_MAP: dict[str, Rule] = {
    "Hate/Identity Hate": ((), "hate"),
    "Sexual": ((), "sexual"),
    "Violence": (("weapons",), "violence"),
    "Suicide and Self Harm": ((), "self_harm"),
    "Sexual (minor)": ((), "sexual_minors"),
    "Guns and Illegal Weapons": ((), "weapons"),
    "Controlled/Regulated Substances": ((), "drugs"),
    "Criminal Planning/Confessions": ((*_CRIMES, "violence"), "crime_nonviolent"),
    "PII/Privacy": ((), "privacy"),
    "Harassment": ((), "harassment"),
    "Profanity": ((), "profanity"),
    "Threat": ((), "harassment"),
    "Political/Misinformation/Conspiracy": ((), "misinformation"),
    "Fraud/Deception": ((), "crime_nonviolent"),
    "Malware": ((), "cybercrime"),
    "Copyright/Trademark/Plagiarism": ((), "intellectual_property"),
    "High Risk Gov Decision Making": ((), None),
    "Unauthorized Advice": ((), "specialized_advice"),
    "Manipulation": ((), "unethical_behavior"),
    "Immoral/Unethical": ((), "unethical_behavior"),
    "Illegal Activity": (_CRIMES, "crime_nonviolent"),
    "Other": ((), None),
}


def map_label(table: dict[str, Rule], label: str, text: str, *, source: str) -> tuple[str, ...]:
    """Map one source label through ``table`` (keyword alternatives first, then the fallback)."""
    if label not in table:
        raise DataError(f"unknown {source} label {label!r}", source=source)
    candidates, fallback = table[label]
    return choose(text, candidates, fallback)


def load_harmbench(folder: Path) -> Iterator[Example]:
    """Yield HarmBench behaviors (``_all.csv``; test and val are subsets) as harmful prompts."""
    path = folder / "behavior_datasets" / "harmbench_behaviors_text_all.csv"
    for row in read_csv(path):
        behavior, context = row["Behavior"], row["ContextString"]
        prompt = f"{behavior}\n\n{context}" if context else behavior
        categories = map_label(HARMBENCH_MAP, row["SemanticCategory"], behavior, source="harmbench")
        hints = {"intellectual_property": 2} if row["SemanticCategory"] == "copyright" else None
        yield prompt_example(
            "harmbench-behaviors",
            row["BehaviorID"],
            prompt,
            harmful=True,
            categories=categories,
            hints=hints,
            group=behavior,
            meta={"semantic": row["SemanticCategory"], "functional": row["FunctionalCategory"]},
        )


def load_ailuminate(folder: Path) -> Iterator[Example]:
    """Yield the en_US and fr_FR demo prompts (hazardous by construction)."""
    for name in sorted(folder.glob("airr_official_1.0_demo_*_prompt_set_release.csv")):
        for row in read_csv(name):
            text = row["prompt_text"]
            categories = map_label(AILUMINATE_MAP, row["hazard"], text, source="ailuminate")
            yield prompt_example(
                "ailuminate-demo",
                row["release_prompt_id"],
                text,
                harmful=True,
                categories=categories,
                meta={"hazard": row["hazard"], "persona": row["persona"], "locale": row["locale"]},
            )


def load_simplesafetytests(folder: Path) -> Iterator[Example]:
    """Yield the 100 SimpleSafetyTests prompts."""
    for row in read_csv(folder / "SimpleSafetyTests_test_cases.csv"):
        text = row["prompts_final"]
        categories = map_label(SST_MAP, row["harm_area"], text, source="simplesafetytests")
        yield prompt_example(
            "simplesafetytests",
            row["id"],
            text,
            harmful=True,
            categories=categories,
            meta={"harm_area": row["harm_area"], "type": row["category"]},
        )


def load_strongreject(folder: Path) -> Iterator[Example]:
    """Yield the StrongREJECT forbidden prompts."""
    for number, row in enumerate(read_csv(folder / "strongreject_dataset.csv"), start=2):
        text = row["forbidden_prompt"]
        categories = map_label(STRONGREJECT_MAP, row["category"], text, source="strongreject")
        yield prompt_example(
            "strongreject",
            str(number),
            text,
            harmful=True,
            categories=categories,
            meta={"category": row["category"], "origin": row["source"]},
        )


def load_advbench(folder: Path) -> Iterator[Example]:
    """Yield the 520 AdvBench behaviors (categories from keyword rules; the PAIR subset duplicates 50 of them)."""
    for row in read_csv(folder / "advbench_behaviors.csv"):
        text = row["Behavior"]
        yield prompt_example(
            "advbench", row["BehaviorID"], text, harmful=True, categories=infer_categories(text)
        )


def load_sgbench(folder: Path) -> Iterator[Example]:
    """Yield the SG-Bench prompts (all harmful; categories from keyword rules)."""
    for number, row in enumerate(read_json(folder / "wizard101" / "sgbench.json")):
        text = row["text"]
        yield prompt_example(
            "sgbench", str(number), text, harmful=row["label"] == "harmful", categories=infer_categories(text)
        )


def load_wildguardtest(folder: Path) -> Iterator[Example]:
    """Yield the WildGuardTest prompt subset with its subcategories."""
    for number, row in enumerate(read_json(folder / "wizard101" / "wildguard_full_benchmark.json")):
        text, harmful = row["text"], row["label"] == "harmful"
        sub = str(row["source"]).removeprefix("wildguardmix_")
        categories = () if sub == "benign" else map_label(WILDGUARD_MAP, sub, text, source="wildguardtest")
        yield prompt_example(
            "wildguardtest",
            str(number),
            text,
            harmful=harmful,
            categories=categories,
            meta={"subcategory": sub},
        )


def load_aegis(folder: Path) -> Iterator[Example]:
    """Yield Aegis 1.0 test prompts, and the Aegis 2.0 sample's unsafe prompts with their safe responses."""
    path = folder / "guardreasoner" / "0_1_AegisSafetyTest.json"
    for number, row in enumerate(read_json(path)):
        text = str(row["input"]).split("Human user:\n", 1)[-1].split("\n\nAI assistant:", 1)[0]
        harmful = str(row["output"]).strip() == "harmful"
        yield prompt_example(
            "aegis",
            f"v1:{number}",
            text,
            harmful=harmful,
            categories=infer_categories(text) if harmful else (),
            meta={"label": row["output"]},
        )
    for row in read_csv(folder / "aegis2_sample_onedory" / "aegis_900.csv"):
        prompt, category = row["prompt"], row["category"]
        categories = map_label(AEGIS2_MAP, category, prompt, source="aegis")
        hints = dict.fromkeys(categories, 3) if category == "Threat" else None
        yield prompt_example(
            "aegis",
            f"v2:{row['id']}",
            prompt,
            harmful=True,
            categories=categories,
            hints=hints,
            meta={"category": category},
        )
        yield response_example(
            "aegis",
            f"v2:{row['id']}:response",
            prompt,
            row["instruct_response"],
            harmful=False,
            categories=categories,
            meta={"category": category},
        )
