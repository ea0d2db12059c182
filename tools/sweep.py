"""Run a recipe sweep of ``python -m spermlib train`` jobs in parallel (one process per arch × fold).

Made for a lent GPU machine, where one small HuSHeM fold leaves the card mostly idle, so a dozen
folds train side by side. Every job is the project's own CLI; this only schedules them and lines up
their cards. Model selection stays on inner validation: the winner of the first arch's configurations
is the one with the best mean inner-val macro-F1 over all folds (test folds are never read), and the
``--then-arch`` archs are trained with that winner only.

    python tools/sweep.py --dataset hushem --out runs/sweep --parallel 12 \\
        --config base= --config px224="--input-size 224" --then-arch effnet \\
        --extra "--device cuda --pretrained offline --threads 1"

Then line a configuration up against the shipped checkpoints with
``python -m spermlib tune --dataset hushem --arch effnet_cbam --run px224=runs/sweep/px224``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python tools/sweep.py` from a checkout, no install needed

from spermlib.store.cards import card_path, checkpoint_path, read_card  # noqa: E402


def job_command(dataset: str, arch: str, fold: int, name: str, out: Path, args: str, extra: str) -> list[str]:
    return [sys.executable, "-m", "spermlib", "train", "--dataset", dataset, "--arch", arch, "--fold", str(fold),
            "--checkpoints", str(out / name), "--runs", str(out / f"{name}-runs"),
            *shlex.split(args), *shlex.split(extra)]


def read_scores(dataset: str, arch: str, folder: Path, folds: int) -> dict[int, dict]:
    """Inner-val scores of the finished folds in ``folder`` (``{fold: card['inner_val']}``)."""
    scores = {}
    for k in range(folds):
        path = checkpoint_path(dataset, arch, k, folder)
        if card_path(path).is_file():
            c = read_card(path)
            scores[k] = {**c["inner_val"], "best_epoch": c["best_epoch"], "seconds": c["training_seconds"]}
    return scores


def summarize(dataset: str, arch: str, configs: dict[str, str], out: Path, folds: int) -> dict[str, dict]:
    rows = {}
    for name, args in configs.items():
        s = read_scores(dataset, arch, out / name, folds)
        complete = len(s) == folds
        rows[name] = {
            "args": args, "folds_done": sorted(s), "complete": complete,
            "mean_macro_f1": sum(v["macro_f1"] for v in s.values()) / len(s) if s else None,
            "mean_accuracy": sum(v["accuracy"] for v in s.values()) / len(s) if s else None,
            "mean_nll": sum(v["nll"] for v in s.values()) / len(s) if s else None,
            "per_fold": s,
        }
    return rows


def pick_winner(rows: dict[str, dict]) -> str | None:
    """Best mean inner-val macro-F1 among complete configurations (ties: lower mean NLL)."""
    complete = {k: v for k, v in rows.items() if v["complete"]}
    if not complete:
        return None
    return max(complete, key=lambda k: (complete[k]["mean_macro_f1"], -complete[k]["mean_nll"]))


def run_pool(jobs: list[tuple[str, list[str]]], parallel: int, launch_until: float, kill_at: float,
             log_dir: Path) -> dict[str, int | str]:
    """Run ``(tag, argv)`` jobs ``parallel`` at a time; none starts after ``launch_until``; kill at ``kill_at``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    pending, running, status = list(jobs), {}, {}
    while pending or running:
        now = time.time()
        while pending and len(running) < parallel and now < launch_until:
            tag, argv = pending.pop(0)
            log = open(log_dir / f"{tag}.log", "w")  # noqa: SIM115 - closed when the job ends
            running[tag] = (subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log, now)
        if now >= launch_until:
            for tag, _ in pending:
                status[tag] = "not started (time)"
            pending = []
        for tag, (proc, log, t0) in list(running.items()):
            rc = proc.poll()
            if rc is None and time.time() >= kill_at:
                proc.kill()
                rc = "killed (time)"
            if rc is not None:
                log.close()
                status[tag] = rc
                print(f"[{time.strftime('%H:%M:%S')}] {tag}: {rc} after {time.time() - t0:.0f} s", flush=True)
                del running[tag]
        time.sleep(1)
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--arch", default="effnet_cbam", help="arch whose configurations are compared")
    p.add_argument("--config", action="append", default=[], metavar="NAME=ARGS", help="train arguments; repeatable")
    p.add_argument("--then-arch", action="append", default=[], dest="then_arch",
                   help="arch trained afterwards with the winning configuration; repeatable")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "sweep")
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--extra", default="", help="arguments added to every job (device, threads)")
    p.add_argument("--phase1-s", type=float, default=float("inf"), help="no first-arch job starts after this")
    p.add_argument("--phase1-kill-s", type=float, default=float("inf"), dest="phase1_kill_s",
                   help="first-arch jobs still running after this are killed (their configuration drops out)")
    p.add_argument("--total-s", type=float, default=float("inf"), help="every job is killed after this")
    a = p.parse_args(argv)
    configs = dict(item.partition("=")[::2] for item in a.config)
    t0 = time.time()
    jobs = [(f"{name}-{a.arch}-fold{k}", job_command(a.dataset, a.arch, k, name, a.out, args, a.extra))
            for name, args in configs.items() for k in range(a.folds)]
    status = run_pool(jobs, a.parallel, t0 + a.phase1_s, t0 + min(a.phase1_kill_s, a.total_s), a.out / "logs")
    rows = summarize(a.dataset, a.arch, configs, a.out, a.folds)
    winner = pick_winner(rows)
    summary = {"dataset": a.dataset, "arch": a.arch, "rows": rows, "winner": winner, "then": {}}
    print(json.dumps({k: (v["mean_macro_f1"], v["folds_done"]) for k, v in rows.items()}), "winner:", winner)
    if winner is not None and a.then_arch:
        jobs = [(f"{winner}-{arch}-fold{k}", job_command(a.dataset, arch, k, winner, a.out, configs[winner], a.extra))
                for arch in a.then_arch for k in range(a.folds)]
        status.update(run_pool(jobs, a.parallel, t0 + a.total_s, t0 + a.total_s, a.out / "logs"))
        summary["then"] = {arch: summarize(a.dataset, arch, {winner: configs[winner]}, a.out, a.folds)[winner]
                           for arch in a.then_arch}
    summary["status"] = {k: str(v) for k, v in status.items()}
    summary["seconds"] = round(time.time() - t0, 1)
    (a.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {a.out / 'summary.json'} ({summary['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
