"""The DeepSeek R1 vocabulary and chat template that every tiny test model carries.

Test helper only (imported as `helpers.deepseek_vocab`); imports `gguf` for token types and
nothing from the appliance. Shared by the tiny GGUF writer and the tiny ONNX writer, so both
kinds of model tokenize the same way and render the same template.

The vocabulary is byte-level BPE (`gpt2` in GGUF terms): the 256 byte tokens in GPT-2's
byte-to-unicode order, a few merges (llama.cpp refuses a `gpt2` vocabulary with no merges:
"cannot find tokenizer merges in model file"), then DeepSeek R1's special tokens.
"""

from __future__ import annotations

from gguf import TokenType

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
# Role markers and tool-call framing are CONTROL tokens in R1; <think> and </think> are plain
# added tokens (USER_DEFINED), so detokenizers keep them in the text (see deepseek.md 3.2).
CONTROL_TOKENS = (
    BOS,
    EOS,
    "<｜User｜>",
    "<｜Assistant｜>",
    "<｜tool▁calls▁begin｜>",
    "<｜tool▁calls▁end｜>",
    "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>",
    "<｜tool▁outputs▁begin｜>",
    "<｜tool▁outputs▁end｜>",
    "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>",
    "<｜tool▁sep｜>",
)
USER_DEFINED_TOKENS = ("<think>", "</think>")
# Pairs of existing tokens (in GPT-2's byte alphabet: "Ġ" is a space) and the token each makes.
MERGES = (("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("e", "r"), ("a", "n"), ("o", "n"))

# DeepSeek-R1 distills' chat template (tokenizer_config.json, February 2025 revision), as
# transcribed in shared/reference/deepseek.md section 3.1: data, not code.
DEEPSEEK_R1_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}"
    "{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prom"
    "pt='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}{{bos_token}}"
    "{{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is none %}"
    "{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}"
    "{%- if not ns.is_first %}"
    "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + "
    "'<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + "
    "tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{%- set ns.is_first = true -%}{%- else %}{{'\\n' + '<｜tool▁call▁begin｜>' + "
    "tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + "
    "'\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}"
    "{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + "
    "'<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}"
    "{% set content = message['content'] %}{% if '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + "
    "content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
    "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}"
    "{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + "
    "message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}"
    "{%- else %}{{'\\n<｜tool▁output▁begin｜>' + message['content'] + "
    "'<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}"
    "{{'<｜tool▁outputs▁end｜>'}}{% endif %}"
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}"
    "{% endif %}"
)


def vocabulary() -> tuple[list[str], list[int], list[str]]:
    """Byte tokens, merged tokens, then special tokens; with their types and the merge list."""
    tokens = list(bytes_to_unicode().values())
    types = [TokenType.NORMAL] * len(tokens)
    for left, right in MERGES:
        tokens.append(left + right)
        types.append(TokenType.NORMAL)
    tokens += CONTROL_TOKENS
    types += [TokenType.CONTROL] * len(CONTROL_TOKENS)
    tokens += USER_DEFINED_TOKENS
    types += [TokenType.USER_DEFINED] * len(USER_DEFINED_TOKENS)
    return tokens, [int(kind) for kind in types], [f"{left} {right}" for left, right in MERGES]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (as in its `encoder.py`)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return dict(sorted(mapping.items()))
