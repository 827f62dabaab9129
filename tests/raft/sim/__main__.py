"""``python -m tests.raft.sim``: ``make sim SEED=n [SEEDS=k] [STEPS=m] [PROFILE=p] [VERBOSE=1]``.

Runs seeds ``SEED .. SEED+SEEDS-1`` for ``STEPS`` events each and prints one line per seed;
a failing seed prints the tail of its trace and the command that replays it. ``PROFILE``
picks how a seed draws its setup (``default``, as CI runs it, or ``harsh``). ``--verbose``
prints every trace line as it happens (use it with one seed). Exit status 1 if any seed
failed.
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.raft.sim.cluster import Simulation
from tests.raft.sim.setup import PROFILES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make sim", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds from --seed")
    parser.add_argument("--steps", type=int, default=3000, help="events of faults per seed")
    parser.add_argument("--verbose", action="store_true", help="print the whole trace")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default")
    parser.add_argument("--trace-lines", type=int, default=300, help="trace tail on failure")
    args = parser.parse_args(argv)
    failed = []
    started = time.monotonic()
    for seed in range(args.seed, args.seed + args.seeds):
        result = Simulation(
            seed,
            steps=args.steps,
            verbose=args.verbose,
            trace_lines=args.trace_lines,
            setup=PROFILES[args.profile],
            profile=args.profile,
        ).run()
        print(result.report() if not result.ok else result.summary(), flush=True)
        if not result.ok:
            failed.append(seed)
    elapsed = time.monotonic() - started
    print(f"{args.seeds - len(failed)}/{args.seeds} seeds passed in {elapsed:.1f} s", end="")
    print(f"; failed: {' '.join(map(str, failed))}" if failed else "")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
