"""Admin: `POST /admin/golden-prompt`, the chat request `appliance doctor` sends through the
daemon's own chat path (template, engine, worker) to prove the box answers sanely."""

from __future__ import annotations

import time
import unicodedata
from contextlib import aclosing

from fastapi import APIRouter

from appliance.api.admin.protocol import GoldenAnswer, GoldenRequest
from appliance.api.deps import ServicesDep
from appliance.api.openai.chat_prompt import build_prompt
from appliance.api.openai.protocol import ChatCompletionRequest
from appliance.api.openai.serving import engine_messages, resolve_model
from appliance.engine.client import new_request_id
from appliance.engine.messages import Done

router = APIRouter()

GOLDEN_PROMPT = "What is the capital of France? Answer in one word."
EXPECTED_WORD = "paris"


def insanity(text: str) -> str | None:
    """Why an answer is not sane text, or None. Small models may get the fact wrong; what
    must never happen is no text, undecodable bytes, control characters or one token looping."""
    stripped = text.strip()
    if not stripped:
        return "the answer is empty"
    if "\ufffd" in stripped:
        return "the answer has undecodable bytes (U+FFFD): tokenizer or runtime mismatch"
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t\r" for ch in stripped):
        return "the answer has control characters: broken weights or runtime"
    if not any(ch.isalpha() for ch in stripped):
        return "the answer has no letters"
    if len(stripped) >= 8 and len(set(stripped)) == 1:
        return "the answer repeats one character"
    return None


@router.post("/golden-prompt", operation_id="admin_golden_prompt")
async def golden_prompt(body: GoldenRequest, services: ServicesDep) -> GoldenAnswer:
    info = resolve_model(services, body.model or "")
    request = ChatCompletionRequest.model_validate(
        {
            "model": info.name,
            "messages": [{"role": "user", "content": GOLDEN_PROMPT}],
            "temperature": 0,
            "max_tokens": body.max_tokens,
        }
    )
    prompt = build_prompt(request, info)
    submit = request.to_engine_request(
        new_request_id(), prompt.text, body.max_tokens,
        prompt_opens_thinking=prompt.opens_thinking, json_schema=prompt.forced_schema,
    )  # fmt: skip
    started = time.monotonic()
    await services.engine.ensure_ready(info)
    text, done = "", None
    async with aclosing(engine_messages(services, info, submit)) as messages:
        async for message in messages:
            if isinstance(message, Done):
                done = message
            else:
                text += message.text
    # A reasoning model thinks first: judge the answer after its `</think>`, if it got there.
    answer = text.rsplit("</think>", 1)[-1] if "</think>" in text else text
    problem = insanity(answer if answer.strip() else text)
    return GoldenAnswer(
        model=info.name,
        prompt=GOLDEN_PROMPT,
        answer=text,
        completion_tokens=done.completion_tokens if done else 0,
        finish_reason=done.finish_reason if done else "none",
        seconds=round(time.monotonic() - started, 3),
        sane=problem is None,
        problem=problem or "",
        expected_word_found=EXPECTED_WORD in answer.lower(),
    )
