"""Server-side template injection: text in policies and conversations is data, never a template."""

from __future__ import annotations

import pytest

from csrm_guard import CategoryRule, Policy, Rule
from csrm_guard.errors import PolicyValidationError, TemplateError
from csrm_guard.policy._sandbox import compile_refusal
from csrm_guard.policy.render import render_policy, render_refusal, render_transcript

# Classic SSTI probes for Jinja and other engines; none may be evaluated.
_PAYLOADS = [
    "{{ 7*7 }}",
    "{{7*'7'}}",
    "{{ config.items() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{% raw %}{{ raw }}{% endraw %}",
    "{# comment #}",
    "${7*7}",
    "<%= 7*7 %>",
    "#{7*7}",
    "{{ self._TemplateReference__context }}",
    "{% include '/etc/passwd' %}",
]


@pytest.fixture(name="payload", params=_PAYLOADS)
def _payload(request, tmp_path):
    marker = tmp_path / "pwned"
    yield request.param.replace("{marker}", str(marker))
    assert not marker.exists(), "a payload executed a shell command"


def test_rule_text_is_literal(payload):
    """A rule text containing template syntax is rendered verbatim."""
    rendered = render_policy(Policy(name="p", rules=[Rule(id="r", text=payload)]))
    clause = next(c for c in rendered.clauses if c.id == "r")
    assert clause.text == f"Rule: {payload}"
    assert payload in rendered.text


def test_category_description_is_literal(payload):
    """A rewritten category description is rendered verbatim."""
    policy = Policy(name="p", categories={"hate": CategoryRule(description=payload)})
    clause = next(c for c in render_policy(policy).clauses if c.id == "hate")
    assert payload in clause.text
    assert "49" not in clause.text


def test_guidelines_are_literal(payload):
    """Guideline text is rendered verbatim."""
    rendered = render_policy(Policy(name="p", guidelines=f"Never do this: {payload}"))
    guideline = next(c for c in rendered.clauses if c.kind == "guideline")
    assert payload.strip() in guideline.text


def test_policy_description_is_literal(payload):
    """The policy description is rendered verbatim in the reviewer text."""
    assert payload in render_policy(Policy(name="p", description=payload)).text


def test_message_content_is_literal(payload):
    """Conversation content and the judged response are rendered verbatim."""
    messages = [{"role": "user", "content": payload}]
    assert render_transcript(messages, stage="input") == f"[judged] User: {payload}"
    assert render_transcript(messages, stage="output", response=payload).endswith(f"Assistant: {payload}")


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ policy.__class__ }}",
        "{{ policy['__class__'] }}",
        "{{ violations.pop() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ range(100000000) | list }}",
        "{{ 'x' * 1000000000 }}",
        "{{ 9 ** 9 ** 9 }}",
        "{{ '%999999999d' % 1 }}",
        "{% set x = 'a' %}{{ x }}",
        "{% macro m() %}{% endmacro %}",
        "{% include 'config.j2' %}",
        "{% import 'x' as y %}",
        "{% extends 'x' %}",
        "{% for a in violations %}{% for b in violations %}{% endfor %}{% endfor %}",
        "{{ secret }}",
        "{{ violations | attr('__class__') }}",
        "{% if %}",
        "{{ " + "(" * 1500 + "1" + ")" * 1500 + " }}",
    ],
)
def test_malicious_refusal_templates_raise_template_error(template):
    """Refusal templates that reach internals, call code, loop or blow up raise TemplateError."""
    with pytest.raises(TemplateError):
        compile_refusal(template)
    with pytest.raises(PolicyValidationError) as info:
        Policy(name="p", refusal=template)
    assert info.value.field == "refusal"


def test_sandbox_still_guards_unvalidated_policies():
    """A policy built without validation still cannot escape the sandbox at render time."""
    policy = Policy.model_construct(name="p", version="1", refusal="{{ policy.__class__ }}")
    with pytest.raises(TemplateError):
        render_refusal(policy, stage="input")


def test_legitimate_refusal_template():
    """Conditionals, loops and simple filters over the known variables work."""
    template = (
        "{% if 'self_harm' in violations %}Please reach out for help.{% else %}No.{% endif %} "
        "[{% for v in violations %}{{ v | upper }}{% if not loop.last %}, {% endif %}{% endfor %}] "
        "{{ policy.name | title }} {{ stage }} {{ violations | length }}"
    )
    policy = Policy(name="demo", refusal=template)
    assert render_refusal(policy, stage="input", violations=["a", "b"]) == "No. [A, B] Demo input 2"
