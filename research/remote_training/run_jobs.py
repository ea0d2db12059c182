"""Run a list of ``spermlib train`` jobs side by side on one machine (e.g. one with a GPU), each into its own log.

A jobs file holds one job per line (a trailing backslash continues it): one or more ``spermlib train`` argument
lists joined by ``&&``, run in order, a stage only after the one before it succeeded (a base recipe, then the
hardening stage that starts from it). ``{fold}`` in a line repeats the job for every fold of ``--folds``. Blank
lines and ``#`` comments are skipped. Jobs start in file order, so put the ones that matter most first.

    python -m research.remote_training.run_jobs research/remote_training/jobs/hushem_sweep.txt \\
        --parallel 12 --common "--device cuda --threads 1" --stop-launching-after 300

``--stop-launching-after`` starts no job later than that many seconds after the first: with a fixed time on the
machine, the jobs that did not start are listed and the finished ones come back complete. Exit status 1 when a
job failed.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

TRAIN = [sys.executable, "-m", "spermlib", "train"]


@dataclass(frozen=True)
class Job:
    name: str  # the log's file name, without suffix
    stages: tuple[tuple[str, ...], ...]  # argument lists of the train command, in order


def read_jobs(text: str, folds: list[int], common: str = "") -> list[Job]:
    """The jobs of a jobs file's ``text``: line by line, each line with ``{fold}`` once per fold of ``folds``."""
    lines = [line.split("#", 1)[0].strip() for line in text.replace("\\\n", " ").splitlines()]
    jobs = []
    for number, line in enumerate((line for line in lines if line), start=1):
        for fold in folds if "{fold}" in line else [None]:
            stages = tuple(tuple(shlex.split(stage.replace("{fold}", str(fold))) + shlex.split(common))
                           for stage in line.split("&&"))
            jobs.append(Job(f"job{number:02d}" + ("" if fold is None else f".fold{fold}"), stages))
    return jobs


def run_job(job: Job, logs: Path, command: list[str] = TRAIN) -> tuple[int, float]:
    """Run ``job``'s stages in order into ``logs/<name>.log``; (exit status of the last stage run, seconds)."""
    t0 = time.monotonic()
    rc = 0
    with open(logs / f"{job.name}.log", "w") as log:
        for stage in job.stages:
            log.write(f"$ {shlex.join([*command, *stage])}\n")
            log.flush()
            rc = subprocess.run([*command, *stage], stdout=log, stderr=subprocess.STDOUT).returncode
            if rc:
                break
    return rc, time.monotonic() - t0


def run_all(jobs: list[Job], logs: Path, parallel: int, stop_launching_after: float | None = None,
            command: list[str] = TRAIN) -> dict[str, int | None]:
    """Every job, ``parallel`` at a time; exit status per job name, ``None`` for a job never started."""
    logs.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()

    def launch(job: Job) -> int | None:
        if stop_launching_after is not None and time.monotonic() - start > stop_launching_after:
            print(f"{job.name}: not started (--stop-launching-after {stop_launching_after:g} s)", flush=True)
            return None
        rc, seconds = run_job(job, logs, command)
        print(f"{job.name}: {'done' if rc == 0 else f'FAILED (exit {rc})'} in {seconds:.0f} s", flush=True)
        return rc

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return dict(zip((j.name for j in jobs), pool.map(launch, jobs)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("jobs", type=Path, help="jobs file")
    ap.add_argument("--folds", default="0,1,2,3,4", help="folds a {fold} line runs (default %(default)s)")
    ap.add_argument("--common", default="", help="arguments added to every stage, e.g. \"--device cuda --threads 1\"")
    ap.add_argument("--parallel", type=int, default=4, help="jobs at a time (default %(default)s)")
    ap.add_argument("--stop-launching-after", type=float, default=None, metavar="SECONDS")
    ap.add_argument("--logs", type=Path, default=Path("runs/remote/logs"), help="default %(default)s")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    jobs = read_jobs(args.jobs.read_text(), [int(k) for k in args.folds.split(",")], args.common)
    if args.dry_run:
        for job in jobs:
            print(f"{job.name}: " + " && ".join(shlex.join([*TRAIN, *stage]) for stage in job.stages))
        return 0
    status = run_all(jobs, args.logs, args.parallel, args.stop_launching_after)
    return int(any(status.values()))


if __name__ == "__main__":
    sys.exit(main())
