"""TrainConfig: every key a run takes, its default, and the checks made before training starts.

Values come from a YAML file (read with safe_load) or a nanoGPT-style python config (read without running it,
:mod:`tuigpt.run.pyconfig`) and ``--key=value`` overrides, which go through the same typing and validation.
Problems raise UserError with one line naming the key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field
from typing import Any

from tuigpt.run.alerts import split_command
from tuigpt.run.commands import MAX_SAMPLE_TOKENS, MAX_TEMPERATURE, MAX_TOP_K
from tuigpt.run.deadline import check_deadline_syntax, parse_duration
from tuigpt.run.errors import UserError
from tuigpt.run.fmt import shown

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
COMPILE_MODES = ("auto", "true", "false")
DDP_BACKENDS = ("auto", "gloo", "nccl")
OPTIMIZERS = ("adamw", "muon")
SCHEDULES = ("cosine", "wsd")
COOLDOWN_SHAPES = ("linear", "cosine")
MAX_CONFIG_BYTES = 1 << 20  # a config is a page of key: value lines; anything bigger is a mistake


@dataclass
class TrainConfig:
    # --- run and output
    run_name: str = ""  # checkpoints/<run_name>/; empty: the config file's name
    out_dir: str = "checkpoints"  # parent of every run directory
    eval_interval: int = 250  # evaluate (and write last.pt) every this many iterations
    log_interval: int = 10  # one headless line and one metrics.jsonl record every this many iterations
    eval_iters: int = 50  # batches per split averaged by each evaluation
    eval_only: bool = False  # evaluate once and exit (with --resume: the saved model)
    always_save_checkpoint: bool = True  # write last.pt at every eval; false: only when val loss improves
    checkpoint_every_minutes: float = 0.0  # also write last.pt after this many minutes without one (0: off)
    init_from: str = "scratch"  # scratch | resume | a tuigpt or nanoGPT .pt | a Hugging Face GPT-2 folder | gpt2*
    # --- data
    dataset: str = "shakespeare_char"  # shakespeare_char | shakespeare (gpt2 BPE) | text | nanogpt | hf | shards
    data_path: str | None = None  # FILE, DIR (all *.txt) or GLOB of UTF-8 text to train on instead
    tokenizer: str = "auto"  # auto (the dataset's) | char | gpt2 | any tiktoken encoding name
    hf_name: str | None = None  # dataset: hf: a dataset in the local Hugging Face cache, or a folder of its files
    hf_subset: str | None = None  # dataset: hf: its configuration (e.g. wikitext-2-raw-v1); empty: the default
    hf_split: str = "train"  # dataset: hf: the split to train on
    hf_val_split: str | None = None  # dataset: hf: the split to evaluate on; empty: the last 10% of hf_split's tokens
    hf_text_field: str = "text"  # dataset: hf: the column holding the text
    # --- batch
    gradient_accumulation_steps: int = 1  # micro-batches summed into one optimizer step
    batch_size: int = 12  # sequences per micro-batch
    block_size: int = 64  # context length in tokens
    # --- model
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0  # 0 for pre-training small models, 0.1-0.2 when over-fitting
    bias: bool = False  # biases in Linear and LayerNorm layers (GPT-2 has them)
    # --- the block (issue 22): arch names the defaults of the switches below; each one set overrides it
    arch: str = "gpt2"  # gpt2 (nanoGPT's block: every switch off) | modern (nanochat's: every switch on)
    rope: bool | None = None  # rotary position embeddings instead of learned ones
    qk_norm: bool | None = None  # queries and keys RMS-normalised per head
    relu2: bool | None = None  # ReLU² instead of GELU in the MLP
    rmsnorm: bool | None = None  # parameter-free RMSNorm (also after the embedding) instead of LayerNorm
    untied_head: bool | None = None  # the output layer its own matrix, not the token embedding
    zero_init: bool | None = None  # attention and MLP output projections start at zero
    logit_softcap: float | None = None  # logits squashed into (-cap, cap) by cap·tanh(x/cap); 0: off
    # --- optimizer and schedule
    optimizer: str = "adamw"  # adamw | muon (Muon on the hidden matrices, AdamW on embeddings, head and gains)
    learning_rate: float = 1e-3  # peak learning rate
    max_iters: int | None = 2000  # total optimizer steps; with a time_budget or deadline a cap, empty: planned
    weight_decay: float = 0.1  # applied to 2-D weights only
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # clip gradient norm at this value; 0 disables
    decay_lr: bool = True  # cosine decay to min_lr after warmup; false: constant learning_rate
    warmup_iters: int = 100  # linear warmup steps
    lr_decay_iters: int | None = None  # cosine ends here; empty: max_iters
    min_lr: float | None = None  # floor of the decay; empty: learning_rate / 10
    schedule: str = "cosine"  # cosine (decay from the warmup on) | wsd (peak held, then a cooldown at the end)
    cooldown_frac: float = 0.2  # wsd: the last this fraction of lr_decay_iters cools down to min_lr
    cooldown_shape: str = "linear"  # wsd: the cooldown's shape, linear | cosine
    muon_lr: float = 0.02  # optimizer muon: the hidden matrices' peak learning rate (the schedule scales it too)
    muon_momentum: float = 0.95  # optimizer muon: Nesterov momentum of the matrices' gradients
    muon_weight_decay: float = 0.0  # optimizer muon: decoupled weight decay of the matrices (times their lr)
    # --- ending on time (see run/deadline.py): the run plans its iterations and its cooldown to end then
    time_budget: str | None = None  # e.g. 8h, 90m, 45s: run time from the start, pauses extend it (--time)
    deadline: str | None = None  # e.g. 07:00 (the next one) or 2026-11-24T07:00: the wall clock (--until)
    # --- system
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # auto (timed here: float32 vs the device's 16-bit dtype) | float32 | bfloat16 | float16
    compile: bool | str = "auto"  # torch.compile: auto (timed here, on where it wins and repays) | true | false
    # CUDA graphs of the eager step (one GPU, not compiled): auto (kept where replays are timed faster) | true | false
    cuda_graphs: bool | str = "auto"
    seed: int = 1337
    num_threads: int = 0  # CPU threads for torch; 0: all physical cores
    telemetry_interval: float = 1.0  # seconds between CPU/GPU telemetry readings; 0 disables
    # --- several processes (torchrun; see docs/DISTRIBUTED.md)
    ddp_backend: str = "auto"  # auto (nccl on CUDA, gloo on CPU) | gloo | nccl
    ddp_timeout: float = 300.0  # seconds a collective may wait for the other ranks before the run fails
    # --- sampling (the `s` key, evals, `tuigpt sample` defaults)
    sample_max_new_tokens: int = 200
    sample_temperature: float = 0.8
    sample_top_k: int | None = 200  # empty: no top-k filtering
    sample_every_eval: bool = False  # after every eval, a sample from a fixed prompt and seed (the sample timeline)
    # --- health and alerts
    on_nan: str = "auto"  # a NaN/Inf loss or gradient: auto (pause in the monitor, stop headless) | pause | stop | rewind
    nan_max_rewinds: int = 3  # on_nan: rewind gives up (pauses or stops) after this many rewinds
    nan_lr_factor: float = 0.5  # each rewind multiplies the learning rate by this
    stall_factor: float = 10.0  # no iteration for this many times the median step time is a stall; 0 disables
    stall_min_seconds: float = 30.0  # ...and never less than this many seconds
    alerts: bool = True  # bell + desktop notification (OSC 9/777) + toast or marked line on done, failure, trouble
    alert_command: str | None = None  # run on each alert, without a shell; the event JSON on stdin
    plateau_evals: int = 0  # val loss not improved in this many evals in a row: an alert (0: never)
    plateau_stop: bool = False  # ... and the run stops there, saving last.pt
    target_loss: float | None = None  # project when the smoothed loss reaches this (status line, runs, chart)
    # --- dashboards (the packages are optional extras: pip install 'tuigpt[dashboards]')
    log_to: list[str] = field(default_factory=list)  # any of tensorboard, wandb, trackio: the run goes there too
    log_project: str = "tuigpt"  # the W&B and trackio project
    log_run_name: str = ""  # the run's name in W&B and trackio; empty: run_name
    # --- files
    share_with_group: bool = False  # false: run directory 0700, files 0600; true: 0750/0640 (the group reads)

    def __post_init__(self) -> None:
        _require(self.arch in ARCHS, "arch", self.arch, "must be one of " + ", ".join(ARCHS))
        for key, value in ARCHS[self.arch].items():  # an unset switch takes arch's value; a set one stays
            if getattr(self, key) is None:
                setattr(self, key, value)
        self.validate()

    # ------------------------------------------------------------ derived
    @property
    def effective_lr_decay_iters(self) -> int:
        """Where the schedule ends without a plan (a planned run's schedule ends where its plan does)."""
        if self.lr_decay_iters is not None:
            return self.lr_decay_iters
        return self.max_iters if self.max_iters is not None else INT_RANGES["max_iters"][1]

    @property
    def planned(self) -> bool:
        """The run ends at a time (time_budget or deadline): its length and cooldown are planned as it goes."""
        return self.time_budget is not None or self.deadline is not None

    @property
    def effective_min_lr(self) -> float:
        return self.learning_rate / 10 if self.min_lr is None else self.min_lr

    def without_end(self) -> TrainConfig:
        """The same run with no time_budget or deadline (max_iters 0 when the plan would have set it): bench and
        tune time its steps, nothing plans them."""
        return dataclasses.replace(self, time_budget=None, deadline=None, max_iters=self.max_iters or 0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------ checks
    def validate(self) -> None:
        """Refuse values and combinations that cannot train (all checkable before any data is read)."""
        for name, (lo, hi) in INT_RANGES.items():
            value = getattr(self, name)
            _require(value is None or lo <= value <= hi, name, value, f"must be {range_text(name)}")
        for name, (lo, hi, lo_open, hi_open) in FLOAT_RANGES.items():
            value = getattr(self, name)
            if value is None:
                continue
            _require(math.isfinite(value), name, value, "must be a finite number")
            inside = (lo < value if lo_open else lo <= value) and (value < hi if hi_open else value <= hi)
            _require(inside, name, value, f"must be {range_text(name)}")
        _require(self.telemetry_interval == 0 or self.telemetry_interval >= MIN_TELEMETRY_INTERVAL,
                 "telemetry_interval", self.telemetry_interval, f"must be 0 (off) or {range_text('telemetry_interval')}")
        self._validate_health()
        self._validate_end()
        if self.decay_lr and self.effective_min_lr > self.learning_rate:  # min_lr is unused without decay
            raise UserError(f"min_lr {self.effective_min_lr:g} is above learning_rate {self.learning_rate:g}: "
                            f"set min_lr to at most learning_rate")
        if self.decay_lr and self.lr_decay_iters is not None and self.warmup_iters > self.lr_decay_iters:
            raise UserError(f"warmup_iters {self.warmup_iters} is longer than lr_decay_iters "
                            f"{self.effective_lr_decay_iters}: shorten warmup_iters or raise lr_decay_iters")
        if self.n_embd % self.n_head:
            raise UserError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}: "
                            f"pick n_embd as a multiple of n_head (e.g. n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))})")
        if self.rope and (self.n_embd // self.n_head) % 2:
            raise UserError(f"rope rotates pairs of channels, and the head size n_embd / n_head = "
                            f"{self.n_embd // self.n_head} is odd: pick an even head size, or set rope=false")
        _require(self.logit_softcap == 0 or self.logit_softcap >= MIN_SOFTCAP, "logit_softcap", self.logit_softcap,
                 f"must be 0 (off) or {range_text('logit_softcap')}")
        _require(valid_device(self.device), "device", self.device, "must be one of auto, cpu, cuda, cuda:N, mps")
        _require(self.dtype in DTYPES, "dtype", self.dtype, "must be one of " + ", ".join(DTYPES))
        _require(self.compile in (True, False, "auto"), "compile", self.compile, "must be auto, true or false")
        _require(self.cuda_graphs in (True, False, "auto"), "cuda_graphs", self.cuda_graphs,
                 "must be auto, true or false")
        _require(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, "must be one of " + ", ".join(OPTIMIZERS))
        _require(self.schedule in SCHEDULES, "schedule", self.schedule, "must be one of " + ", ".join(SCHEDULES))
        _require(self.cooldown_shape in COOLDOWN_SHAPES, "cooldown_shape", self.cooldown_shape,
                 "must be one of " + ", ".join(COOLDOWN_SHAPES))
        _require(self.ddp_backend in DDP_BACKENDS, "ddp_backend", self.ddp_backend,
                 "must be one of " + ", ".join(DDP_BACKENDS))
        _require(bool(self.dataset.strip()) and len(self.dataset) <= MAX_NAME_CHARS, "dataset", self.dataset,
                 f"must be a dataset name (at most {MAX_NAME_CHARS} characters)")
        _require(len(self.tokenizer) <= MAX_NAME_CHARS, "tokenizer", self.tokenizer,
                 f"must be a tokenizer name (at most {MAX_NAME_CHARS} characters)")
        _require(bool(self.init_from.strip()), "init_from", self.init_from,
                 "must be scratch, resume, a checkpoint file, a Hugging Face GPT-2 folder or a gpt2 model name")
        _require(self.run_name == "" or _safe_name(self.run_name), "run_name", self.run_name,
                 "must be a plain folder name (letters, digits, . _ -)")
        _require(len(self.run_name.encode()) <= MAX_RUN_NAME_BYTES, "run_name", self.run_name,
                 f"is too long: at most {MAX_RUN_NAME_BYTES} bytes")
        for name in ("out_dir", "data_path", "init_from"):
            problem = path_problem(getattr(self, name))
            _require(problem is None, name, getattr(self, name), problem or "")
        self._validate_dashboards()
        self._validate_hf()

    def _validate_hf(self) -> None:
        for name in ("hf_name", "hf_subset", "hf_split", "hf_val_split", "hf_text_field"):
            value = getattr(self, name)
            _require(value is None or (0 < len(value) <= MAX_PATH_BYTES and value.isprintable()), name, value,
                     "must be a printable name" + (" or path" if name == "hf_name" else ""))
        for name in ("hf_name", "hf_subset", "hf_val_split"):
            _require(self.dataset == "hf" or getattr(self, name) is None, name, getattr(self, name),
                     f"is set but dataset is {self.dataset}: set dataset: hf to train on a Hugging Face dataset")

    def _validate_dashboards(self) -> None:
        _require(isinstance(self.log_to, list) and all(isinstance(s, str) for s in self.log_to), "log_to",
                 self.log_to, f"must be a list of {', '.join(SINKS)}")
        for sink in self.log_to:
            close = difflib.get_close_matches(sink, SINKS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            _require(sink in SINKS, "log_to", sink, f"is not a dashboard tuigpt logs to{hint}: use {', '.join(SINKS)}")
        _require(len(set(self.log_to)) == len(self.log_to), "log_to", self.log_to, "names a dashboard twice")
        # W&B refuses / \ # ? % : in a project name and trackio names a file after it: a plain name suits both
        _require(0 < len(self.log_project) <= MAX_NAME_CHARS and _safe_name(self.log_project), "log_project",
                 self.log_project, f"must be a plain name (letters, digits, . _ -; at most {MAX_NAME_CHARS})")
        _require(len(self.log_run_name) <= MAX_NAME_CHARS and all(c.isprintable() for c in self.log_run_name),
                 "log_run_name", self.log_run_name, f"must be a printable name of at most {MAX_NAME_CHARS} characters")

    def _validate_end(self) -> None:
        if self.time_budget is not None and self.deadline is not None:
            raise UserError(f"time_budget={shown(self.time_budget)} and deadline={shown(self.deadline)} are both set: "
                            f"keep one (--time counts run time, --until the wall clock)")
        if self.time_budget is not None:
            parse_duration(self.time_budget)
        if self.deadline is not None:
            check_deadline_syntax(self.deadline)
        if self.max_iters is None and not self.planned:
            raise UserError("config key max_iters is empty, and nothing else says when the run ends: set max_iters, "
                            "or a time_budget (--time 10m) or deadline (--until 07:00) to plan it")

    def _validate_health(self) -> None:
        _require(self.on_nan in ("auto", "pause", "stop", "rewind"), "on_nan", self.on_nan,
                 "must be one of auto, pause, stop, rewind")
        _require(self.stall_factor == 0 or self.stall_factor >= MIN_STALL_FACTOR, "stall_factor", self.stall_factor,
                 f"must be 0 (off) or {range_text('stall_factor')}")
        split_command(self.alert_command or "")  # run without a shell: split as a shell would (bad quotes: UserError)
        _require(not self.plateau_stop or self.plateau_evals > 0, "plateau_stop", self.plateau_stop,
                 "needs plateau_evals: how many evals without a better val loss end the run (e.g. plateau_evals=5)")


# The range of every numeric key: what the code can run. Integers end up in C types (seed, num_threads), floats
# must not overflow float32 in the optimizer (learning_rate), and a step, an eval or a sample must end in a time
# a user would wait for (eval_iters, gradient_accumulation_steps, sample_max_new_tokens).
INT_RANGES: dict[str, tuple[int, int]] = {
    "eval_interval": (1, 1_000_000_000), "log_interval": (1, 1_000_000_000), "eval_iters": (1, 10_000),
    "gradient_accumulation_steps": (1, 10_000), "batch_size": (1, 65_536), "block_size": (1, 1_048_576),
    "n_layer": (1, 1_000), "n_head": (1, 1_024), "n_embd": (1, 65_536), "max_iters": (0, 10**12),
    "warmup_iters": (0, 10**12), "lr_decay_iters": (1, 10**12), "seed": (0, 2**32 - 1), "num_threads": (0, 4_096),
    "sample_max_new_tokens": (1, MAX_SAMPLE_TOKENS), "sample_top_k": (1, MAX_TOP_K), "nan_max_rewinds": (0, 100),
    "plateau_evals": (0, 1_000_000),
}
# (low, high, low excluded, high excluded)
FLOAT_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "dropout": (0.0, 1.0, False, True), "learning_rate": (0.0, 10.0, True, False), "min_lr": (0.0, 10.0, False, False),
    "weight_decay": (0.0, 100.0, False, False), "beta1": (0.0, 1.0, False, True), "beta2": (0.0, 1.0, False, True),
    "grad_clip": (0.0, 1e6, False, False), "sample_temperature": (0.0, MAX_TEMPERATURE, False, False),
    "telemetry_interval": (0.0, 3600.0, False, False), "ddp_timeout": (1.0, 604_800.0, False, False),
    "nan_lr_factor": (0.0, 1.0, True, False), "stall_factor": (0.0, 1000.0, False, False),
    "stall_min_seconds": (0.0, 86_400.0, False, False), "target_loss": (0.0, 1000.0, True, False),
    "checkpoint_every_minutes": (0.0, 10_080.0, False, False),
    "cooldown_frac": (0.0, 1.0, False, False), "muon_lr": (0.0, 10.0, True, False),
    "muon_momentum": (0.0, 1.0, False, True), "muon_weight_decay": (0.0, 100.0, False, False),
    "logit_softcap": (0.0, 1000.0, False, False),
}
MIN_TELEMETRY_INTERVAL = 0.1  # seconds; faster readings would cost the training they measure
MIN_STALL_FACTOR = 2.0  # a step twice the median is noise, not a stall
MIN_SOFTCAP = 1.0  # a cap below 1 squashes every logit to near 0: the loss cannot fall below ln(vocab)
MAX_RUN_NAME_BYTES = 200  # a folder name (the file system allows 255 bytes)
MAX_NAME_CHARS = 100  # dataset, tokenizer, log_project, log_run_name
SINKS = ("tensorboard", "wandb", "trackio")  # what log_to may name
MAX_PATH_BYTES = 4000  # PATH_MAX is 4096 on Linux
MAX_COMPONENT_BYTES = 255  # NAME_MAX


def range_text(key: str) -> str:
    """A key's accepted range as the README and the error lines write it."""
    if key in INT_RANGES:
        lo, hi = INT_RANGES[key]
        return f"an integer from {lo:,} to {hi:,}"
    lo, hi, lo_open, hi_open = FLOAT_RANGES[key]
    if key == "telemetry_interval":  # 0 is off; the README and the error lines say so
        lo = MIN_TELEMETRY_INTERVAL
    elif key == "stall_factor":
        lo = MIN_STALL_FACTOR
    elif key == "logit_softcap":
        lo = MIN_SOFTCAP
    def num(v: float) -> str:
        return f"{v:,.0f}" if float(v).is_integer() else f"{v:g}"

    if not (lo_open or hi_open):
        return f"a number from {num(lo)} to {num(hi)}"
    low = f"above {num(lo)}" if lo_open else f"at least {num(lo)}"
    high = f"below {num(hi)}" if hi_open else f"at most {num(hi)}"
    return f"a number {low} and {high}"


def path_problem(path: str | None) -> str | None:
    """Why a path cannot name a file on this system (NUL byte, too long), or None."""
    if path is None:
        return None
    if "\0" in path:
        return "contains a NUL byte"
    try:
        encoded = os.fsencode(path)
    except UnicodeError:
        return "is not a valid file name (characters the file system cannot encode)"
    if len(encoded) > MAX_PATH_BYTES:
        return f"is too long: {len(encoded):,} bytes, at most {MAX_PATH_BYTES:,}"
    if any(len(part) > MAX_COMPONENT_BYTES for part in encoded.split(b"/")):
        return f"has a folder or file name longer than {MAX_COMPONENT_BYTES} bytes"
    return None


# What a resume may change, for every key (checked at import: a new key without a policy fails at once).
#   MATCH   the checkpoint is unusable with another value (model shape, meaning of the tokens): exit 2
#   APPLY   the new value is used from the resumed iteration on, and the change is reported
#   KEEP    the checkpoint's value is kept (its random streams continue), and the ignored change is reported
MATCH, APPLY, KEEP = "must match", "applied", "kept from the checkpoint"
RESUME_POLICY: dict[str, str] = {
    "run_name": APPLY, "out_dir": APPLY, "eval_interval": APPLY, "log_interval": APPLY, "eval_iters": APPLY,
    "eval_only": APPLY, "always_save_checkpoint": APPLY, "checkpoint_every_minutes": APPLY, "init_from": KEEP,
    "dataset": MATCH, "data_path": APPLY, "tokenizer": MATCH, "hf_name": APPLY, "hf_subset": APPLY, "hf_split": APPLY,
    "hf_val_split": APPLY, "hf_text_field": APPLY,
    "gradient_accumulation_steps": APPLY, "batch_size": APPLY, "block_size": MATCH,
    "n_layer": MATCH, "n_head": MATCH, "n_embd": MATCH, "dropout": APPLY, "bias": MATCH,
    # the block: the weights mean another function under another switch (rope, rmsnorm and untied_head change
    # their shapes too); zero_init only chose the first weights
    "arch": MATCH, "rope": MATCH, "qk_norm": MATCH, "relu2": MATCH, "rmsnorm": MATCH, "untied_head": MATCH,
    "zero_init": KEEP, "logit_softcap": MATCH,
    "learning_rate": APPLY, "max_iters": APPLY, "weight_decay": APPLY, "beta1": APPLY, "beta2": APPLY,
    "grad_clip": APPLY, "decay_lr": APPLY, "warmup_iters": APPLY, "lr_decay_iters": APPLY, "min_lr": APPLY,
    "schedule": APPLY, "cooldown_frac": APPLY, "cooldown_shape": APPLY, "optimizer": MATCH, "muon_lr": APPLY,
    "muon_momentum": APPLY, "muon_weight_decay": APPLY,
    "time_budget": APPLY, "deadline": APPLY,
    "device": APPLY, "dtype": APPLY, "compile": APPLY, "cuda_graphs": APPLY, "seed": KEEP, "num_threads": APPLY,
    "telemetry_interval": APPLY, "ddp_backend": APPLY, "ddp_timeout": APPLY,
    "sample_max_new_tokens": APPLY, "sample_temperature": APPLY, "sample_top_k": APPLY, "sample_every_eval": APPLY,
    "on_nan": APPLY, "nan_max_rewinds": APPLY, "nan_lr_factor": APPLY, "stall_factor": APPLY,
    "stall_min_seconds": APPLY, "alerts": APPLY, "alert_command": APPLY, "target_loss": APPLY,
    "plateau_evals": APPLY, "plateau_stop": APPLY,
    "log_to": APPLY, "log_project": APPLY, "log_run_name": APPLY, "share_with_group": APPLY,
}
# keys whose change alters the tokens each iteration trains on: the report says so
TOKENS_PER_ITER_KEYS = ("batch_size", "gradient_accumulation_steps")
# why a KEEP key keeps the checkpoint's value, in the resume report
KEEP_WHY = {"seed": "its random streams continue", "init_from": "a resumed run continues from its own weights",
            "zero_init": "it only chose the first weights"}
# the block switches, and what each arch sets them to: gpt2 is nanoGPT's block (every switch off), modern is
# nanochat's (github.com/karpathy/nanochat nanochat/gpt.py; its soft-cap is 15)
SWITCHES = ("rope", "qk_norm", "relu2", "rmsnorm", "untied_head", "zero_init", "logit_softcap")
GPT2_SWITCHES: dict[str, Any] = {"rope": False, "qk_norm": False, "relu2": False, "rmsnorm": False,
                                 "untied_head": False, "zero_init": False, "logit_softcap": 0.0}
ARCHS: dict[str, dict[str, Any]] = {
    "gpt2": GPT2_SWITCHES,
    "modern": {"rope": True, "qk_norm": True, "relu2": True, "rmsnorm": True, "untied_head": True,
               "zero_init": True, "logit_softcap": 15.0},
}
# a config stored before the arch key existed (a checkpoint's, a nanoGPT one) meant GPT-2's block, whatever
# arch's default is now
STORED_ARCH = "gpt2"
# the model: with init_from they come from the source model, not from the config
MODEL_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "bias", *SWITCHES)
SCRATCH, RESUME = "scratch", "resume"


def arch_of(switches: dict[str, Any]) -> str | None:
    """The arch whose switches these are, or None (a mix)."""
    return next((name for name, values in ARCHS.items() if all(switches[k] == v for k, v in values.items())), None)


def _check_policy_covers_every_key() -> None:
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    missing = sorted(set(names) - set(RESUME_POLICY))
    extra = sorted(set(RESUME_POLICY) - set(names))
    if missing or extra:
        raise RuntimeError(f"RESUME_POLICY is out of date: no policy for {missing}, unknown keys {extra}")


_check_policy_covers_every_key()


def valid_device(device: object) -> bool:
    """The devices tuigpt trains and samples on: auto, cpu, cuda, cuda:N, mps."""
    if not isinstance(device, str):
        return False
    prefix, _, index = device.partition(":")
    return device in ("auto", "cpu", "cuda", "mps") or (prefix == "cuda" and index.isdigit() and len(index) < 6)


def _safe_name(name: str) -> bool:
    return name not in (".", "..") and all(c.isalnum() or c in "._-" for c in name)


def _require(ok: bool, key: str, value: Any, why: str) -> None:
    if not ok:
        raise UserError(f"config key {key}={shown(value)} {why}")
