"""How long `veilcam avatar create` takes, stage by stage: median and p95 over repeated runs.

Each run is a new process, as a user's would be, into a throwaway data folder,
with the caches the first run fills (the prepared face model, the render
mesh). Stage times are the ones `--report` writes.

    python benchmarks/avatar_create_bench.py PORTRAIT.jpg [PORTRAIT.jpg ...] --rounds 3 --json create.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from veilcam.daemon.report import percentiles, write_report


def create_once(photo: Path, data_home: Path, report: Path) -> dict:
    env = dict(os.environ, XDG_DATA_HOME=str(data_home))
    command = [sys.executable, "-m", "veilcam.daemon.cli", "avatar", "create", "--photo", str(photo), "--name", photo.stem,
               "--force", "--report", str(report)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{photo}: avatar create failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return json.loads(report.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=3, help="runs per photo (default 3)")
    parser.add_argument("--json", type=Path, help="write the runs and the summary here")
    args = parser.parse_args()

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for photo in args.photos:
                report = create_once(photo, Path(tmp), Path(tmp) / "report.json")
                runs.append({"photo": photo.name, "round": round_, "seconds": report["seconds"], "total_s": report["total_s"]})
                print(f"{photo.name} round {round_ + 1}: {report['total_s']:.2f} s", file=sys.stderr)
    stages = list(runs[0]["seconds"])
    table = {stage: percentiles([r["seconds"][stage] for r in runs]) for stage in stages}
    table["total"] = percentiles([r["total_s"] for r in runs])
    print(f"{len(runs)} runs ({args.rounds} rounds over {len(args.photos)} photos)")
    print(f"{'stage':<12}{'p50 s':>8}{'p95 s':>8}{'max s':>8}")
    for stage, row in table.items():
        print(f"{stage:<12}{row['p50']:>8.2f}{row['p95']:>8.2f}{row['max']:>8.2f}")
    if args.json:
        write_report({"runs": runs, "summary": table}, args.json)


if __name__ == "__main__":
    main()
