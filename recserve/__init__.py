"""The `recserve` command: training's and the service's commands on one parser (recserve/cli.py)."""
