"""Pods: ``--pod-memory SIZE --pod-cpu CORES`` plan each runner and workload as a pod of
those limits, and how many such pods a node of ``--cores``/``--memory`` holds; with
``--price-vcpu-hour`` and ``--price-gib-hour`` what a million requests cost at the
latency target.

Per runner and workload (and measured thread count), from the fitted models
(``runners.plan.model``):

- **memory per pod**: the memory line through the cgroup's *working set* where every
  run recorded one (what the platform charges and OOM-kills by), else through summed PSS
  (said so: ``memory_basis``);
- **workers per pod**: the most whose predicted memory stays under the pod's memory less
  the headroom (a pod is killed at its limit, so the plan keeps the same margin as on a
  host), and no more than keep the pod's CPUs busy: the capacity law
  ``min(n x per_worker, cpu x per_core)`` with the quota's cores (``limit``: ``memory``
  or ``cpu``);
- **capacity per pod** at that count; **pods per node** = min(node cores / pod CPU,
  node memory / pod memory), as a scheduler packs pods whose requests equal their limits
  (Guaranteed QoS), rounded down;
- **cost**: a pod-hour is ``cpu x price_vcpu_hour + memory GiB x price_gib_hour``; a
  million requests at the pod's capacity cost ``pod-hour / (capacity x 3600) x 10^6``.
- **the host rule**: what a worker rule reading the *node's* cores (``os.cpu_count()``
  inside a container: ``2 x cores + 1`` pre-fork, ``cores`` otherwise) would start in the
  pod, and whether its predicted memory passes the limit (``OOM``).

A CFS quota's throttling (a 100 ms period) adds latency the models do not hold; the
capacity is the model's, measured without a quota unless the sweep ran with one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from runners.plan.fit import MemoryFit
from runners.plan.model import Host, Model
from runners.results.figures import GIB

JSON = dict[str, Any]
HOURS = 3600.0
MILLION = 1_000_000


@dataclass(frozen=True)
class PodShape:
    """A pod's limits: memory (bytes) and CPU (cores, a quota)."""

    memory_bytes: int
    cpu_cores: float


@dataclass(frozen=True)
class Prices:
    """What a vCPU-hour and a GiB-hour cost (any currency; the plan says "made up" for
    none: they are the user's)."""

    vcpu_hour: float
    gib_hour: float


def pods_per_node(pod: PodShape, host: Host) -> int:
    """Pods of ``pod`` a node of ``host.cores`` and ``host.memory_bytes`` holds."""
    return max(
        0, min(math.floor(host.cores / pod.cpu_cores), host.memory_bytes // pod.memory_bytes)
    )


def pod_hour_cost(pod: PodShape, prices: Prices) -> float:
    """What one pod costs an hour: its CPU and its memory at the prices."""
    return pod.cpu_cores * prices.vcpu_hour + pod.memory_bytes / GIB * prices.gib_hour


def cost_per_million(capacity_rps: float, hour_cost: float) -> float | None:
    """What a million requests cost at ``capacity_rps`` (None without capacity)."""
    if capacity_rps <= 0:
        return None
    return hour_cost / (capacity_rps * HOURS) * MILLION


def host_rule_workers(family: str, cores: int) -> int:
    """What a worker rule reading the node's cores starts: ``2 x cores + 1`` pre-fork
    workers, ``cores`` threaded or async workers."""
    return 2 * cores + 1 if family == "prefork" else max(1, cores)


def memory_model(model: Model) -> tuple[MemoryFit | None, str]:
    """The working-set line where it was recorded, else the PSS line; and which."""
    if model.working_set is not None:
        return model.working_set, "working set"
    return model.memory, "summed PSS"


def plan_pod(model: Model, pod: PodShape, host: Host, prices: Prices | None) -> JSON | str:
    """One runner x workload x threads as a pod: its row, or why it cannot be planned."""
    memory, basis = memory_model(model)
    if memory is None:
        return "no memory fit (one configuration measured)"
    if model.capacity is None:
        reasons = sorted({o.excluded for o in model.observed if o.excluded})
        return "no capacity fit" + (f" ({'; '.join(reasons)})" if reasons else "")
    budget = pod.memory_bytes * (1 - host.headroom)
    per = memory.per_worker_at(model.t)
    if not memory.workers_varied:
        workers = max(model.measured_workers)
        if memory.predict(workers, model.t) > budget:
            return f"does not fit the pod's memory ({basis})"
        limit = "workers"
    else:
        if per <= 0:
            return f"{basis} does not grow with the workers in the fit"
        fitting = math.floor((budget - memory.base) / per)
        if fitting < 1:
            return f"one worker does not fit the pod's memory ({basis})"
        saturating = model.capacity.saturating_workers(pod.cpu_cores)
        workers = min(fitting, saturating)
        limit = "cpu" if saturating <= fitting else "memory"
    capacity = model.capacity.predict(workers, pod.cpu_cores)
    per_node = pods_per_node(pod, host)
    trap = host_rule_workers(model.family, host.cores)
    trap_memory = memory.predict(trap, model.t)
    row: JSON = {
        "runner": model.runner,
        "workload": model.workload,
        "threads": model.threads,
        "workers": workers,
        "capacity_rps": capacity,
        "memory_bytes": memory.predict(workers, model.t),
        "memory_basis": basis,
        "limit": limit,
        "pods_per_node": per_node,
        "node_capacity_rps": capacity * per_node,
        "host_rule": {
            "workers": trap,
            "memory_bytes": trap_memory,
            "oom": memory.workers_varied and trap_memory > pod.memory_bytes,
        },
        "pod_hour_cost": None,
        "cost_per_million": None,
    }
    if prices is not None:
        hour = pod_hour_cost(pod, prices)
        row["pod_hour_cost"] = hour
        row["cost_per_million"] = cost_per_million(capacity, hour)
    return row


def plan_pods(models: list[Model], pod: PodShape, host: Host, prices: Prices | None) -> JSON:
    """plan.json's ``pods``: per workload the best row of each runner (the most capacity
    per pod), and those that could not be planned."""
    workloads: dict[str, JSON] = {}
    for model in models:
        entry = workloads.setdefault(
            model.workload, {"workload": model.workload, "rows": {}, "skipped": []}
        )
        row = plan_pod(model, pod, host, prices)
        if isinstance(row, str):
            entry["skipped"].append(
                {"runner": model.runner, "threads": model.threads, "reason": row}
            )
            continue
        old = entry["rows"].get(model.runner)
        if old is None or row["capacity_rps"] > old["capacity_rps"]:
            entry["rows"][model.runner] = row
    out = []
    for name in sorted(workloads):
        entry = workloads[name]
        rows = sorted(entry["rows"].values(), key=lambda r: -r["capacity_rps"])
        out.append({"workload": name, "rows": rows, "skipped": entry["skipped"]})
    return {
        "memory_bytes": pod.memory_bytes,
        "cpu_cores": pod.cpu_cores,
        "headroom": host.headroom,
        "prices": None
        if prices is None
        else {"vcpu_hour": prices.vcpu_hour, "gib_hour": prices.gib_hour},
        "pod_hour_cost": None if prices is None else pod_hour_cost(pod, prices),
        "pods_per_node": pods_per_node(pod, host),
        "workloads": out,
    }
