"""The contract between the engine and every front end: events, commands, the one codec, the metrics log,
run directories, config, derived numbers and formatting. Imports neither torch nor textual, nor any other
tuigpt layer."""
