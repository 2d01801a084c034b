"""nanoGPT-style .py configs: read without running them, nanoGPT's keys and defaults mapped onto tuigpt's.

The files below have the keys and shapes of nanoGPT's own config/*.py (train_shakespeare_char, finetune_shakespeare,
train_gpt2, eval_gpt2): `5 * 8`, an `import time` used only to name the wandb run, out_dir as the run's
folder, init_from='gpt2*'."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuigpt.run.configfile import load_config, load_config_with_notices
from tuigpt.run.errors import UserError

SHAKESPEARE_CHAR = """
# baby GPT on characters
out_dir = 'out-shakespeare-char'
eval_interval = 250
eval_iters = 200
log_interval = 10
always_save_checkpoint = False
wandb_log = False
wandb_project = 'shakespeare-char'
wandb_run_name = 'mini-gpt'
dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 64
block_size = 256
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
learning_rate = 1e-3
max_iters = 5000
lr_decay_iters = 5000
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100
# device = 'cpu'
"""
FINETUNE = """
import time
out_dir = 'out-shakespeare'
eval_interval = 5
eval_iters = 40
wandb_log = False
wandb_project = 'shakespeare'
wandb_run_name = 'ft-' + str(time.time())
dataset = 'shakespeare'
init_from = 'gpt2-xl'
always_save_checkpoint = False
batch_size = 1
gradient_accumulation_steps = 32
max_iters = 20
learning_rate = 3e-5
decay_lr = False
"""
TRAIN_GPT2 = """
wandb_log = True
wandb_project = 'owt'
wandb_run_name='gpt2-124M'
batch_size = 12
block_size = 1024
gradient_accumulation_steps = 5 * 8
max_iters = 600000
lr_decay_iters = 600000
eval_interval = 1000
eval_iters = 200
log_interval = 10
weight_decay = 1e-1
"""
EVAL_GPT2 = """
batch_size = 8
eval_iters = 500
eval_only = True
wandb_log = False
init_from = 'gpt2'
"""


def write(tmp_path: Path, text: str, name: str = "c.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_train_shakespeare_char_means_what_it_meant_in_nanogpt(tmp_path: Path) -> None:
    cfg, notices = load_config_with_notices(write(tmp_path, SHAKESPEARE_CHAR))
    assert (cfg.out_dir, cfg.run_name, cfg.dataset, cfg.data_path) == (".", "out-shakespeare-char",
                                                                        "shakespeare_char", None)
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.batch_size, cfg.dropout) == (6, 6, 384, 256, 64, 0.2)
    assert (cfg.beta2, cfg.min_lr, cfg.always_save_checkpoint, cfg.eval_iters) == (0.99, 1e-4, False, 200)
    assert (cfg.device, cfg.dtype, cfg.compile, cfg.init_from) == ("auto", "auto", "auto", "scratch")
    # wandb_log = False: no dashboard, but the names are kept for a --log_to=wandb
    assert (cfg.log_to, cfg.log_project, cfg.log_run_name) == ([], "shakespeare-char", "mini-gpt")
    assert not any("wandb" in n for n in notices)


def test_finetune_loads_without_running_its_import(tmp_path: Path) -> None:
    cfg, notices = load_config_with_notices(write(tmp_path, FINETUNE))
    assert (cfg.init_from, cfg.dataset, cfg.gradient_accumulation_steps, cfg.decay_lr) == ("gpt2-xl", "shakespeare",
                                                                                           32, False)
    # nanoGPT's default min_lr (6e-5) is above this learning_rate; without decay it is unused, so not an error
    assert cfg.learning_rate == 3e-5 and cfg.min_lr == 6e-5


def test_unset_keys_take_nanogpts_defaults(tmp_path: Path) -> None:
    cfg, notices = load_config_with_notices(write(tmp_path, TRAIN_GPT2))
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.gradient_accumulation_steps) == (12, 12, 768, 40)
    assert (cfg.run_name, cfg.dataset, cfg.data_path) == ("out", "nanogpt", str(Path("data") / "openwebtext"))
    assert (cfg.warmup_iters, cfg.learning_rate) == (2000, 6e-4)
    assert any("nanoGPT's train.py defaults (n_layer=12, n_embd=768" in n for n in notices)
    assert (cfg.log_to, cfg.log_project, cfg.log_run_name) == (["wandb"], "owt", "gpt2-124M")
    assert any(n.startswith("wandb_log = True: the run also goes to Weights & Biases, project owt") for n in notices)
    cfg = load_config(write(tmp_path, EVAL_GPT2, "e.py"))
    assert (cfg.init_from, cfg.eval_only, cfg.batch_size, cfg.eval_iters) == ("gpt2", True, 8, 500)


def test_earlier_keys_arithmetic_and_fstrings(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "max_iters = 1000\nlr_decay_iters = max_iters\nlearning_rate = 6e-4\n"
                                      "min_lr = learning_rate / 10\nn_layer = 2 ** 3\nwarmup_iters = -(-100)\n"
                                      "out_dir = f'out-{n_layer}L-{learning_rate:.0e}'\n"))
    assert (cfg.lr_decay_iters, cfg.min_lr, cfg.n_layer, cfg.warmup_iters) == (1000, pytest.approx(6e-5), 8, 100)
    assert cfg.run_name == "out-8L-6e-04"


@pytest.mark.parametrize("text, message", [
    ("batch_size = int('12')\n", r"line 1: `int\('12'\)` is not a literal value"),
    ("import os\nn_layer = os.cpu_count()\n", r"line 2: `os.cpu_count\(\)` is not a literal"),
    ("x = 1\nif x:\n    n_layer = 2\n", "line 2: only plain assignments .* an if statement"),
    ("n_layer += 1\n", "line 1: .* in-place update"),
    ("config.n_layer = 2\n", "line 1: assign to a plain key name"),
    ("n_layer = depth\n", "line 1: 'depth' is not a key assigned above"),
    ("n_layer = 10 ** 10 ** 10\n", "exponent .* too large"),
    ("learning_rate = 1 / 0\n", "line 1: .*cannot be computed"),
    ("n_layer = 'a' * 3\n", "does arithmetic on 'a'"),
    ("n_layer = = 3\n", "line 1: not valid python"),
    ("wandb_run_name = str(1)\nout_dir = wandb_run_name\n", r"line 2: uses wandb_run_name, whose line 1 could not"),
    ("n_layers = 4\n", r"unknown config key 'n_layers' .* did you mean n_layer\?"),
    ("wandb_logg = True\n", r"did you mean wandb_log\?"),
    ("run_name = 'x'\n", "set out_dir instead"),
    ("out_dir = '.'\n", "must name the run's own folder"),
    ("dataset = '../secret'\n", "must be a folder name under data/"),
    ("n_layer = 2.5\n", "n_layer=2.5 .* wrong type"),
])
def test_anything_but_plain_values_is_exit_2_naming_the_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_config(write(tmp_path, text))


def test_the_file_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = write(tmp_path, f"__import__('pathlib').Path({str(marker)!r}).touch()\nn_layer = 2\n")
    with pytest.raises(UserError, match="line 1: only plain assignments"):
        load_config(path)
    path = write(tmp_path, f"wandb_run_name = __import__('pathlib').Path({str(marker)!r}).touch()\nn_layer = 2\n")
    assert load_config(path).n_layer == 2  # an ignored key's value is not needed, and never computed
    assert not marker.exists()


def test_overrides_work_as_in_nanogpt(tmp_path: Path) -> None:
    path = write(tmp_path, SHAKESPEARE_CHAR)
    cfg, notices = load_config_with_notices(path, {"device": "cpu", "compile": "False", "out_dir": "runs/out-x",
                                                   "backend": "gloo", "dataset": "openwebtext", "batch_size": "32",
                                                   "wandb_log": "True", "init_from": "resume"})
    assert (cfg.device, cfg.compile, cfg.out_dir, cfg.run_name, cfg.ddp_backend) == ("cpu", False, "runs", "out-x",
                                                                                     "gloo")
    assert (cfg.dataset, cfg.data_path, cfg.batch_size, cfg.init_from) == ("nanogpt", str(Path("data/openwebtext")),
                                                                           32, "resume")
    assert cfg.log_to == ["wandb"] and any(n.startswith("wandb_log = True") for n in notices)
    with pytest.raises(UserError, match=r"'max_iter' in the command line: did you mean max_iters\?"):
        load_config(path, {"max_iter": "10"})
    with pytest.raises(UserError, match="set out_dir instead"):
        load_config(path, {"run_name": "x"})


@pytest.mark.parametrize("text, message", [
    ("x = 10 ** 64\n" + "x = x ** 64\n" * 4, r"line 2: `x \*\* 64` makes an integer of about .* bits"),
    ("x = 3\n" + "x = x * x\n" * 30, r"`x \* x` makes an integer of about .* bits; a config value has at most 1024"),
    ("seed = 0x" + "f" * 100_000 + "\n", "an integer of 400,000 bits"),
    ("wandb_run_name = 2 ** 64 ** 64 ** 64\nn_layer = wandb_run_name\n", "line 2: uses wandb_run_name"),
    ("x = 1\n" + ("x=x" + "+1" * 16 + "\n") * 7000, "evaluates more than 200,000 expressions"),
], ids=["power tower", "squaring chain", "hex literal", "unused but used", "a million nodes"])
def test_a_config_bomb_is_refused_before_it_is_computed(tmp_path: Path, text: str, message: str) -> None:
    import time

    t0 = time.monotonic()
    with pytest.raises(UserError, match=message):
        load_config(write(tmp_path, text))
    assert time.monotonic() - t0 < 10  # each of these ran for minutes (killed at 60 s) before the bound


def test_wandb_keys_become_the_w_and_b_dashboard(tmp_path: Path) -> None:
    cfg, notices = load_config_with_notices(write(tmp_path, "import time\nwandb_log = True\nwandb_project = 'owt'\n"
                                                            "wandb_run_name = 'ft-' + str(time.time())\n"
                                                            "log_to = 'tensorboard'\n"))
    assert (cfg.log_to, cfg.log_project, cfg.log_run_name) == (["tensorboard", "wandb"], "owt", "")
    assert "wandb_run_name could not be used (line 4 is not a plain value): the W&B run is named after the run's " \
           "folder" in notices
    cfg, _ = load_config_with_notices(write(tmp_path, "wandb_project = 'p'\n"), {"wandb_log": "True",
                                                                                 "wandb_run_name": "r1"})
    assert (cfg.log_to, cfg.log_project, cfg.log_run_name) == (["wandb"], "p", "r1")
    for text, message in [("wandb_log = 'yes'\n", "wandb_log='yes' .* must be True or False"),
                          ("wandb_log = True\nwandb_project = str(1)\n", r"line 2: `str\(1\)` is not a literal"),
                          ("wandb_log = True\nwandb_project = 'a b'\n", "log_project='a b' must be a plain name")]:
        with pytest.raises(UserError, match=message):
            load_config(write(tmp_path, text))
