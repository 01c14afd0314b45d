"""Clients of the daemon's admin API (httpx over the Unix socket), for the CLI and the TUI.

May import api.admin.protocol, errors, records; never fastapi, engine, store, devices or ui.
"""

from appliance.client.admin import AdminClient, AsyncAdminClient

__all__ = ["AdminClient", "AsyncAdminClient"]
