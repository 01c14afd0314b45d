"""The model store and the API-key store: owns the SQLite registry and the model files.

May import only `appliance.records`, `appliance.config` and `appliance.errors` (plus the
`gguf` library); never the API, the engine or the UI, which are its clients.

- `db`        opens the database (WAL, foreign keys, migrations by `PRAGMA user_version`)
- `gguf_meta` reads a GGUF header safely into `GGUFMetadata`
- `models`    `ModelStore`: the registry: list, get, remove, verify, GGUF import; content-addressed
              blobs; importers reach it through `staging.Staging` only
- `importing` which importer takes a source: GGUF file, ONNX folder (`onnx_meta`), bundle
              (`bundle`), http(s) URL (`download`); above the registry
- `keys`      `KeyStore`: create, authenticate, list, revoke API keys (only hashes stored)
"""

from __future__ import annotations

from appliance.store.gguf_meta import GGUFMetadata, read_gguf_metadata
from appliance.store.keys import ApiKeyInfo, KeyStore
from appliance.store.models import ModelStore, VerifyResult
from appliance.store.staging import ImportResult

__all__ = [
    "ApiKeyInfo",
    "GGUFMetadata",
    "ImportResult",
    "KeyStore",
    "ModelStore",
    "VerifyResult",
    "read_gguf_metadata",
]
