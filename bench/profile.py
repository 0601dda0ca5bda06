"""Where a Coda benchmark spends its time: py-spy on the supervisor and workers.

``python -m bench.profile latency`` starts a 2-worker cluster, attaches
``py-spy record`` (non-blocking, aggregated by function) to the supervisor and
to each worker, runs the chosen workload for a few seconds and prints, per
process, the busiest functions by self time and by inclusive time, as
percentages of that process's non-idle samples. py-spy is not a dependency of
Coda: ``pip install py-spy``.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .coda_side import CodaCluster
from .events import make_events

__all__ = ["main", "summarize"]

WORKLOADS: dict[str, Callable[[CodaCluster], object]] = {
    "noop": lambda c: c.noop_throughput(2000),
    "submit_loop": lambda c: c.noop_submit_loop(1000),
    "blocking_submit": lambda c: c.blocking_submits(500),
    "chain512": lambda c: c.chain_throughput(make_events(300, 512)),
    "sequential": lambda c: c.sequential(500),
    "chain5k": lambda c: c.chain_throughput(make_events(300, 5 * 1024)),
    "chain50k": lambda c: c.chain_throughput(make_events(200, 50 * 1024)),
    "rerun": lambda c: c.rerun(100, 5),
    "latency": lambda c: c.latency(500),
}


def summarize(raw: str, top: int) -> str:
    """Top functions by self and inclusive samples, from py-spy's raw output."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    if not samples:
        return "  (no samples)"
    out = [f"  {samples} samples; self time:"]
    out += [f"    {100 * n / samples:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    out.append("  inclusive time:")
    out += [f"    {100 * n / samples:5.1f}%  {frame}" for frame, n in total.most_common(top)]
    return "\n".join(out)


def _record(pid: int, out: Path, rate: int) -> subprocess.Popen[bytes]:
    argv = ["py-spy", "record", "-p", str(pid), "-f", "raw", "-o", str(out)]
    argv += ["-r", str(rate), "--nonblocking", "--function"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--seconds", type=float, default=8.0, help="keep the workload going")
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=15)
    options = parser.parse_args()
    workload = WORKLOADS[options.workload]
    with CodaCluster(2) as cluster, tempfile.TemporaryDirectory() as tmp:
        workload(cluster)  # warm up before sampling
        pids = {"supervisor": cluster.pid}
        for index, pid in enumerate(cluster.supervisor.worker_pids()):
            pids[f"worker {index + 1} (pid {pid})"] = pid
        recorders = {
            name: _record(pid, Path(tmp) / f"{pid}.txt", options.rate) for name, pid in pids.items()
        }
        time.sleep(1.0)  # py-spy attaches
        deadline = time.monotonic() + options.seconds
        rounds = 0
        cpu = cluster.supervisor_cpu_seconds()
        while time.monotonic() < deadline:
            workload(cluster)
            rounds += 1
        cpu = cluster.supervisor_cpu_seconds() - cpu
        for recorder in recorders.values():
            recorder.send_signal(signal.SIGINT)
        for recorder in recorders.values():
            recorder.wait(30)
        print(
            f"# {options.workload}: {rounds} rounds in {options.seconds:.0f} s, pid {os.getpid()}; "
            f"supervisor CPU {cpu:.2f} s ({1e6 * cpu / rounds:,.0f} µs per round)"
        )
        for name, pid in pids.items():
            path = Path(tmp) / f"{pid}.txt"
            raw = path.read_text() if path.exists() else ""
            print(f"\n## {name}\n{summarize(raw, options.top)}")


if __name__ == "__main__":
    main()
