"""The command-line interface: the only place that prints or turns exceptions into messages and exit codes."""
