"""Small helpers shared by the benchmarks: a timer, peak resident memory, a fresh world in a
child process."""

import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 1024 / 1024


@contextmanager
def timed(label: str, results: dict):
    started = time.perf_counter()
    yield
    results[label] = time.perf_counter() - started
    print(f"  {label:<28} {results[label]:8.2f} s   peak RSS {peak_rss_mb():8.0f} MiB", flush=True)


def measure_in_fresh_world(module: str, call: str, users: int, days: int) -> dict:
    """Run ``<module>.<call>`` in a child process on a fresh synthetic world of ``users`` x
    ``days`` whose last day is yesterday (a private data directory), and return the dict it
    prints after ``RESULT `` as JSON; exit with the child's output when it fails."""
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix=f"ubap-{module}-") as data:
        today = datetime.now(UTC).date()
        env = {
            **os.environ,
            "UBAP_DATA_DIR": data,
            "UBAP_USERS": str(users),
            "UBAP_HISTORY_DAYS": str(days),
            "UBAP_START_DATE": (today - timedelta(days=days)).isoformat(),
            "UBAP_SOURCE": "synthetic",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONPATH": str(repo),
        }
        code = (
            f"import json, sys; sys.path.insert(0, 'bench'); from {module} import measure; "
            f"print('RESULT ' + json.dumps({call}))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True
        )
    # Progress bars of the libraries may share the RESULT line: take what follows it.
    lines = [line.split("RESULT ", 1)[1] for line in proc.stdout.splitlines() if "RESULT " in line]
    if proc.returncode or not lines:
        sys.exit(
            f"{users} users x {days} days failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return json.loads(lines[-1])
