"""The plan: the models fitted per runner and workload, the best configuration
that fits a host, the two common rules on the same host, the held-out
validation, and the recycling advice; as the document written to plan.json.

For a host of ``cores`` cores and ``memory`` bytes with ``headroom`` kept
free, the budget is memory x (1 - headroom). For each runner and thread
count the planner takes the most workers whose predicted memory fits the
budget, and no more than keep the cores busy (capacity stops growing there):
the limit is ``cores`` when the cores cap it first, ``memory`` when the
budget does (``workers`` for a server whose worker count is fixed). It never
proposes a configuration over the budget.

Worker counts are extrapolated from the sweep (the row says how far); thread
counts are only the measured ones.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from runners.plan.fit import (
    CapacityFit,
    CapacityPoint,
    MemoryFit,
    MemoryPoint,
    fit_capacity,
    fit_memory,
)
from runners.plan.observe import ConfigObservation, Growth
from runners.results.figures import GIB, MIB

PLAN_VERSION = 1
TARGET_ERROR = 0.15
"""The held-out prediction should be within 15 % of the measurement."""
ENOUGH_REQUESTS = 1_000_000
"""A max_requests above this says memory needs no recycling."""
CURVE_POINTS = 48
MAX_CURVE_WORKERS = 1024
JSON = dict[str, Any]


@dataclass(frozen=True)
class Host:
    cores: int
    memory_bytes: int
    headroom: float
    """Fraction of the memory kept free (0.1 = 10 %)."""
    slo_p99_ms: float | None = None

    @property
    def budget(self) -> float:
        return self.memory_bytes * (1 - self.headroom)


def gunicorn_rule(cores: int) -> int:
    """gunicorn's documented starting point: (2 x cores) + 1 workers."""
    return 2 * cores + 1


def web_concurrency_rule(cores: int, memory_bytes: int) -> int:
    """WEB_CONCURRENCY = min(2 x cores + 1, RAM_MB / 256), at least one."""
    return max(1, min(2 * cores + 1, memory_bytes // MIB // 256))


# --- the models --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """One runner x workload x thread count: its memory and capacity fits."""

    runner: str
    runner_name: str
    family: str
    workload: str
    threads: int | None
    memory: MemoryFit | None
    capacity: CapacityFit | None
    observed: tuple[ConfigObservation, ...]
    memory_left_out: tuple[int, ...] = ()
    """Worker counts left out of the memory fit: the server ran with another shape
    of processes there (see ``same_shape``)."""
    working_set: MemoryFit | None = None
    """The same line through the cgroup's working set, where every run recorded one
    (``runners.plan.pods`` plans pods with it)."""

    @property
    def t(self) -> int:
        return self.threads or 1

    @property
    def measured_workers(self) -> list[int]:
        return sorted({o.workers for o in self.observed})


def _memory_points(obs: Sequence[ConfigObservation]) -> list[MemoryPoint]:
    return [MemoryPoint(o.workers, o.threads or 1, o.pss_peak) for o in obs]


def _working_set_fit(obs: Sequence[ConfigObservation]) -> MemoryFit | None:
    """The memory line through the working set, where every observation has one."""
    if not obs or any(o.working_set_peak is None for o in obs):
        return None
    return fit_memory(
        [MemoryPoint(o.workers, o.threads or 1, o.working_set_peak or 0.0) for o in obs]
    )


def _capacity_points(obs: Sequence[ConfigObservation]) -> list[CapacityPoint]:
    return [
        CapacityPoint(o.workers, o.cores, o.capacity_rps, o.saturated, o.rps_per_cpu_second)
        for o in obs
        if o.capacity_rps is not None
    ]


def same_shape(
    obs: Sequence[ConfigObservation], like: ConfigObservation
) -> list[ConfigObservation]:
    """The observations whose server ran the same processes besides its workers as
    ``like`` (uvicorn with one worker runs it in place, without a master, so its
    memory is not on the line of two workers and more)."""
    return [o for o in obs if o.masters == like.masters]


def build_models(obs: Sequence[ConfigObservation]) -> list[Model]:
    """The memory fit of each runner x workload (every thread count together) and
    the capacity fit of each runner x workload x thread count."""
    by_runner: dict[tuple[str, str], list[ConfigObservation]] = defaultdict(list)
    for o in obs:
        by_runner[(o.runner, o.workload)].append(o)
    models = []
    for (runner, workload), group in by_runner.items():
        largest = max(group, key=lambda o: (o.workers, o.threads or 0))
        shaped = same_shape(group, largest)
        memory = fit_memory(_memory_points(shaped))
        left_out = tuple(sorted({o.workers for o in group if o not in shaped}))
        by_threads: dict[int | None, list[ConfigObservation]] = defaultdict(list)
        for o in group:
            by_threads[o.threads].append(o)
        for threads, same in sorted(by_threads.items(), key=lambda kv: kv[0] or 0):
            models.append(
                Model(
                    runner=runner,
                    runner_name=same[0].runner_name,
                    family=same[0].family,
                    workload=workload,
                    threads=threads,
                    memory=memory,
                    capacity=fit_capacity(_capacity_points(same)),
                    observed=tuple(sorted(same, key=lambda o: o.workers)),
                    memory_left_out=left_out,
                    working_set=_working_set_fit(shaped),
                )
            )
    return models


# --- the best configuration --------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    workers: int
    threads: int | None
    capacity_rps: float
    memory_bytes: float
    limit: str
    extrapolation: float
    """Chosen workers / the most workers measured (1.0: measured, 8.0: eight times as many)."""


def memory_workers(model: Model, host: Host) -> int | None:
    """The most workers whose predicted memory fits the budget (None: no memory limit
    can be computed, the memory line does not grow with the workers)."""
    assert model.memory is not None
    per = model.memory.per_worker_at(model.t)
    if per <= 0:
        return None
    return math.floor((host.budget - model.memory.base) / per)


def choose(model: Model, host: Host) -> Choice | str:
    """The configuration with the most predicted capacity that fits, or why none."""
    if model.memory is None:
        return "no memory fit (one configuration measured)"
    if model.capacity is None:
        reasons = sorted({o.excluded for o in model.observed if o.excluded})
        return "no capacity fit" + (f" ({'; '.join(reasons)})" if reasons else "")
    mem, cap = model.memory, model.capacity
    most = max(model.measured_workers)
    if not mem.workers_varied:
        workers = most
        if mem.predict(workers, model.t) > host.budget:
            return "does not fit the memory budget"
        limit = "cores" if cap.limit(workers, host.cores) == "cores" else "workers"
    else:
        saturating = cap.saturating_workers(host.cores)
        fitting = memory_workers(model, host)
        if fitting is None:
            return "memory does not grow with the workers in the fit: no extrapolation"
        if fitting < 1:
            return "one worker does not fit the memory budget"
        workers = min(saturating, fitting)
        limit = "cores" if saturating <= fitting else "memory"
    predicted = mem.predict(workers, model.t)
    assert predicted <= host.budget
    return Choice(
        workers=workers,
        threads=model.threads,
        capacity_rps=cap.predict(workers, host.cores),
        memory_bytes=predicted,
        limit=limit,
        extrapolation=workers / most,
    )


def curve(model: Model, host: Host, upto: int, marks: Sequence[int] = ()) -> list[JSON]:
    """Predicted capacity and memory from 1 to ``upto`` workers: about CURVE_POINTS
    worker counts spaced evenly on a log scale (the report's axis), and ``marks``
    (the chosen count, the saturation point) so that the corners are drawn."""
    assert model.memory is not None and model.capacity is not None
    upto = max(1, min(upto, MAX_CURVE_WORKERS))
    spaced = {round(upto ** (i / (CURVE_POINTS - 1))) for i in range(CURVE_POINTS)}
    counts = sorted({1, upto, *spaced, *(n for n in marks if 1 <= n <= upto)})
    return [
        {
            "workers": n,
            "capacity_rps": round(model.capacity.predict(n, host.cores), 1),
            "memory_bytes": round(model.memory.predict(n, model.t)),
        }
        for n in counts
    ]


def rule_row(model: Model, host: Host, workers: int) -> JSON | None:
    """What a worker-count rule gives this runner on the host (None: fixed workers)."""
    assert model.memory is not None and model.capacity is not None
    if not model.memory.workers_varied:
        return None
    memory = model.memory.predict(workers, model.t)
    return {
        "workers": workers,
        "capacity_rps": model.capacity.predict(workers, host.cores),
        "memory_bytes": memory,
        "fits_budget": memory <= host.budget,
        "fits_memory": memory <= host.memory_bytes,
    }


# --- validation --------------------------------------------------------------------------------


def _error(predicted: float, measured: float) -> float:
    return predicted / measured - 1


def validate(model: Model, all_obs: Sequence[ConfigObservation]) -> JSON | None:
    """Hold out the configuration with the most workers, fit the rest, predict it."""
    if len(model.measured_workers) < 2:
        return None
    held = model.observed[-1]
    rest = [o for o in model.observed if o is not held]
    entry: JSON = {
        "runner": model.runner,
        "workload": model.workload,
        "threads": model.threads,
        "held_out": {"workers": held.workers, "threads": held.threads, "cores": held.cores},
        "fitted_on_workers": sorted({o.workers for o in rest}),
        "memory": None,
        "capacity": None,
    }
    others = same_shape(
        [
            o
            for o in all_obs
            if o.runner == model.runner and o.workload == model.workload and o is not held
        ],
        held,
    )
    memory = fit_memory(_memory_points(others))
    if memory is not None and memory.workers_varied:
        predicted = memory.predict(held.workers, held.threads or 1)
        entry["memory"] = {
            "predicted_bytes": predicted,
            "measured_bytes": held.pss_peak,
            "error": _error(predicted, held.pss_peak),
            "fitted_on_workers": sorted({o.workers for o in others}),
        }
    else:
        entry["memory_skipped"] = "fewer than two other worker counts"
    capacity = fit_capacity(_capacity_points(rest))
    if capacity is not None and held.capacity_rps is not None:
        predicted = capacity.predict(held.workers, held.cores)
        entry["capacity"] = {
            "predicted_rps": predicted,
            "measured_rps": held.capacity_rps,
            "error": _error(predicted, held.capacity_rps),
        }
    else:
        entry["capacity_skipped"] = (
            held.excluded or "not counted"
            if held.capacity_rps is None
            else "no capacity fit from the other worker counts"
        )
    errors = [abs(entry[k]["error"]) for k in ("memory", "capacity") if entry[k] is not None]
    entry["within_target"] = all(e <= TARGET_ERROR for e in errors) if errors else None
    return entry


def misses(validation: Sequence[JSON]) -> list[str]:
    """One plain sentence per held-out prediction more than 15 % off."""
    out = []
    for v in validation:
        for what, unit in (("memory", "bytes"), ("capacity", "rps")):
            fig = v[what]
            if fig is None or abs(fig["error"]) <= TARGET_ERROR:
                continue
            scale, name = (MIB, "MiB") if unit == "bytes" else (1, "req/s")
            out.append(
                f"{v['runner']} on {v['workload']}: the {what} model misses the target at "
                f"{v['held_out']['workers']} workers: predicted "
                f"{fig[f'predicted_{unit}'] / scale:,.0f} {name}, measured "
                f"{fig[f'measured_{unit}'] / scale:,.0f} {name} ({fig['error']:+.0%})"
            )
    return out


# --- max_requests --------------------------------------------------------------------------------


def _two_digits(value: float) -> int:
    if value < 10:
        return max(0, int(value))
    magnitude = 10 ** (int(math.log10(value)) - 1)
    return int(value // magnitude * magnitude)


def recycling(choice: Choice, host: Host, growth: Growth | None) -> JSON | None:
    """A max_requests that keeps the host inside its memory as workers grow: the
    memory left on the host (the headroom included) shared by the workers, over
    the private memory a worker gains per request."""
    if growth is None:
        return None
    per_1000 = growth.fit.bytes_per_1000_requests
    slack = host.memory_bytes - choice.memory_bytes
    entry: JSON = {
        "from": f"{growth.runner} soak on {growth.workload}",
        "growth_bytes_per_1000_requests": per_1000,
        "slack_bytes_per_worker": slack / choice.workers,
        "max_requests": None,
    }
    if per_1000 <= 0:
        entry["note"] = "private memory did not grow in the soak: no recycling needed"
        return entry
    entry["max_requests"] = _two_digits(slack / choice.workers / per_1000 * 1000)
    if entry["max_requests"] > ENOUGH_REQUESTS:
        entry["note"] = (
            f"over {ENOUGH_REQUESTS:,} requests per worker before memory runs out: "
            "memory needs no recycling"
        )
    return entry


def _growth_for(model: Model, growths: Sequence[Growth]) -> Growth | None:
    """The soak growth of this runner: on this workload, else on any, else of the same
    runner with other qualifiers; the longest soak first."""
    for level in range(3):
        found = [g for g in growths if _matches(g, model, level)]
        if found:
            return max(found, key=lambda g: g.fit.window_s)
    return None


def _matches(growth: Growth, model: Model, level: int) -> bool:
    if level == 0:
        return growth.runner == model.runner and growth.workload == model.workload
    if level == 1:
        return growth.runner == model.runner
    return growth.runner.split(" ")[0] == model.runner_name


def _within(check: JSON | None) -> bool | None:
    """Whether the runner's held-out predictions were within 15 % (None: not checked)."""
    return None if check is None else check["within_target"]


def summary(workload: str, rows: Sequence[JSON], rules: JSON) -> list[str]:
    """The plan's best against the best each rule gives, in words."""
    if not rows:
        return []
    best = rows[0]
    lines = [
        f"{workload}: the plan's best is {best['runner']} with {best['workers']} workers, "
        f"{best['capacity_rps']:,.0f} req/s in {best['memory_bytes'] / GIB:.1f} GiB "
        f"(limit: {best['limit']})."
    ]
    for name, rule in rules.items():
        fitting = [
            (r["rules"][name], r)
            for r in rows
            if r["rules"][name] is not None and r["rules"][name]["fits_budget"]
        ]
        if not fitting:
            lines.append(f"{rule['formula']} = {rule['workers']}: no runner fits the budget.")
            continue
        cell, row = max(fitting, key=lambda pair: pair[0]["capacity_rps"])
        change = cell["capacity_rps"] / best["capacity_rps"] - 1
        lines.append(
            f"{rule['formula']} = {rule['workers']} workers: at best {row['runner']}, "
            f"{cell['capacity_rps']:,.0f} req/s in {cell['memory_bytes'] / GIB:.1f} GiB "
            f"({change:+.0%} against the plan)."
        )
    return lines


# --- the document ------------------------------------------------------------------------------


def _model_entry(model: Model) -> JSON:
    return {
        "runner": model.runner,
        "workload": model.workload,
        "threads": model.threads,
        "measured": [
            {
                "workers": o.workers,
                "threads": o.threads,
                "cores": o.cores,
                "runs": o.runs,
                "pss_peak_bytes": o.pss_peak,
                "capacity_rps": o.capacity_rps,
                "saturated": o.saturated,
                "excluded": o.excluded,
                "p99_ms": o.p99_ms,
                "master_pss_bytes": o.master_pss,
                "worker_pss_bytes": o.worker_pss,
            }
            for o in model.observed
        ],
        "memory": asdict(model.memory) if model.memory else None,
        "memory_left_out_workers": list(model.memory_left_out),
        "capacity": asdict(model.capacity) if model.capacity else None,
    }


def best_choices(
    models: Sequence[Model], host: Host
) -> tuple[list[tuple[Choice, Model]], list[JSON]]:
    """Per runner, its model's best choice on ``host`` (the most capacity, then the least
    memory), and the models that fit no worker count, with the reason."""
    skipped: list[JSON] = []
    best: dict[str, tuple[Choice, Model]] = {}
    for model in models:
        choice = choose(model, host)
        if isinstance(choice, str):
            skipped.append({"runner": model.runner, "threads": model.threads, "reason": choice})
            continue
        old = best.get(model.runner)
        if old is None or (choice.capacity_rps, -choice.memory_bytes) > (
            old[0].capacity_rps,
            -old[0].memory_bytes,
        ):
            best[model.runner] = (choice, model)
    return list(best.values()), skipped


def plan_row(
    choice: Choice,
    model: Model,
    host: Host,
    rule_workers: dict[str, int],
    validated: JSON | None,
    growths: Sequence[Growth],
) -> JSON:
    """One runner's row of a workload's plan: its choice, the rules' worker counts beside
    it, recycling, and the capacity curve to draw."""
    assert model.memory is not None and model.capacity is not None
    fitting = memory_workers(model, host) if model.memory.workers_varied else None
    reach = max(
        choice.workers,
        gunicorn_rule(host.cores) if model.memory.workers_varied else 1,
        fitting or 0,
        model.capacity.saturating_workers(host.cores),
    )
    return {
        "runner": model.runner,
        "runner_name": model.runner_name,
        "family": model.family,
        **asdict(choice),
        "capacity_per_gib": choice.capacity_rps / (choice.memory_bytes / GIB),
        "capacity_per_core": choice.capacity_rps / host.cores,
        "measured_workers": model.measured_workers,
        "per_worker_from": model.capacity.per_worker_from,
        "per_core_from": model.capacity.per_core_from,
        "within_target": _within(validated),
        "rules": {name: rule_row(model, host, n) for name, n in rule_workers.items()},
        "max_requests": recycling(choice, host, _growth_for(model, growths)),
        "curve": curve(
            model,
            host,
            math.ceil(reach * 1.25),
            (choice.workers, model.capacity.saturating_workers(host.cores)),
        ),
    }


def plan(
    obs: Sequence[ConfigObservation], growths: Sequence[Growth], host: Host, sources: Sequence[str]
) -> JSON:
    """The whole plan.json document."""
    models = build_models(obs)
    rule_workers = {
        "gunicorn": gunicorn_rule(host.cores),
        "web_concurrency": web_concurrency_rule(host.cores, host.memory_bytes),
    }
    rules = {
        "gunicorn": {"formula": "2 x cores + 1", "workers": rule_workers["gunicorn"]},
        "web_concurrency": {
            "formula": "min(2 x cores + 1, RAM_MB / 256)",
            "workers": rule_workers["web_concurrency"],
        },
    }
    validation = [v for m in models if (v := validate(m, obs)) is not None]
    checked = {(v["runner"], v["workload"], v["threads"]): v for v in validation}
    by_workload: dict[str, list[Model]] = defaultdict(list)
    for model in models:
        by_workload[model.workload].append(model)
    workloads = []
    for workload in sorted(by_workload):
        chosen, skipped = best_choices(by_workload[workload], host)
        rows = [
            plan_row(
                choice,
                model,
                host,
                rule_workers,
                checked.get((model.runner, workload, model.threads)),
                growths,
            )
            for choice, model in chosen
        ]
        rows.sort(key=lambda r: -r["capacity_rps"])
        workloads.append(
            {
                "workload": workload,
                "rows": rows,
                "skipped": skipped,
                "summary": summary(workload, rows, rules),
            }
        )
    return {
        "plan_version": PLAN_VERSION,
        "sources": list(sources),
        "host": {
            "cores": host.cores,
            "memory_bytes": host.memory_bytes,
            "headroom": host.headroom,
            "budget_bytes": host.budget,
            "slo_p99_ms": host.slo_p99_ms,
        },
        "rules": rules,
        "workloads": workloads,
        "models": [_model_entry(m) for m in models],
        "growth": [
            {"runner": g.runner, "workload": g.workload, "source": g.source, **asdict(g.fit)}
            for g in growths
        ],
        "validation": validation,
        "target_error": TARGET_ERROR,
        "misses": misses(validation),
    }
