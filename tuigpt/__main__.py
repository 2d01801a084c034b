"""`python -m tuigpt` (and `torchrun -m tuigpt`) runs the same CLI as the `tuigpt` command."""

from tuigpt.cli.entry import entry_point

entry_point()
