"""Code that runs inside an engine worker process (one per loaded model).

May import only `appliance.engine.messages` and `appliance.records` plus the runtime library
(llama-cpp-python); never fastapi, the store, the API, devices or the UI.
"""
