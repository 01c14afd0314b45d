"""appliance/placement/draft.py and store/vocab.py: which installed model drafts for another.

Real files in a real store: SmolLM2, a tiny random model carrying SmolLM2's exact vocabulary
(padded, as a smaller sibling's table often is), and a tiny model with the DeepSeek vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.config import Config
from appliance.placement import place_model
from appliance.placement.draft import DraftRefused, with_draft
from appliance.placement.fit import MIB, PlanOptions, estimate
from appliance.records import Accelerator, DeviceKind, ModelInfo, ModelPlacement
from appliance.store.models import ModelStore
from appliance.store.vocab import VocabFingerprints
from helpers.copied_vocab import write_tiny_with_vocabulary_of
from helpers.runtime import runtime_report
from helpers.tiny_gguf import write_tiny_llama

CPU = Accelerator(id="cpu0", kind=DeviceKind.CPU, vendor="test", name="cpu", memory_total_mib=65536)


class Installed:
    def __init__(self, root: Path, embedded: Path) -> None:
        self.state = root / "state"
        store = ModelStore(self.state)
        same = write_tiny_with_vocabulary_of(embedded, root / "same.gguf", padding=64)
        other = write_tiny_llama(root / "other.gguf")
        self.smollm2 = store.import_file(embedded, "smollm2").model
        self.same = store.import_file(same, "tiny-same-vocab").model
        self.other = store.import_file(other, "tiny-deepseek").model
        self.models = store.list()
        store.close()
        self.fingerprints = VocabFingerprints(self.state)

    def place(self, info: ModelInfo, draft_model: str, cpu: Accelerator = CPU) -> ModelPlacement:
        config = Config(engine={"draft_model": draft_model})
        placement = place_model(info, [CPU], runtime_report(), config)
        return with_draft(placement, info, self.models, config, self.fingerprints.of, [cpu])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, embedded_model: Path) -> Installed:
    return Installed(tmp_path_factory.mktemp("draft"), embedded_model)


def test_auto_picks_the_smaller_model_with_the_same_vocabulary(installed: Installed) -> None:
    placed = installed.place(installed.smollm2, "auto")
    assert placed.draft_model == "tiny-same-vocab"  # not the smaller DeepSeek-vocabulary one
    assert placed.draft_model_path == installed.same.path
    assert not placed.draft_required and placed.draft_gpu_layers == 0
    assert "drafts with tiny-same-vocab (same vocabulary" in placed.reason
    assert "MiB more for its weights and KV cache" in placed.reason


def test_auto_finds_nothing_for_a_model_without_a_much_smaller_sibling(
    installed: Installed,
) -> None:
    # The tiny same-vocabulary model is served: SmolLM2 is larger, never its draft.
    assert installed.place(installed.same, "auto").draft_model == ""
    assert installed.place(installed.other, "auto").draft_model == ""


def test_off_loads_no_draft_model(installed: Installed) -> None:
    placed = installed.place(installed.smollm2, "off")
    assert (placed.draft_model, placed.draft_model_path) == ("", "")
    assert "drafts with" not in placed.reason


def test_a_named_model_with_another_vocabulary_is_refused_naming_both(
    installed: Installed,
) -> None:
    with pytest.raises(DraftRefused) as refused:
        installed.place(installed.smollm2, "tiny-deepseek")
    message = refused.value.message
    assert "'tiny-deepseek' cannot draft for 'smollm2': their vocabularies differ" in message
    assert 'engine.draft_model to "auto" or "off"' in message


def test_a_named_model_that_is_not_installed_is_refused(installed: Installed) -> None:
    with pytest.raises(DraftRefused, match="names 'nope', which is not installed"):
        installed.place(installed.smollm2, "nope")


def test_a_named_model_with_the_same_vocabulary_drafts_and_must_load(
    installed: Installed,
) -> None:
    placed = installed.place(installed.smollm2, "tiny-same-vocab")
    assert placed.draft_model == "tiny-same-vocab" and placed.draft_required
    # Serving the named draft model itself: nothing drafts for it, nothing is refused.
    assert installed.place(installed.same, "tiny-same-vocab").draft_model == ""


def test_fingerprints_are_read_once_and_kept_by_file_hash(installed: Installed) -> None:
    installed.place(installed.smollm2, "auto")
    cache = installed.fingerprints.path
    kept = json.loads(cache.read_text())
    assert kept[installed.smollm2.sha256] == kept[installed.same.sha256]
    assert kept[installed.other.sha256] != kept[installed.smollm2.sha256]
    # A new reader (a restarted daemon) takes them from the cache, not from the files.
    cache.write_text(json.dumps({**kept, installed.same.sha256: "stale"}))
    again = VocabFingerprints(installed.state)
    assert again.of(installed.same) == "stale"
    cache.write_text(json.dumps(kept))


def test_a_draft_model_that_does_not_fit_beside_the_model_is_left_out_or_refused(
    installed: Installed,
) -> None:
    placed = installed.place(installed.smollm2, "off")
    assert installed.smollm2.shape is not None
    need = estimate(
        installed.smollm2.shape, placed.context_length, placed.slots,
        PlanOptions(context_length=placed.context_length),
    ).total  # fmt: skip
    # RAM for the model as placed and the OS margin (1 GiB + 10%), and 1 MiB to spare.
    total_mib = int((need / MIB + 1 + 1024) / 0.9) + 1
    tight = CPU.model_copy(update={"memory_total_mib": total_mib})
    auto = installed.place(installed.smollm2, "auto", tight)
    assert auto.draft_model == ""
    assert "no draft model: tiny-same-vocab has the same vocabulary, but it needs" in auto.reason
    with pytest.raises(DraftRefused, match="'tiny-same-vocab' does not fit beside 'smollm2'"):
        installed.place(installed.smollm2, "tiny-same-vocab", tight)
