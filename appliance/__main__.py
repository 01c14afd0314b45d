"""`python -m appliance` is the `appliance` command."""

from appliance.cli.main import main

main()
