"""Ollama-compatible API (`/api/...`) on the LAN listener, over the same engine path as `/v1`."""
