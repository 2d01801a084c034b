"""Runs across processes: the control socket's framing, its server (in the run) and its follower (`tuigpt watch`)."""
