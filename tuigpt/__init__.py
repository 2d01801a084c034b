"""tuigpt: train a small GPT from a terminal and watch it live."""

__version__ = "0.1.0"
