"""``python -m bench.supervisor_cpu [ROUNDS]``: the supervisor process's CPU
per no-op task, and the throughput, over several rounds of 2,000 pipelined
no-op tasks on a 2-worker cluster.

It reads ``/proc`` directly and uses only ``CodaCluster.noop_throughput``,
which older trees' ``bench`` also have, so the same file can be run against
another checkout (``PYTHONPATH=<tree> python <this file> 6``) for an A/B.
"""

from __future__ import annotations

import statistics
import sys

from bench.coda_side import CodaCluster

TASKS = 2000


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # clock ticks (USER_HZ)


def main(rounds: int) -> None:
    with CodaCluster(2) as cluster:
        cluster.noop_throughput(TASKS)  # warm up
        rates, cpus = [], []
        for _ in range(rounds):
            before = _cpu_seconds(cluster.pid)
            rates.append(cluster.noop_throughput(TASKS))
            cpus.append((_cpu_seconds(cluster.pid) - before) / TASKS * 1e6)
    print(
        f"no-op tasks/s: median {statistics.median(rates):,.0f} "
        f"(range {min(rates):,.0f}-{max(rates):,.0f}); supervisor CPU per task: "
        f"median {statistics.median(cpus):.0f} us (range {min(cpus):.0f}-{max(cpus):.0f})"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
