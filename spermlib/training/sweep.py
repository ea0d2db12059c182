"""Recipe sweeps on Ray Tune: one trial per configuration × fold, selected under the nested protocol.

A search space is a grid of ``Recipe`` fields (``--param lr=1e-3,3e-4 --param mixup_alpha=0,0.2`` or a
YAML file ``{lr: [1e-3, 3e-4], mixup_alpha: [0, 0.2]}``); a field with one value is simply set for
every configuration. Each trial is the project's own ``train_fold`` writing into
``<out>/<configuration>/`` (checkpoints and cards exactly as ``train --checkpoints`` writes them) and
reporting every epoch's inner-validation macro-F1 to Tune, where ASHA stops unpromising trials.

Nested protocol: the outer folds' test parts are never read. Trials run one Tune experiment per
outer fold, so ASHA compares fold ``k``'s trials only with each other, on fold ``k``'s inner
validation; fold ``k``'s winner is the configuration with the best inner-validation macro-F1 of fold
``k`` (ties: lower NLL). The winners are gathered into ``<out>/nested/`` (one checkpoint per fold, each
chosen without its test fold), which ``evaluate --checkpoints <out>/nested`` scores as a nested-CV
estimate. The comparison (baseline, complete configurations, nested winners) is ``tune``'s own
(:func:`spermlib.training.tuning.compare_configs`) and is recorded the same way.
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from spermlib.cluster import connect
from spermlib.data.datasets import DatasetSpec
from spermlib.errors import SpermlibError
from spermlib.store.cards import card_path, checkpoint_path, fold_cards
from spermlib.store.results import write_json
from spermlib.training.recipe import Recipe

SWEEP_FILE = "sweep.json"
NESTED = "nested"  # the per-fold winners, gathered as one checkpoints folder
METRIC = "inner_val_macro_f1"  # best inner-validation macro-F1 so far: what ASHA compares
GPU_SHARE = 0.25  # default GPU fraction per trial when the cluster has a GPU: small folds leave a card mostly idle
_TYPES = {f.name: f.type for f in fields(Recipe)}
_CASTS = {"int": int, "float": float, "str": str, "bool": lambda v: str(v).lower() in ("1", "true", "yes")}


def parse_value(name: str, text) -> object:
    """``text`` as the type of Recipe field ``name`` (an unknown field is an error naming the known ones)."""
    if name not in _TYPES:
        raise SpermlibError(f"unknown recipe field {name!r} in the search space; known: {', '.join(_TYPES)}")
    try:
        return _CASTS[str(_TYPES[name])](text)
    except ValueError:
        raise SpermlibError(f"{name}={text!r}: not a {_TYPES[name]}") from None


def parse_param(text: str) -> tuple[str, list]:
    """``lr=1e-3,3e-4`` → ``("lr", [0.001, 0.0003])``."""
    name, sep, values = text.partition("=")
    if not sep or not values:
        raise SpermlibError(f"--param wants FIELD=V1[,V2…], got {text!r}")
    return name, [parse_value(name, v) for v in values.split(",")]


def load_space(path: str | Path) -> dict[str, list]:
    """A YAML search space: ``{field: [values]}`` or ``{field: value}``."""
    import yaml  # a dependency of Ray, which sweeps need anyway

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SpermlibError(f"search space {path}: {err}") from None
    if not isinstance(raw, dict):
        raise SpermlibError(f"search space {path}: expected a mapping of recipe fields to values")
    return {k: [parse_value(k, v) for v in (vals if isinstance(vals, list) else [vals])] for k, vals in raw.items()}


def config_name(overrides: dict) -> str:
    """A folder name for one configuration: the swept fields and values (``lr-0.001+mixup_alpha-0.2``)."""
    return "+".join(f"{k}-{v:g}" if isinstance(v, float) else f"{k}-{v}" for k, v in overrides.items()) or "base"


def grid(space: dict[str, list]) -> dict[str, dict]:
    """Every configuration of the grid, by name; fields with a single value are in every one and not named."""
    swept = [k for k, v in space.items() if len(v) > 1]
    fixed = {k: v[0] for k, v in space.items() if len(v) == 1}
    configs = {}
    for values in itertools.product(*(space[k] for k in swept)):
        chosen = dict(zip(swept, values))
        configs[config_name(chosen)] = {**fixed, **chosen}
    return configs


@dataclass(frozen=True)
class SweepJob:
    """Everything a trial needs (pickled to the Tune workers)."""

    spec: DatasetSpec
    arch: str
    root: str
    out: str
    configs: dict[str, dict]
    splits: str | None = None
    pretrained: str = "auto"
    threads: int = 1
    device: str = "cpu"
    folds: list[int] = field(default_factory=list)

    def recipe(self, name: str) -> Recipe:
        return Recipe.for_arch(self.arch, self.spec.name, **self.configs[name])


def run_trial(config: dict, job: SweepJob) -> None:
    """One configuration × fold: ``train_fold`` into ``<out>/<configuration>``, each epoch reported to Tune."""
    import torch
    from ray import tune

    from spermlib.data.splits import manifest_for_root
    from spermlib.training.train import fold_is_done, load_fold_data, train_fold

    torch.set_num_threads(job.threads)
    name, fold = config["name"], int(config["fold"])
    manifest, sha = manifest_for_root(job.spec, Path(job.root), job.splits)
    ckpts = Path(job.out) / name
    if fold_is_done(job.spec, job.arch, fold, sha, ckpts):
        return  # an earlier sweep into this folder finished it
    recipe = job.recipe(name)
    data = load_fold_data(job.spec, Path(job.root), manifest, fold, recipe, recipe.input_size or job.spec.input_size)

    def report(record: dict) -> None:
        tune.report({"epoch": record["epoch"] + 1, METRIC: record["best_macro_f1"],
                     "val_macro_f1": record["val_macro_f1"], "val_accuracy": record["val_accuracy"]})

    train_fold(job.spec, job.arch, fold, data, recipe, manifest_sha256=sha, pretrained=job.pretrained,
               checkpoints_dir=ckpts, runs_dir=Path(job.out) / "runs" / name, device=job.device, progress=False,
               on_epoch=report)


def run_sweep(job: SweepJob, address: str | None = None, cpus_per_trial: float = 1, gpus_per_trial: float | None = None,
              grace_epochs: int = 3) -> dict:
    """Train every configuration × fold on Ray Tune (ASHA on inner validation), then select per fold."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    ray = connect(address)
    if gpus_per_trial is None:
        gpus_per_trial = GPU_SHARE if ray.cluster_resources().get("GPU", 0) else 0
    job = replace(job, threads=max(1, int(cpus_per_trial)), device="cuda" if gpus_per_trial else "cpu")
    trainable = tune.with_resources(tune.with_parameters(run_trial, job=job),
                                    {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
    # One past the longest recipe: ASHA stops a trial that reaches max_t at once, and the last epoch's report
    # comes before train_fold saves the checkpoint.
    max_t = max(job.recipe(n).epochs for n in job.configs) + 1
    errors = {}
    for k in job.folds:  # one experiment per outer fold: ASHA ranks fold k's trials among themselves only
        scheduler = ASHAScheduler(time_attr="epoch", metric=METRIC, mode="max", max_t=max_t,
                                  grace_period=min(grace_epochs, max_t - 1), reduction_factor=2)
        tuner = tune.Tuner(trainable, param_space={"name": tune.grid_search(list(job.configs)), "fold": k},
                           tune_config=tune.TuneConfig(scheduler=scheduler),
                           run_config=tune.RunConfig(name=f"fold{k}", storage_path=str(Path(job.out).resolve() / "ray"),
                                                     verbose=0))
        grid_result = tuner.fit()
        errors.update({f"{r.config['name']} fold {k}": str(r.error).splitlines()[-1][:300]
                       for r in grid_result if r.error})
    return {**select_nested(job), "errors": errors}


def select_nested(job: SweepJob) -> dict:
    """Per outer fold, the configuration with the best inner-validation macro-F1 of that fold (ties: lower NLL),
    among the trials that finished; the winners' checkpoints are copied into ``<out>/nested``."""
    out = Path(job.out)
    cards = {name: fold_cards(job.spec, job.arch, out / name) for name in job.configs}
    per_fold = {}
    for k in job.folds:
        scores = {name: c[k]["inner_val"] for name, c in cards.items() if k in c}
        if not scores:
            per_fold[k] = {"scores": {}, "winner": None}
            continue
        winner = max(scores, key=lambda n: (scores[n]["macro_f1"], -scores[n].get("nll", 0.0)))
        per_fold[k] = {"scores": scores, "winner": winner}
        src = checkpoint_path(job.spec, job.arch, k, out / winner)
        dst = checkpoint_path(job.spec, job.arch, k, out / NESTED)
        dst.parent.mkdir(parents=True, exist_ok=True)
        for a, b in ((src, dst), (card_path(src), card_path(dst))):
            shutil.copyfile(a, b)
    complete = [n for n, c in cards.items() if all(k in c for k in job.folds)]
    summary = {"dataset": job.spec.name, "arch": job.arch, "configs": job.configs, "folds": job.folds,
               "complete": complete, "per_fold": per_fold,
               "protocol": "nested: fold k's configuration chosen on fold k's inner validation only "
                           "(ASHA early stopping on the same split); test folds never read"}
    write_json(out / SWEEP_FILE, summary)
    return summary


def comparison_runs(job: SweepJob, summary: dict, baseline_name: str, baseline: Path) -> dict[str, Path]:
    """What ``tune``'s comparison lines up: the baseline (when it has cards), every configuration that finished
    all folds, and the nested winners (when every fold has one)."""
    out = Path(job.out)
    runs = {baseline_name: baseline} if fold_cards(job.spec, job.arch, baseline) else {}
    runs.update({name: out / name for name in summary["complete"]})
    if all(f["winner"] for f in summary["per_fold"].values()):
        runs[NESTED] = out / NESTED
    return runs
