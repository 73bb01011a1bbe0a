"""Sample the IdP's workers with py-spy while wrk drives one row, and name the hot spots."""

import subprocess
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from bench import load
from bench.harness import DataSet
from bench.harness import Measurement
from bench.harness import Run
from bench.harness import create_database
from bench.harness import log
from bench.settings import OUT
from bench.settings import VENV_BIN
from bench.settings import Profile

#: Rows profiled when none are named.
DEFAULT_ROWS = ("introspect_key", "introspect_token", "me_key", "me_token", "refresh")
#: Samples per second per worker; low enough not to starve two cores.
RATE = 200
#: Two views of the same load: where the CPU goes (samples holding the GIL), and where a
#: request's time goes (every sample of a thread serving a request, waits included).
MODES = {"cpu": ["--gil"], "wall": []}
#: A stack is serving a request when it passes through this frame.
SERVING = ("ThreadWorker.handle ", "SyncWorker.handle ")
#: Named stages of a request: a sample counts for a stage when a frame contains one of its
#: needles (py-spy writes frames as ``function (package/file.py:line)``).
STAGES = (
    ("Flask app (everything inside Flask.__call__)", ("Flask.__call__ (",)),
    ("gunicorn access log", ("gunicorn/glogging.py",)),
    # Flask-Limiter's route wrapper encloses the whole view, so only its checks count here.
    ("rate limiting (Flask-Limiter, limits, idp.infra.ratelimit)",
     ("Limiter.", "LimitManager.", "limits/", "idp/infra/ratelimit.py",
      "flowestate_kit/counting.py")),
    ("limits memory-storage timer threads", ("__schedule_expiry (",)),
    ("resource-server authentication", ("authenticate_resource_server (",)),
    ("client authentication", ("authenticate_client (",)),
    ("credential core (authenticate_token)", ("authenticate_token (idp/store/credentials.py",)),
    ("last-used bookkeeping", ("idp/store/last_used.py",)),
    ("Authlib request wrapping", ("create_oauth2_request (",)),
    ("refresh grant (rotation)", ("RefreshTokenGrant.create_token_response (",)),
    ("code grant (exchange)", ("AuthorizationCodeGrant.create_token_response (",)),
    ("seal / unseal of the successor (HKDF + Fernet)", ("seal (idp/core/secrets.py",)),
    ("SQLAlchemy statement compile + cache key", ("_compile_w_cache (", "_generate_cache_key (")),
    ("ORM flush (unit of work)", ("Session.flush (",)),
    ("ORM row loading", ("sqlalchemy/orm/loading.py",)),
    ("driver execute", ("do_execute (",)),
    ("commit", ("do_commit (",)),
    ("rollback", ("do_rollback (",)),
    ("request id", ("request_id (idp/infra/logs.py",)),
    ("session cookie open/save", ("SecureCookieSessionInterface",)),
    ("JSON encoding", ("json/",)),
)
#: Where a frame's time is booked, first match wins (py-spy shortens file names to packages).
BUCKETS = (
    ("idp (our code)", ("idp/", "flowestate_kit/")),
    ("authlib", ("authlib/",)),
    ("sqlalchemy", ("sqlalchemy/",)),
    ("database driver", ("sqlite3/", "psycopg/")),
    ("flask-limiter / limits", ("flask_limiter/", "limits/")),
    ("flask / werkzeug", ("flask/", "werkzeug/", "flask_sqlalchemy/", "flask_wtf/")),
    ("gunicorn", ("gunicorn/",)),
    ("json", ("json/",)),
)


def bucket(frame: str) -> str:
    """The bucket a frame such as ``judge (idp/core/credentials.py:12)`` belongs to."""
    location = frame[frame.rfind("(") + 1:]
    for name, needles in BUCKETS:
        if any(needle in location for needle in needles):
            return name
    return "other (stdlib, logging, ...)"


def summarize(raw: str, serving_only: bool = False, top: int = 25) -> str:
    """Stage, package and function shares of the samples (of request-serving stacks only)."""
    own, inclusive, buckets, stages = Counter(), Counter(), Counter(), Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if serving_only and not any(frame in stack for frame in SERVING):
            continue
        frames = stack.split(";")
        n = int(count)
        total += n
        own[frames[-1]] += n
        buckets[bucket(frames[-1])] += n
        for frame in set(frames):
            inclusive[frame] += n
        for name, needles in STAGES:
            if any(needle in stack for needle in needles):
                stages[name] += n
    if not total:
        return "no samples"
    out = [f"{total} samples", "", "stages (a sample counts for every stage on its stack):"]
    out += [f"  {100 * stages[name] / total:5.1f}%  {name}" for name, _ in STAGES if stages[name]]
    out += ["", "self time by package:"]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in buckets.most_common()]
    out += ["", f"top {top} functions by self time:"]
    out += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    out += ["", f"top {top} functions by inclusive time (under the request handler):"]
    interesting = [(f, n) for f, n in inclusive.most_common() if "gunicorn/" not in f]
    out += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in interesting[:top]]
    return "\n".join(out)


def record(master: int, seconds: int, output: Path, mode: str) -> subprocess.Popen:
    """Start py-spy on a gunicorn master and its workers."""
    argv = [str(VENV_BIN / "py-spy"), "record", "--pid", str(master), "--subprocesses",
            "--duration", str(seconds), "--rate", str(RATE), "--nonblocking", "--function",
            "--format", "raw", "--output", str(output), *MODES[mode]]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def profile_row(run: Run, m: Measurement, seconds: int, mode: str) -> str:
    """Load one row for ``seconds`` plus margins, sampling in the middle."""
    output = OUT / f"profile-{m.row.key}-{mode}.txt"
    plan_path = OUT / f"plan-profile-{m.row.key}.lua"
    load.write_plan(plan_path, m.row.plan, run.values_for(m, seconds + 3, "profile"))
    wrk = subprocess.Popen(
        ["wrk", "-t", "1", "-c", str(run.profile.connections), "-d", f"{seconds + 3}s",
         "--timeout", "5s", "-s", str(load.WALK), m.server.url, "--", str(plan_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    spy = record(m.server.proc.pid, seconds, output, mode)
    _, spy_err = spy.communicate(timeout=seconds + 60)
    wrk_out, _ = wrk.communicate(timeout=seconds + 60)
    outcome = load.parse(wrk_out)
    if spy.returncode != 0:
        raise RuntimeError(f"py-spy failed: {spy_err[-1000:]}")
    header = (f"{m.row.key} ({mode} view): {outcome.rate:.0f} req/s under the profiler, "
              f"{outcome.errors} errors")
    return header + "\n" + summarize(output.read_text(), serving_only=mode == "wall")


def main(profile: Profile, rows: list[str]) -> int:
    """Profile the chosen rows on the first database and size of the profile."""
    rows = rows or list(DEFAULT_ROWS)
    # Pools are sized by rounds; each mode's recording spends about one round's worth.
    profile = replace(profile, rounds=2 * len(MODES))
    database, size = profile.databases[0], profile.sizes[0]
    with Run(profile) as run:
        run.profile = profile
        data_set = DataSet(database, size, create_database(database, size, run.tag))
        run.data_sets.append(data_set)
        run.fill(data_set)
        data_set.idp.start()
        for row in data_set.rows:
            if row.key not in rows:
                continue
            m = Measurement(data_set, row, data_set.idp)
            for mode in MODES:
                log(f"profiling {row.key} ({mode}) on {data_set.name} for {profile.duration} s")
                report = profile_row(run, m, profile.duration, mode)
                (OUT / f"profile-{row.key}-{mode}-summary.txt").write_text(report + "\n")
                print(report + "\n")
    return 0
