"""Run one command and report its wall time, CPU time and peak RSS as one JSON line on stderr's last line.

    python -S benchmarks/launch.py [--fresh-cache] CMD ARGS…

--fresh-cache runs CMD with an empty analysis cache of its own (NEURONOPS_CACHE_DIR, a new folder, removed after):
a model's first run, a cache miss, as a user gets it by default.

run.py measures every process through this small launcher rather than spawning it from itself: a child's peak RSS
(ru_maxrss) includes the memory of the process it was spawned from (the kernel records the parent's high-water mark
at exec), so a child of the benchmark — which has numpy and onnx loaded — could never report less than the benchmark
itself. This launcher imports nothing heavy (run with -S), so its floor is a few MB.
"""

import json
import os
import shutil
import sys
import tempfile
import time


def main() -> None:
    argv = sys.argv[1:]
    env = dict(os.environ)
    fresh = argv[:1] == ["--fresh-cache"]
    if fresh:
        argv = argv[1:]
        env["NEURONOPS_CACHE_DIR"] = tempfile.mkdtemp(prefix="neuronops-bench-cache-")
        env.pop("NEURONOPS_CACHE", None)
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, env)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    if fresh:
        shutil.rmtree(env["NEURONOPS_CACHE_DIR"], ignore_errors=True)
    sys.stderr.write("\n" + json.dumps({
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_kb": usage.ru_maxrss,  # Linux: kilobytes
        "rc": os.waitstatus_to_exitcode(status),
    }) + "\n")


if __name__ == "__main__":
    main()
