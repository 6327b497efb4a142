"""Run one command and report its wall time, CPU time and peak RSS as one JSON line on stderr's last line.

    python -S benchmarks/launch.py CMD ARGS…

run.py measures every process through this small launcher rather than spawning it from itself: a child's peak RSS
(ru_maxrss) includes the memory of the process it was spawned from (the kernel records the parent's high-water mark
at exec), so a child of the benchmark — which has numpy and onnx loaded — could never report less than the benchmark
itself. This launcher imports nothing heavy (run with -S), so its floor is a few MB.
"""

import json
import os
import sys
import time


def main() -> None:
    argv = sys.argv[1:]
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    sys.stderr.write("\n" + json.dumps({
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_kb": usage.ru_maxrss,  # Linux: kilobytes
        "rc": os.waitstatus_to_exitcode(status),
    }) + "\n")


if __name__ == "__main__":
    main()
