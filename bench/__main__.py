"""`python -m bench`: run every benchmark (queue, and the simulator's when present).

`--only NAME` (queue, simulator, plpython, pacing, pacer_db, engine, listener) runs one; any further
arguments go to that benchmark.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

BENCHMARKS = {
    "queue": "bench.bench_queue",
    "simulator": "bench.bench_simulator",
    "plpython": "bench.bench_plpython",
    "pacing": "bench.bench_pacing",
    "pacer_db": "bench.bench_pacer_db",
    "engine": "bench.bench_engine",
    "listener": "bench.bench_listener",
}


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", choices=sorted(BENCHMARKS), help="run this benchmark only")
    args, rest = parser.parse_known_args(argv)
    if rest and not args.only:
        parser.error("extra arguments need --only NAME: " + " ".join(rest))

    names = [args.only] if args.only else list(BENCHMARKS)
    status = 0
    for name in names:
        module_name = BENCHMARKS[name]
        if not available(module_name):
            message = f"bench: {name}: {module_name} does not exist"
            if args.only:
                print(message, file=sys.stderr)
                return 2
            print(message + ", skipped")
            continue
        print(f"== {name} ==", flush=True)
        module = importlib.import_module(module_name)
        result = module.main(rest if args.only else [])
        status = status or int(result or 0)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
