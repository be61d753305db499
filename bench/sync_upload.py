"""What one Tune experiment sync costs when the sweep's storage is a bucket.

At every experiment-state snapshot Tune's driver launches a sync of its whole staging folder
(the experiment state, the searcher state and every trial's result.json, progress.csv,
params and TensorBoard file) to the storage path, with `ray.train._internal.storage.
_upload_to_fs_path` (pyarrow's copy_files: every file, changed or not). This uploads a
finished sweep's Tune folder (e.g. one `bench/sweep_scale.py` left) the same way to an S3
server on 127.0.0.1 (moto, the one the tests use), and times it: a lower bound for a real
bucket, with no network latency, but its cost per file is what grows with the trial count.

    PYTHONPATH=. .venv/bin/python bench/sync_upload.py runs/bench-sweep-scale/SWEEP_FOLDER

Writes `bench/results/sync-upload-<date>.json` (`--out`) and prints a line per upload.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "sync-bench"


def upload_times(tune_dir: Path, repeat: int) -> dict[str, Any]:
    import boto3
    from moto.server import ThreadedMotoServer
    from ray.train._internal.storage import _upload_to_fs_path

    from raytune_ft.spec.sections import StorageSpec
    from raytune_ft.storage import storage_root

    # moto accepts any keys; these only keep boto3 and pyarrow from looking for real ones.
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "bench-not-a-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        root = storage_root(StorageSpec(path=f"s3://{BUCKET}/runs", endpoint_url=endpoint))
        files = [p for p in tune_dir.rglob("*") if p.is_file()]
        state = sorted(tune_dir.glob("experiment_state-*.json"))
        runs = []
        for index in range(repeat):
            started = time.monotonic()
            _upload_to_fs_path(str(tune_dir), root.fs, f"{root.path}/full-{index}")
            whole = time.monotonic() - started
            started = time.monotonic()
            for path in state:  # what a sync of only the changed state file would upload
                _upload_to_fs_path(str(path), root.fs, f"{root.path}/state-{index}/{path.name}")
            runs.append({"whole_folder_s": whole, "state_file_only_s": time.monotonic() - started})
        return {
            "tune_dir": str(tune_dir),
            "files": len(files),
            "bytes": sum(p.stat().st_size for p in files),
            "state_file_bytes": sum(p.stat().st_size for p in state),
            "trial_folders": sum(1 for p in tune_dir.iterdir() if p.is_dir()),
            "uploads": runs,
        }
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder (its ray-tune/ is sent)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    tune_dir = args.sweep_dir.resolve() / "ray-tune"
    report = {
        "benchmark": "sync_upload",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "loadavg": os.getloadavg()[0],
        **upload_times(tune_dir, args.repeat),
    }
    for run in report["uploads"]:
        print(
            f"{report['trial_folders']} trial folders, {report['files']} files, "
            f"{report['bytes'] / 2**20:.1f} MiB: whole folder {run['whole_folder_s']:.1f} s "
            f"({report['files'] / run['whole_folder_s']:.0f} files/s); the state file alone "
            f"({report['state_file_bytes'] / 2**20:.1f} MiB) {run['state_file_only_s']:.2f} s"
        )
    out = Path(
        args.out or ROOT / "bench" / "results" / f"sync-upload-{time.strftime('%Y%m%d-%H%M')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
