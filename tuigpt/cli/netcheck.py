"""`tuigpt netcheck CONFIG.yaml [--rounds N] [--key=value ...]`, launched by torchrun exactly like training:
measure the link and every rank's compute with the config's own model, and predict whether these ranks
train faster than one process (:mod:`tuigpt.engine.netcheck`)."""

from __future__ import annotations

from tuigpt.cli.args import Parser, split_overrides
from tuigpt.run.errors import UserError
from tuigpt.run.exits import EXIT_ERROR, EXIT_OK

NETCHECK_HELP = """\
usage: torchrun --nnodes=2 --node_rank=R --nproc_per_node=1 --master_addr=HOST --master_port=PORT \\
           -m tuigpt netcheck CONFIG.yaml [--rounds N] [--seconds S] [--key=value ...]

Will these machines train CONFIG faster together than one alone? Launch it exactly as
you would launch the training (one command per machine; on one machine:
torchrun --standalone --nproc_per_node=2 -m tuigpt netcheck CONFIG.yaml). Every rank
builds the config's model, wraps it in DistributedDataParallel, and times:
  - one optimizer step per round on each rank: compute per micro-step, and the
    all-reduce left exposed after it overlaps the backward (DDP's own buckets);
  - the link alone: all-reduces of the gradient's bucket sizes (time, bandwidth)
    and of one number (latency).
Rank 0 prints each rank's compute, the all-reduce against the backward, the
slowest/fastest rank ratio, the predicted speed-up over one process on the same
global batch, and a verdict. The first line names the network interface gloo uses.
Nothing is written. `tuigpt CONFIG.yaml --netcheck` does the same before training.

  --rounds N     at least N timed iterations (default 5) ...
  --seconds S    ... and more until S seconds of them are timed (default 3; longer
                 on a jittery link such as Wi-Fi)
  --key=value    override any config key, as for training (e.g. --batch_size=16)
  --headless, --resume  accepted, so a training command line works with `netcheck`
                 put in; they change nothing (netcheck writes nothing)
  -h, --help     this help

exit codes: 0 measured · 1 a rank was lost · 2 bad input (config, launch, no route)
"""

LAUNCH_HINT = ("launch it like training, one command per machine: `torchrun --nnodes=2 --node_rank=R "
               "--nproc_per_node=1 --master_addr=NODE0_ADDRESS --master_port=29500 -m tuigpt netcheck CONFIG`, "
               "or on one machine `torchrun --standalone --nproc_per_node=2 -m tuigpt netcheck CONFIG`")


def main(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(NETCHECK_HELP, end="")
        return EXIT_OK
    parser = Parser(prog="tuigpt netcheck", add_help=False, allow_abbrev=False)
    parser.add_argument("config")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    for flag in ("--headless", "--resume"):  # a training command line with `netcheck` put in works as it is
        parser.add_argument(flag, action="store_true")
    ns, rest = parser.parse_known_args(args)
    if ns.config.startswith("--"):
        raise UserError(f"the first argument must be a config file, not {ns.config!r} (e.g. tuigpt netcheck "
                        f"configs/train_cpu_optimized.yaml)")
    if ns.rounds is not None and ns.rounds < 1:
        raise UserError(f"--rounds must be a positive integer, not {ns.rounds}")
    if ns.seconds is not None and not 0 <= ns.seconds <= 3600:
        raise UserError(f"--seconds must be between 0 and 3600, not {ns.seconds:g}")
    from tuigpt.run.configfile import load_config

    config = load_config(ns.config, split_overrides(rest, parser.options()))
    from tuigpt.engine.distributed import launch_env

    env = launch_env()
    if env is None or env.world_size < 2:
        raise UserError(f"netcheck measures what several ranks gain over one, and this is a single process: "
                        f"{LAUNCH_HINT}")
    from tuigpt.engine.netcheck import MIN_SECONDS, ROUNDS
    from tuigpt.host.wiring import check_link, join

    cluster = join(config, env)
    if cluster is None:
        return EXIT_ERROR
    check_link(config, cluster, ns.rounds or ROUNDS, MIN_SECONDS if ns.seconds is None else ns.seconds)
    cluster.close()
    return EXIT_OK
