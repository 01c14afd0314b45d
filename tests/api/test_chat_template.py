"""Chat templates from model files: rendered faithfully, and sandboxed (they are downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.chat_template import TemplateError, render_chat

TEMPLATES = Path(__file__).parents[1] / "fixtures" / "templates"


def deepseek_r1_template() -> str:
    """DeepSeek-R1-Distill's template; its source is named in tests/fixtures/README.md."""
    return (TEMPLATES / "deepseek-r1-distill.jinja").read_text()


def test_smollm2_style_template_adds_its_default_system_prompt() -> None:
    template = (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are SmolLM<|im_end|>\n' }}{% endif %}"
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    prompt = render_chat(template, [{"role": "user", "content": "Hi"}])
    assert prompt == (
        "<|im_start|>system\nYou are SmolLM<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_deepseek_r1_template_opens_the_thinking_block_and_keeps_the_bos() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>easy</think>4"},
        {"role": "user", "content": "3+3?"},
    ]
    prompt = render_chat(
        deepseek_r1_template(), messages,
        bos_token="<｜begin▁of▁sentence｜>", eos_token="<｜end▁of▁sentence｜>",
    )  # fmt: skip
    # The template's own text, BOS included (the worker never doubles it); the earlier
    # reasoning is stripped from the history.
    assert prompt == (
        "<｜begin▁of▁sentence｜>Be brief.<｜User｜>2+2?<｜Assistant｜>4<｜end▁of▁sentence｜>"
        "<｜User｜>3+3?<｜Assistant｜><think>\n"
    )


def test_model_without_a_template_falls_back_to_chatml() -> None:
    prompt = render_chat(None, [{"role": "user", "content": "Hi"}])
    assert prompt == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_template_cannot_reach_python_internals() -> None:
    hostile = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(TemplateError, match="chat template failed"):
        render_chat(hostile, [{"role": "user", "content": "x"}])


def test_template_raise_exception_becomes_a_clear_request_error() -> None:
    strict = (
        "{% if messages[0]['role'] != 'user' %}"
        "{{ raise_exception('first must be user') }}{% endif %}"
    )
    with pytest.raises(TemplateError, match="first must be user"):
        render_chat(strict, [{"role": "assistant", "content": "x"}])
