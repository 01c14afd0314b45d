"""Render a conversation into a prompt with the model's own Jinja2 chat template.

Templates come from the GGUF (`tokenizer.chat_template`), i.e. from a file somebody downloaded:
they run in Jinja2's immutable sandbox. The helpers offered (`raise_exception`,
`strftime_now`, a non-ASCII-preserving `tojson`) are the ones Hugging Face templates, DeepSeek's
included, expect.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from appliance.errors import UsageError

# Used when a model ships no template: ChatML, which most small instruct models understand.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class TemplateError(UsageError):
    code = "chat_template_error"
    title = "Chat template error"


def _raise_exception(message: str) -> None:
    raise TemplateError(f"the model's chat template refused the conversation: {message}")


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


@lru_cache(maxsize=16)
def _compile(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.filters["tojson"] = _tojson
    return env.from_string(source)


def check_template(source: str) -> None:
    """Raise TemplateError if `source` does not compile or cannot render a short chat."""
    try:
        _compile(source)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"the chat template does not compile: {exc}") from None
    render_chat(source, [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])


def render_chat(
    template: str | None,
    messages: list[dict[str, Any]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    **extra: Any,
) -> str:
    """Return the prompt text for `messages`; raise TemplateError naming what went wrong."""
    try:
        compiled = _compile(template or FALLBACK_TEMPLATE)
        prompt = compiled.render(
            messages=messages,
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
            **extra,
        )
    except TemplateError:
        raise
    except jinja2.TemplateError as exc:
        raise TemplateError(f"the model's chat template failed: {exc}") from None
    # The text is what the model was trained on, BOS text included: only a model that adds
    # BOS itself could end up with two, and its worker drops the extra one when it tokenizes.
    # (Stripping it here cut SmolLM2's first `<|im_start|>`: its BOS is that token, and it
    # adds none.)
    return prompt
