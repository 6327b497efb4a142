"""The floor: plain onnxruntime inference of an export over recorded inputs — load, batch, run, nothing else.

    python benchmarks/floor.py MODEL.onnx INPUTS.npy [--batch-size 100] [--threads 0] [--no-spin]

Unrolled exports get each batch's whole sequences; stepwise exports are driven step by step with their membranes
fed back (inputs `X` ← outputs `X.next`, zero at the start of each batch). The estimator cannot be faster than this.
Prints one JSON line: samples, steps, seconds inside the loop, and a checksum of the output spikes.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("inputs")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--no-spin", action="store_true",
                        help="idle intra-op threads sleep (session.intra_op.allow_spinning=0), as the estimator "
                             "sets with --threads or on a loaded machine")
    args = parser.parse_args()
    options = ort.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    if args.no_spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    data_name = session.get_inputs()[0].name
    states = {i.name: i for i in session.get_inputs()[1:]}  # stepwise: membranes, fed back from `<name>.next`
    outputs = [o.name for o in session.get_outputs()]
    data = np.load(args.inputs, mmap_mode="r")
    samples, steps = data.shape[:2]
    started = time.perf_counter()
    fired = 0
    for start in range(0, samples, args.batch_size):
        batch = np.ascontiguousarray(data[start:start + args.batch_size])
        if not states:
            fired += int(np.count_nonzero(session.run(outputs[:1], {data_name: batch})[0]))
            continue
        state = {name: np.zeros((len(batch),) + tuple(info.shape[1:]), np.float32) for name, info in states.items()}
        for t in range(steps):
            result = dict(zip(outputs, session.run(outputs, {data_name: batch[:, t], **state}), strict=True))
            state = {name: result[name + ".next"] for name in states}
            fired += int(np.count_nonzero(result[outputs[0]]))
    loop = time.perf_counter() - started
    print(json.dumps({"samples": samples, "steps": steps, "loop_seconds": round(loop, 4), "output_spikes": fired}))


if __name__ == "__main__":
    main()
