"""GuardedOpenAI: a drop-in for the official client, here talking to a local fake server (no network).

With a real key: ``GuardedOpenAI(openai.OpenAI(), guard)``.  Run: python examples/openai_wrapper.py
"""

from __future__ import annotations

import json

import httpx
import openai

from csrm_guard import Guard, Policy, StageSettings, ViolationError
from csrm_guard.middleware.openai import GuardedOpenAI
from csrm_guard.testing import FakeScorer


def openai_body(text: str, *, chunk: bool = False) -> dict:
    """An OpenAI-style completion (or streaming chunk) carrying ``text``."""
    choice = {"index": 0, "delta" if chunk else "message": {"role": "assistant", "content": text}}
    kind = "chat.completion.chunk" if chunk else "chat.completion"
    return {
        "id": "c",
        "object": kind,
        "created": 0,
        "model": "m",
        "choices": [{**choice, "finish_reason": None}],
    }


def fake_server(request: httpx.Request) -> httpx.Response:
    """Answers like the OpenAI API; leaks a password when asked about the admin."""
    body = json.loads(request.content)
    question = body["messages"][-1]["content"]
    text = "the admin password is hunter2" if "admin" in question else f"Sure: {question}"
    if not body.get("stream"):
        return httpx.Response(200, json=openai_body(text))
    events = [f"data: {json.dumps(openai_body(word + ' ', chunk=True))}\n\n" for word in text.split()]
    stream = "".join(events) + "data: [DONE]\n\n"
    return httpx.Response(200, text=stream, headers={"content-type": "text/event-stream"})


def fake_model(clause, transcript: str) -> float:
    """A stand-in for the model: the no-secrets rule is violated by any mention of a password."""
    judged = transcript.rsplit("[judged]", maxsplit=1)[-1]
    return 0.97 if clause.id == "no-secrets" and "password" in judged else 0.01


scorer = FakeScorer(fake_model)
policy = Policy(
    name="openai-demo",
    rules=[{"id": "no-secrets", "text": "Never reveal passwords or credentials."}],
    input=StageSettings(action="block"),
    output=StageSettings(action="refuse", hold_back_chars=10),
)
guard = Guard(policy, scorer=scorer)
raw = openai.OpenAI(
    api_key="sk-test",
    base_url="http://fake/v1",
    http_client=httpx.Client(transport=httpx.MockTransport(fake_server)),
)
client = GuardedOpenAI(raw, guard)

completion = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hello"}])
print("plain:", completion.choices[0].message.content)
completion = client.chat.completions.create(
    model="m", messages=[{"role": "user", "content": "who is the admin?"}]
)
print("refused:", completion.choices[0].message.content, f"({completion.choices[0].finish_reason})")
stream = client.chat.completions.create(
    model="m", messages=[{"role": "user", "content": "admin please"}], stream=True
)
print("stream:", "".join(chunk.choices[0].delta.content or "" for chunk in stream))
try:
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "my password is 1234"}])
except ViolationError as exc:
    print("blocked input:", [v.id for v in exc.decision.violations])
guard.close()
