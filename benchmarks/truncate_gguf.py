"""Write the first K blocks of a llama-family GGUF, with its norm and head: a draft model with
the served model's exact vocabulary where no smaller sibling is at hand (an early-exit drafter).

Benchmark only: it gives `bench_draft_model.py` a same-vocabulary draft model on a box that has
only the embedded SmolLM2. Its guesses are poor, which is what that measurement needs: what an
installed draft model costs where it does not help.

    .venv/bin/python benchmarks/truncate_gguf.py MODEL.gguf OUT.gguf 10
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gguf import GGUFReader, GGUFValueType, GGUFWriter


def truncate(source: Path, target: Path, keep: int) -> None:
    reader = GGUFReader(source)
    arch = str(reader.fields["general.architecture"].contents())
    writer = GGUFWriter(target, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue  # written by GGUFWriter itself
        kind = field.types[0]
        if key == f"{arch}.block_count":
            writer.add_key_value(key, keep, kind)
        elif kind == GGUFValueType.ARRAY:
            writer.add_key_value(key, field.contents(), kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(key, field.contents(), kind)
    for tensor in reader.tensors:
        if tensor.name.startswith("blk.") and int(tensor.name.split(".")[1]) >= keep:
            continue
        writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("keep", type=int, help="blocks to keep, from the first")
    args = parser.parse_args()
    truncate(args.source, args.target, args.keep)
    print(f"wrote {args.target}")


if __name__ == "__main__":
    main()
