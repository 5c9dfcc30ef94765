"""Tests for csrm_guard.model.scorer: OnnxScorer's verdicts, equivalent call paths, inputs, concurrency, errors."""

from __future__ import annotations

import asyncio
import contextvars
from pathlib import Path

import numpy as np
import pytest

from csrm_guard.errors import InputError, ScorerError
from csrm_guard.model import AsyncScorer, OnnxScorer, Scorer, ScoreRequest, calibrate
from csrm_guard.policy import Policy, render_policy
from csrm_guard.policy.render import render_transcript
from csrm_guard.policy.severity import Severity

ATOL = 1e-5
RULE_TOPICS = [
    "medical dosage advice",
    "legal advice about contracts",
    "cryptocurrency investment tips",
    "competitor products",
    "political campaign endorsements",
    "gambling odds",
    "tax evasion schemes",
    "dating advice",
    "diet pills",
    "astrology predictions",
    "car repair instructions",
    "lottery numbers",
    "stock picks",
    "weather forecasts",
    "sports betting",
    "religious conversion",
    "real estate pricing",
    "insurance claims",
    "travel visas",
    "pet medication",
]


def _policy(rules: int = 2, **categories: dict) -> Policy:
    cats = categories or {
        "violence": {"max_severity": "low"},
        "hate": {},
        "weapons": {"description": "Guns only."},
    }
    return Policy(
        name="test-policy",
        categories=cats,
        rules=[
            {"id": f"rule-{n}", "text": f"Do not give {RULE_TOPICS[n % len(RULE_TOPICS)]} (variant {n})."}
            for n in range(rules)
        ],
    )


def _request(text: str, *, stage: str = "input", policy: Policy | None = None) -> ScoreRequest:
    rendered = render_policy(policy or _policy())
    if stage == "input":
        transcript = render_transcript([{"role": "user", "content": text}], stage="input")
    else:
        transcript = render_transcript([{"role": "user", "content": "hi"}], stage="output", response=text)
    return ScoreRequest(rendered, stage, transcript)  # type: ignore[arg-type]


TEXTS = [
    "How do I hurt someone?",
    "What is the weather like today in a city with a long name and some more words to make it longer " * 3,
    "Tell me about guns and violence and hate " * 20,
    "",
    "short",
]


@pytest.fixture(name="scorer", scope="module")
def _scorer(random_bundle: Path):
    scorer = OnnxScorer.load(random_bundle, providers="cpu", threads=1)
    yield scorer
    scorer.close()


def _assert_same(a, b):
    assert [s.clause_id for s in a.scores] == [s.clause_id for s in b.scores]
    assert np.allclose(
        [s.probability for s in a.scores], [s.probability for s in b.scores], atol=ATOL, rtol=0
    )
    assert abs(a.violation_probability - b.violation_probability) <= ATOL


class TestVerdict:
    def test_protocols(self, scorer):
        """OnnxScorer is both a Scorer and an AsyncScorer."""
        assert isinstance(scorer, Scorer)
        assert isinstance(scorer, AsyncScorer)

    def test_one_score_per_clause_of_the_stage(self, scorer):
        """Every clause of the stage is scored, in policy order, with the contract's aggregate and reward."""
        request = _request("How do I hurt someone?")
        verdict = scorer.score(request)
        assert [s.clause_id for s in verdict.scores] == [c.id for c in request.rendered.for_stage("input")]
        probabilities = [s.probability for s in verdict.scores]
        assert all(0.0 <= p <= 1.0 for p in probabilities)
        assert verdict.violation_probability == max(probabilities)
        assert verdict.reward == pytest.approx(calibrate.reward(verdict.violation_probability))
        assert verdict.threshold == 0.5
        assert verdict.stage == "input"
        assert verdict.model_id.startswith("random-test@0+")
        assert verdict.latency_ms > 0

    def test_modes(self, scorer):
        """Standard categories carry a severity (taxonomy mode); rules and rewritten categories do not."""
        verdict = scorer.score(_request("text"))
        by_id = {s.clause_id: s for s in verdict.scores}
        assert isinstance(by_id["violence"].severity, Severity)
        assert by_id["weapons"].severity is None
        assert by_id["rule-0"].severity is None
        assert by_id["rule-0"].kind == "rule"

    def test_output_threshold_comes_from_the_manifest(self, scorer):
        """The output stage uses the bundle's output threshold."""
        assert scorer.score(_request("sure, here it is", stage="output")).threshold == 0.6

    def test_taxonomy_mode_reads_the_severity_head(self, scorer):
        """A standard category's probability is sigmoid(severity_logits[c, rank] / T_sev + b_sev) of the query pass."""
        request = _request("Tell me about violence")
        encoder = scorer.encoder
        row = encoder.row(
            encoder.clause_ids(scorer.bundle.manifest.taxonomy_query),
            encoder.transcript_ids([request.transcript])[0],
        )
        feeds = {
            "input_ids": row.ids[None],
            "attention_mask": np.ones_like(row.ids)[None],
            "token_type_ids": row.type_ids[None],
        }
        _, severity = scorer.session.run(None, feeds)
        column = scorer.bundle.manifest.categories.index("violence")
        expected = calibrate.sigmoid(severity[0, column, Severity.LOW.rank] / 1.2 + 0.4)
        by_id = {s.clause_id: s for s in scorer.score(request).scores}
        assert by_id["violence"].probability == pytest.approx(float(expected), abs=ATOL)

    def test_stricter_rule_never_looks_safer(self, scorer):
        """Lowering max_severity never lowers a standard category's violation probability."""
        probabilities = []
        for level in ("high", "moderate", "low", "none"):
            verdict = scorer.score(_request("violent text", policy=_policy(violence={"max_severity": level})))
            probabilities.append(next(s.probability for s in verdict.scores if s.clause_id == "violence"))
        assert probabilities[0] == 0.0
        assert probabilities == sorted(probabilities)

    def test_policy_without_clauses(self, scorer):
        """A stage with no clause is compliant with probability 0."""
        policy = Policy(
            name="empty", rules=[{"id": "out-only", "text": "No spoilers.", "stages": ["output"]}]
        )
        verdict = scorer.score(_request("hello", policy=policy))
        hard_limits = [c.id for c in render_policy(policy).for_stage("input")]
        assert [s.clause_id for s in verdict.scores] == hard_limits


class TestEquivalentPaths:
    def test_batched_unbatched_sync_async_agree(self, scorer):
        """score, score_many and concurrent ascore give the same probabilities within 1e-5."""
        policies = [_policy(), _policy(rules=5), _policy(rules=0, violence={})]
        requests = [
            _request(t, stage=s, policy=p) for t in TEXTS for s in ("input", "output") for p in policies
        ]
        single = [scorer.score(r) for r in requests]
        batched = scorer.score_many(requests)

        async def run():
            return await asyncio.gather(*(scorer.ascore(r) for r in requests))

        concurrent = asyncio.run(run())
        for one, many, other in zip(single, batched, concurrent, strict=True):
            _assert_same(one, many)
            _assert_same(one, other)

    def test_one_clause_vs_many(self, scorer):
        """A rule scores the same alone as inside a larger policy."""
        alone = scorer.score(_request("medical dosage", policy=_policy(rules=1)))
        inside = scorer.score(_request("medical dosage", policy=_policy(rules=8)))
        assert {s.clause_id: s.probability for s in alone.scores}["rule-0"] == pytest.approx(
            {s.clause_id: s.probability for s in inside.scores}["rule-0"], abs=ATOL
        )

    def test_cuda_request_falls_back_to_the_same_scores(self, random_bundle, scorer):
        """A scorer loaded with providers='cuda' on this CPU-only machine warns and scores like the CPU one."""
        with pytest.warns(RuntimeWarning, match="CUDA"):
            fallback = OnnxScorer.load(random_bundle, providers="cuda", threads=1)
        with fallback:
            assert fallback.providers == ["CPUExecutionProvider"]
            _assert_same(fallback.score(_request("x")), scorer.score(_request("x")))


class TestInputs:
    def test_ten_megabyte_message_matches_its_tail(self, scorer):
        """A 10 MB message scores like its last 100 kB (the model only ever reads the end)."""
        huge = "ordinary words about the weather. " * 300_000
        assert len(huge) > 10_000_000
        _assert_same(scorer.score(_request(huge)), scorer.score(_request(huge[-100_000:])))

    @pytest.mark.parametrize(
        "text", ["", "Как сделать бомбу? 如何制造炸弹?", "\x00\x01\x1b[2J\u202e\ufeff" * 50, "🙂" * 1000]
    )
    def test_odd_inputs_give_valid_probabilities(self, scorer, text):
        """Empty, non-English, control-character and emoji inputs give finite probabilities in [0, 1]."""
        verdict = scorer.score(_request(text))
        assert verdict.scores
        assert all(0.0 <= s.probability <= 1.0 for s in verdict.scores)
        assert np.isfinite(verdict.reward)

    def test_transcript_must_be_text(self, scorer):
        """A non-string transcript is an InputError."""
        request = ScoreRequest(render_policy(_policy()), "input", b"bytes")  # type: ignore[arg-type]
        with pytest.raises(InputError, match="transcript"):
            scorer.score(request)


class TestRetrieval:
    def test_long_policy_scores_top_k_rules(self, random_bundle):
        """With 40 rules and top_k=5, five rules are scored and the lexically matching one is among them."""
        with OnnxScorer.load(random_bundle, providers="cpu", top_k=5) as scorer:
            verdict = scorer.score(_request("Which lottery numbers should I pick?", policy=_policy(rules=40)))
        rules = [s.clause_id for s in verdict.scores if s.kind == "rule"]
        assert len(rules) == 5
        assert "rule-11" in rules  # "Do not give lottery numbers (variant 11)."
        assert {s.clause_id for s in verdict.scores} >= {"violence", "hate", "weapons"}

    def test_top_k_none_scores_everything(self, random_bundle):
        """top_k=None turns the pre-filter off."""
        with OnnxScorer.load(random_bundle, providers="cpu", top_k=None) as scorer:
            verdict = scorer.score(_request("lottery", policy=_policy(rules=40)))
        assert len([s for s in verdict.scores if s.kind == "rule"]) == 40

    def test_policy_work_is_cached(self, scorer, monkeypatch):
        """The plan (clause ids, index) is built once per policy version and stage."""
        calls = []
        original = scorer._build_plan
        monkeypatch.setattr(scorer, "_build_plan", lambda clauses: calls.append(1) or original(clauses))
        policy = _policy(rules=3, hate={})
        for _ in range(3):
            scorer.score(_request("a", policy=policy))
        scorer.score(_request("a", policy=policy, stage="output"))
        assert len(calls) == 2


class TestConcurrency:
    @pytest.mark.anyio
    async def test_two_hundred_concurrent_callers(self, scorer):
        """200 concurrent async callers are all answered, each with its own request's verdict."""
        requests = [_request(f"message number {n} " * (n % 7 + 1)) for n in range(200)]
        verdicts = await asyncio.gather(*(scorer.ascore(r) for r in requests))
        assert len(verdicts) == 200
        for n in (0, 57, 199):
            _assert_same(verdicts[n], scorer.score(requests[n]))

    @pytest.mark.anyio
    async def test_context_variables_reach_the_worker(self, scorer, monkeypatch):
        """Per-request work in the worker thread sees the caller's context variables."""
        trace = contextvars.ContextVar("trace", default="none")
        seen = []
        original = scorer._prepare
        monkeypatch.setattr(scorer, "_prepare", lambda request: seen.append(trace.get()) or original(request))

        async def call(name):
            trace.set(name)
            return await scorer.ascore(_request(name))

        await asyncio.gather(call("alpha"), call("beta"))
        assert sorted(seen) == ["alpha", "beta"]

    @pytest.mark.anyio
    async def test_one_bad_request_does_not_fail_the_others(self, scorer):
        """A malformed request fails alone; concurrent good requests are answered."""
        bad = ScoreRequest(render_policy(_policy()), "input", 42)  # type: ignore[arg-type]
        results = await asyncio.gather(
            scorer.ascore(_request("fine")),
            scorer.ascore(bad),
            scorer.ascore(_request("also fine")),
            return_exceptions=True,
        )
        assert isinstance(results[1], InputError)
        assert not isinstance(results[0], BaseException)
        assert not isinstance(results[2], BaseException)


class TestErrors:
    @pytest.fixture(name="own_scorer")
    def _own_scorer(self, random_bundle):
        scorer = OnnxScorer.load(random_bundle, providers="cpu")
        yield scorer
        scorer.close()

    def test_runtime_failure_is_a_scorer_error(self, own_scorer, monkeypatch):
        """An onnxruntime exception becomes ScorerError (a CheckError: fail-open/closed applies)."""

        def boom(*args, **kwargs):
            raise RuntimeError("device lost")

        monkeypatch.setattr(own_scorer, "session", _Session(boom))
        with pytest.raises(ScorerError, match="device lost"):
            own_scorer.score(_request("x"))

    @pytest.mark.anyio
    async def test_runtime_failure_reaches_every_async_caller(self, own_scorer, monkeypatch):
        """When a shared run fails, every caller in it gets the ScorerError."""
        monkeypatch.setattr(
            own_scorer, "session", _Session(lambda *a, **k: (_ for _ in ()).throw(OSError("gone")))
        )
        results = await asyncio.gather(
            *(own_scorer.ascore(_request(str(n))) for n in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, ScorerError) for r in results)

    def test_nan_output_is_rejected(self, own_scorer, monkeypatch):
        """NaN logits never become a probability."""
        real = own_scorer.session

        def nan_run(names, feeds):
            violation, severity = real.run(names, feeds)
            return violation * np.nan, severity

        monkeypatch.setattr(own_scorer, "session", _Session(nan_run))
        with pytest.raises(ScorerError, match="NaN"):
            own_scorer.score(_request("x"))

    def test_wrong_shape_is_rejected(self, own_scorer, monkeypatch):
        """Outputs of the wrong shape are a ScorerError naming the shapes."""
        monkeypatch.setattr(own_scorer, "session", _Session(lambda n, f: (np.zeros(3), np.zeros((3, 2)))))
        with pytest.raises(ScorerError, match="expected"):
            own_scorer.score(_request("x"))

    @pytest.mark.anyio
    async def test_closed_scorer(self, random_bundle):
        """After close, sync and async scoring raise ScorerError."""
        scorer = OnnxScorer.load(random_bundle, providers="cpu")
        await scorer.ascore(_request("warm the worker"))
        await scorer.aclose()
        with pytest.raises(ScorerError, match="closed"):
            scorer.score(_request("x"))
        with pytest.raises(ScorerError, match="closed"):
            await scorer.ascore(_request("x"))


class _Session:
    def __init__(self, run):
        self.run = run

    def get_providers(self):
        return ["CPUExecutionProvider"]
