"""The Textual management UI (`appliance tui`), installed as `appliance.ui`.

A client of the daemon's admin socket: may import `appliance.client` (and the records and
admin protocol it returns); never the daemon, engines, store, drivers or FastAPI.
"""
