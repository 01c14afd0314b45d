"""Engines: the daemon-side manager of worker processes and the worker code that runs models.

The daemon side (`manager`, `client`) may import engine.messages, records, config, errors;
`engine.worker` runs in a child process and may import only engine.messages and records
(never fastapi, the store, the API or the UI), so a crash in native code costs one model.
"""
