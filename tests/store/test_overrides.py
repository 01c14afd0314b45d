"""Per-model chat template overrides and per-key reasoning formats in the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.chat_template import TemplateError
from appliance.errors import ModelNotFound, UsageError
from appliance.store.keys import KeyStore
from appliance.store.models import ModelStore
from helpers.tiny_gguf import DEEPSEEK_R1_TEMPLATE, write_tiny_llama

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    store = ModelStore(tmp_path / "state")
    store.import_file(write_tiny_llama(tmp_path / "tiny.gguf"), "tiny")
    return store


def test_override_replaces_the_files_template_and_reset_restores_it(store: ModelStore) -> None:
    assert store.get("tiny").chat_template == DEEPSEEK_R1_TEMPLATE
    changed = store.set_chat_template("tiny", CHATML)
    assert changed.chat_template == CHATML and changed.chat_template_overridden
    assert ModelStore(store.state_dir).get("tiny").chat_template == CHATML, "it is persisted"
    restored = store.set_chat_template("tiny", None)
    assert restored.chat_template == DEEPSEEK_R1_TEMPLATE
    assert not restored.chat_template_overridden


def test_broken_template_is_refused_before_it_is_stored(store: ModelStore) -> None:
    with pytest.raises(TemplateError, match="does not compile"):
        store.set_chat_template("tiny", "{% for m in messages %}unclosed")
    assert store.get("tiny").chat_template == DEEPSEEK_R1_TEMPLATE


def test_override_for_an_unknown_model_names_it(store: ModelStore) -> None:
    with pytest.raises(ModelNotFound, match="'nope'"):
        store.set_chat_template("nope", CHATML)


def test_key_keeps_its_reasoning_format_and_it_can_be_changed(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "appliance.db")
    info, key = keys.create("alice", reasoning_format="ollama")
    assert info.reasoning_format == "ollama"
    assert keys.authenticate(key).reasoning_format == "ollama"
    assert keys.set_reasoning_format("alice", None).reasoning_format is None
    with pytest.raises(UsageError, match="invalid reasoning format 'klingon'"):
        keys.create("bob", reasoning_format="klingon")
