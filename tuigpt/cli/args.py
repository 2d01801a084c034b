"""Argument parsing shared by every subcommand: the top-level help, one-line usage errors (exit 2) and
``--key=value`` overrides."""

from __future__ import annotations

import argparse
import difflib
import re
from typing import Sequence

from tuigpt.run.errors import UserError
from tuigpt.run.fmt import clip, shown

HELP = """\
usage: tuigpt CONFIG.yaml|CONFIG.py [--time 8h | --until 07:00] [--key=value ...] [--headless] [--resume] [--nproc N]
                 [--netcheck] [--compare RUN_DIR]
       tuigpt sample CHECKPOINT [--prompt TEXT] [--max_new_tokens N] [--temperature T] [--top_k K] [--seed S]
                     [--num_samples N] [--device D]
       tuigpt bench CONFIG.yaml [--steps N] [--warmup W] [--compare KEY=V1,V2] [--rounds R] [--key=value ...]
       tuigpt tune CONFIG.yaml [--steps N] [--warmup W] [--rounds R] [--ranks N] [--batch-sizes B1,B2,...]
                   [--only-splits] [--write FILE] [--apply] [--key=value ...]
       tuigpt plan CONFIG.yaml (--time 1h | --until 07:00) [--sizes LxW,...] [--steps N] [--warmup W] [--rule K]
                   [--write FILE] [--apply] [--key=value ...]
       tuigpt watch [RUN_DIR|NAME] [--out_dir DIR] [--compare RUN_DIR]
       tuigpt runs [--out_dir DIR] [--json|--csv|--status [RUN]]
       tuigpt info [--no-measure]
       tuigpt calibrate [CONFIG.yaml [--key=value ...]] [--threads N]
       tuigpt export RUN_DIR --format nanogpt|hf [--checkpoint best|last] [--out DIR]
       tuigpt export-metrics RUN_DIR --format csv|parquet|jsonl [--table scalars|text] [--out FILE]
       tuigpt report [RUN_DIR|NAME] [--out DIR] [--out_dir DIR]
       torchrun ... -m tuigpt netcheck CONFIG.yaml [--rounds N] [--seconds S] [--headless] [--resume] [--key=value ...]

Train a GPT described by CONFIG.yaml and watch it live. In a terminal this opens
the monitor; with --headless, or when output is not a terminal, it prints log lines.
A nanoGPT config (config/train_shakespeare_char.py) works too: it is read, never run.

  --time 8h       end the run 8 hours after it starts (90m, 45s, 1h30m): it plans its
                  iterations and its cooldown to finish then, final eval and checkpoint
                  included; a pause extends it. max_iters becomes a cap
  --until 07:00   end by this clock time (the next 07:00, or 2026-11-24T07:00): the wall
                  clock, a pause eats into it
  --key=value     override any config key (e.g. --max_iters=300 --device=cpu);
                  typed and validated like the file. `--key value` works too.
  --headless      plain log lines (nohup, CI, pipes)
  --resume        continue checkpoints/<run_name>/last.pt with its history (with a new
                  --time/--until after a planned run: from stable.pt, cooling down again)
  --nproc N       train on N processes of this machine (data parallel; they share
                  each iteration's batch: the same tokens per iteration): runs
                  python -m torch.distributed.run --standalone --nproc_per_node=N
                  -m tuigpt CONFIG.yaml <the other arguments>; several machines:
                  torchrun --nnodes ... -m tuigpt CONFIG.yaml (docs/DISTRIBUTED.md)
  --netcheck      several ranks: first measure the link and predict the speed-up
                  over one process (tuigpt netcheck), then train
  --compare DIR   overlay another run's loss curves on the chart (x cycles the x axis)
  -h, --help      this help (also: tuigpt help)
  -V, --version   the installed version

subcommands (each has --help):
  sample          generate text from a checkpoint (tuigpt's, nanoGPT's ckpt.pt, GPT-2 weights;
                  --temperature 0: greedy)
  bench           time N training steps, project run times, compare variants
  tune            the fastest micro-batch / accumulation split (and dtype, compile) of a config's
                  global batch on this machine; --apply trains with it
  plan            which model size to train in a time here: a few sizes timed, the tokens
                  each would see, tokens per parameter, a compute-optimal pick
  watch [RUN_DIR] the monitor on a run in another process (or ended); its keys steer it
  runs            your runs, from any directory: state, iteration, best val loss, tokens/s
                  (--json, --csv: the same for programs)
  info            this machine's CPU, GPU, sensors and peak FLOP/s (--no-measure: nothing timed)
  calibrate       re-measure the peak FLOP/s MFU is reported against (--threads N) and forget the
                  measured dtype/compile choices; with CONFIG: time that config's choices now
  export          write a run's model as nanoGPT's ckpt.pt or Hugging Face GPT-2 weights
  export-metrics  write a run's metrics as a CSV, Parquet or JSONL table (a row per iteration,
                  a column per series) that pandas reads as it is
  report          a run for the morning: Markdown with its loss, learning-rate and speed charts
                  (PNG), every eval, where the time went, the samples eval by eval
  netcheck        under torchrun: will these ranks beat one process? the link, each
                  rank's compute, the predicted speed-up and a verdict

exit codes: 0 done · 1 unexpected error (see train.log); tune/bench --compare: no winner under a changing
            load · 2 bad input · 3 NaN/Inf loss or gradient · 4 checkpoint could not be written ·
            128+N stopped by signal N after saving (130 ctrl+c, 143 SIGTERM, 129 SIGHUP) · 141 output closed
"""


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2, with the option meant when one is close."""

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = ""
        if (unknown := re.match(r"unrecognized arguments: (\S+)", message)) is not None:
            hint = closest_option(unknown.group(1), self.options())
        raise UserError(f"{message}{hint} (see `{self.prog} --help`)")

    def options(self) -> list[str]:
        """This command's own --options."""
        return [s for s in self._option_string_actions if s.startswith("--")]


def closest_option(token: str, options: Sequence[str]) -> str:
    """": did you mean --headless?" for a mistyped option ("--headles"), or ""."""
    name = token.split("=", 1)[0]
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.75)
    return f": did you mean {close[0]}?" if close else ""


def closest_command(word: str, commands: Sequence[str]) -> str | None:
    """The subcommand someone typing ``word`` meant ("sampel" → "sample"), or None."""
    close = difflib.get_close_matches(word, list(commands), n=1, cutoff=0.7)
    return close[0] if close else None


def split_overrides(tokens: Sequence[str], options: Sequence[str] = ()) -> dict[str, str]:
    """``--key=value`` and ``--key value`` pairs into a dict (keys keep their config spelling). ``options``: the
    command's own --options; a token that is no config key but close to one of them is a typo of it, said so."""
    from tuigpt.run.configfile import is_config_key, unknown_key_error

    overrides: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or token == "--":
            raise UserError(f"unexpected argument {shown(token)}: overrides look like --key=value (see tuigpt --help)")
        key, eq, value = token[2:].partition("=")
        if not is_config_key(key.replace("-", "_")):
            if hint := closest_option(f"--{key}", options):
                raise UserError(f"unknown option --{clip(key, 60)}{hint} (see tuigpt --help)")
            if not eq:  # "--headles" is no key that lacks a value: say which key was meant
                raise unknown_key_error(key.replace("-", "_"), "the command line")
        if not eq:
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                raise UserError(f"--{clip(key, 60)} needs a value: write --{clip(key, 60)}=VALUE")
            value = tokens[i + 1]
            i += 1
        overrides[key.replace("-", "_")] = value
        i += 1
    return overrides
