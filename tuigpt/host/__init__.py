"""Wiring a run for the CLI and the monitor alike: the trainer's thread, its sinks (metrics.jsonl, telemetry,
control socket), the front end, signals and the exit code."""
