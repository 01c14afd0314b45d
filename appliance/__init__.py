"""The AI appliance daemon core: config, state, model store, engines, API and CLI.

Subpackages own one job each; see the README beside this file for what may import what.
"""

__version__ = "0.1.0"
