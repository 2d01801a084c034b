"""The command line: `tuigpt CONFIG` and its subcommands, one module each."""
