"""Revocation propagation: how soon after a Disconnect the kit refuses the token, by poll and
by push, while it serves load; and what the kit's cached path costs against the same app
without it (docs/PERFORMANCE.md, "Revocation propagation").

``bash bench/run --propagation [--quick]``, or on its own::

    .venv/bin/python -m bench.propagation [--quick] [--kills N] [--database sqlite|postgresql]

The IdP is started as the main benchmark starts it (production mode, gunicorn with its own
config, a seeded data set), with the events pool that takes the long polls and one ``flask ssf
deliver`` worker beside it, as docs/OPERATIONS.md deploys them. Three copies of
bench/apps/kit.py are served by gunicorn with one worker each: the kit with a poll stream, the
kit with a push stream, and the app without the kit. Then:

1. **Kills, in interleaved rounds.** Each round visits both methods (the order alternating);
   for each, wrk loads that method's kit app with cached bearers while the round's kills run
   one after another (bench/kills.py): cache the victim's token in the kit, revoke its
   connection as the client, ask the kit with the token until it refuses.
2. **Cached path.** wrk on each of the three apps in turn, a warm-up pass and then
   interleaved rounds, as the main harness measures its rows.

The exit status is 0 only when every target is met and every kill and request was right.
"""

import argparse
import os
import random
import sys
import time
from dataclasses import dataclass
from dataclasses import replace
from pathlib import Path

from bench import facts
from bench import kills
from bench import load
from bench import propagation_report as report
from bench import settings
from bench.apps.kit import PROTECTED
from bench.dataset import Shape
from bench.harness import DataSet
from bench.harness import Run
from bench.harness import create_database
from bench.harness import human
from bench.harness import log
from bench.harness import migrate
from bench.load import Plan
from bench.report import write_doc
from bench.seed import seed
from bench.servers import Process
from bench.servers import answers
from bench.settings import ISSUER
from bench.settings import OUT
from bench.settings import ROOT
from bench.settings import VENV_BIN
from bench.settings import idp_env

DOC = ROOT / "docs" / "PERFORMANCE.md"
METHODS = ("poll", "push")
#: Kills per method before the rounds, under load, not counted: the first SETs of a stream
#: may wait for a key fetch or a connection the later ones find ready.
WARMUP_KILLS = 2
#: Seconds of load before a round's first kill, so the kit is busy when it comes.
SETTLE = 0.5
#: Seconds between two cached-path rows, so one row's connections are gone.
ROW_GAP = 0.2
#: Pause before each revoke, drawn at random (seconds): longer than a cycle of the push
#: worker's idle pass (0.1 s) and of the long poll's looks (0.08 s), so the kills fall at
#: every phase of those loops rather than in step with them.
PAUSE = (0.1, 0.3)
#: Longest wait for a kit's stream to be verified healthy after it starts.
HEALTHY_TIMEOUT = 60.0
#: The events pool's settings in docs/OPERATIONS.md: one process, a thread per waiting poll.
EVENTS_POOL = {"IDP_WORKERS": "1", "IDP_THREADS": "32"}


@dataclass(frozen=True)
class Setup:
    """The knobs of one propagation run."""

    name: str
    #: Stored tokens of each kind in the data set (bench/dataset.py).
    size: int
    #: Counted kills per delivery method.
    kills: int
    #: Interleaved rounds the kills and the cached-path rows are spread over.
    rounds: int
    #: Seconds of warm-up load per app before the rounds.
    warmup: int
    #: Seconds per cached-path row per round.
    duration: int
    #: Live access tokens the load cycles through (cached in the kit after the warm-up).
    sample: int
    database: str = "sqlite"
    connections: int = 16
    threads: int = 1
    keep_data: bool = False

    @property
    def victims(self) -> int:
        """Connections the kills end, warm-up included."""
        return len(METHODS) * (self.kills + WARMUP_KILLS)


FULL = Setup("full", size=10_000, kills=200, rounds=5, warmup=2, duration=6, sample=2_000)
QUICK = Setup("quick", size=1_000, kills=40, rounds=2, warmup=1, duration=2, sample=200)


def share(total: int, rounds: int, r: int) -> int:
    """Round ``r``'s part of ``total`` kills, the remainder going to the first rounds."""
    return total // rounds + (1 if r < total % rounds else 0)


def rotated(items: tuple, r: int) -> tuple:
    """``items`` starting ``r`` places on, so no item always comes first."""
    shift = r % len(items)
    return items[shift:] + items[:shift]


def sqlite_url(size: int) -> str:
    """A fresh SQLite file of this benchmark's own, apart from the main harness's."""
    path = OUT / f"propagation-{human(size)}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


class Propagation:
    """One run; a context manager that stops what it started and drops what it made."""

    def __init__(self, setup: Setup):
        self.setup = setup
        base = settings.QUICK if setup.name == "quick" else settings.FULL
        # The main harness's Run defines the servers and cleans up after them.
        self.run = Run(replace(base, databases=(setup.database,), sizes=(setup.size,),
                               keep_data=setup.keep_data))
        self.methods = {m: report.Method(m) for m in METHODS}
        self.kits: dict = {}
        self.reference = None
        self.rows: list[report.Row] = []
        self.victims: list[kills.Victim] = []
        self.started = time.time()
        self.load_average = (os.getloadavg()[0], 0.0)

    def __enter__(self):
        """Start clean, as the main harness does."""
        self.run.__enter__()
        return self

    def __exit__(self, *exc):
        """Stop the servers and the worker, drop the data, delete the raw credentials.

        The kit apps go first, while the IdP still answers: each receiver deletes its stream
        as it exits, as in a deployment, instead of waiting out its request timeout."""
        for server in [*self.kits.values(), self.reference]:
            if server is not None:
                server.stop()
        return self.run.__exit__(*exc)

    def prepare(self) -> None:
        """Seed, start the IdP, the push worker and the three apps, make the victims, and
        wait until both streams are verified."""
        s = self.setup
        url = (sqlite_url(s.size) if s.database == "sqlite"
               else create_database(s.database, s.size, f"prop{self.run.tag}"))
        self.data_set = DataSet(s.database, s.size, url)
        self.run.data_sets.append(self.data_set)
        env = idp_env(url, 0, self.run.secret_key, self.run.limiter_uri(s.database))
        log(f"{self.data_set.name}: migrating")
        migrate(env)
        log(f"{self.data_set.name}: seeding {s.size:,} tokens, {s.victims} connections to end")
        started = time.monotonic()
        seeded = seed(url, Shape(s.size, s.sample, s.victims))
        self.data_set.seed_seconds = time.monotonic() - started
        self.data_set.counts = seeded.counts
        self.seeded = seeded
        idp_only = {k: v for k, v in env.items() if k != "IDP_BIND"}
        self.idp = self.run.server(f"propagation-idp-{self.data_set.name}", "app:app", idp_only,
                                   "/readyz")
        # The events pool beside it, taking the long polls, as docs/OPERATIONS.md deploys it.
        self.events = self.run.server(f"propagation-events-{self.data_set.name}", "app:app",
                                      {**idp_only, **EVENTS_POOL}, "/readyz")
        # The push worker as operators run it: its defaults, the IdP's settings.
        self.deliver = Process("propagation-ssf-deliver",
                               [str(VENV_BIN / "flask"), "--app", "app", "ssf", "deliver"],
                               idp_only)
        one = {"IDP_WORKERS": "1", "IDP_THREADS": "1"}
        kit = {**one, "KIT_ISSUER": ISSUER, "KIT_UPSTREAM": self.idp.url,
               "KIT_EVENTS_UPSTREAM": self.events.url,
               "KIT_CLIENT_ID": seeded.rs_id, "KIT_CLIENT_SECRET": seeded.rs_secret}
        self.kits = {m: self.run.server(f"propagation-kit-{m}", "bench.apps.kit:app",
                                        {**kit, "KIT_DELIVERY": m}, "/healthz")
                     for m in METHODS}
        self.reference = self.run.server("propagation-no-kit", "bench.apps.kit:app",
                                         {**one, "KIT_DELIVERY": "none"}, "/healthz")
        for server in self.run.servers:
            server.spawn()
        for server in self.run.servers:
            server.wait_until(lambda s=server: answers(s.url + s.ready_path), "ready")
        self.deliver.spawn()
        self.run.servers.append(self.deliver)
        self.client = kills.client_form(seeded.client_id, seeded.client_secret)
        log(f"refreshing {s.victims} connections for their access and refresh tokens")
        self.victims = kills.make_victims(kills.Endpoint(self.idp.url),
                                          seeded.refresh_pool[:s.victims], self.client)
        for method, server in self.kits.items():
            self.wait_healthy(method, kills.Endpoint(server.url))
        self.write_plans()

    def wait_healthy(self, method: str, kit: kills.Endpoint) -> None:
        """Start the kit's receiver (its first bearer does) and wait for its verification.

        A push stream is verified only by a SET the push worker delivered, so this also
        proves the worker runs."""
        bearer = {"Authorization": f"Bearer {self.seeded.access_tokens[0]}"}
        status, _ = kit.request("GET", PROTECTED, bearer)
        if status != 200:
            raise RuntimeError(f"the {method} kit answered {status} to a live token")
        deadline = time.monotonic() + HEALTHY_TIMEOUT
        while (state := kills.state(kit, bearer))["healthy"] is not True:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {method} kit's stream never became healthy: "
                                   f"{state['reason']}\n{self.deliver.tail()[-1000:]}")
            time.sleep(0.2)
        log(f"{method} stream verified")

    def write_plans(self) -> None:
        """The load's plans: cached live tokens, each answer checked for what the app says."""
        values = OUT / "values-propagation-load.txt"
        values.write_text("\n".join(self.seeded.access_tokens) + "\n")
        bearer = {"Authorization": "Bearer {value}"}
        self.kit_plan = OUT / "plan-propagation-kit.lua"
        load.write_plan(self.kit_plan, Plan("GET", PROTECTED, bearer, None,
                                            ('"connection":%s*"con_',), cycle=True), values)
        self.reference_plan = OUT / "plan-propagation-no-kit.lua"
        load.write_plan(self.reference_plan, Plan("GET", PROTECTED, bearer, None,
                                                  ('"ok":%s*true',), cycle=True), values)

    def kill_under_load(self, method: str, victims, count: int, warmup: int = 0) -> tuple:
        """wrk on the method's kit app, ``warmup`` seconds of it alone, then ``count`` kills;
        the kills and wrk's figures."""
        s = self.setup
        kit, idp = kills.Endpoint(self.kits[method].url), kills.Endpoint(self.idp.url)
        proc = load.start(kit.url, self.kit_plan, s.connections, s.threads)
        try:
            time.sleep(max(SETTLE, warmup))
            done = [kills.kill(method, kit, idp, next(victims), self.client,
                               pause=random.uniform(*PAUSE)) for _ in range(count)]
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return done, load.stop(proc)

    def measure_propagation(self) -> None:
        """A warm-up per method, then the rounds, each visiting both methods."""
        s = self.setup
        victims = iter(self.victims)
        for method in METHODS:
            m = self.methods[method]
            m.warmup_kills, m.warmup_load = self.kill_under_load(method, victims, WARMUP_KILLS,
                                                                 s.warmup)
            log(f"warm-up {method}: {m.warmup_load.rate:.0f} req/s, kills "
                f"{', '.join(report.ms(k.propagation_ms) for k in m.warmup_kills)} ms")
        for r in range(s.rounds):
            count = share(s.kills, s.rounds, r)
            for method in rotated(METHODS, r):
                done, outcome = self.kill_under_load(method, victims, count)
                m = self.methods[method]
                m.kills += done
                m.loads.append(outcome)
                counted = [k.propagation_ms for k in done if k.problem() is None]
                p50 = kills.percentile(counted, 50) if counted else None
                log(f"round {r + 1}/{s.rounds} {method}: {len(counted)} of {count} kills "
                    f"counted, p50 {report.ms(p50)} ms, kit {outcome.rate:.0f} req/s")

    def measure_cached_path(self) -> None:
        """The kit apps' cached path against the app without the kit: a warm-up pass, then
        interleaved rounds."""
        s = self.setup
        targets = {"reference": (self.reference, self.reference_plan),
                   **{m: (self.kits[m], self.kit_plan) for m in METHODS}}
        self.rows = [report.Row(key) for key in targets]
        for row in self.rows:
            server, plan = targets[row.key]
            row.warmup = load.run(server.url, plan, s.warmup, s.connections, s.threads)
            time.sleep(ROW_GAP)
        for r in range(s.rounds):
            for row in rotated(tuple(self.rows), r):
                server, plan = targets[row.key]
                row.rounds.append(load.run(server.url, plan, s.duration, s.connections,
                                           s.threads))
                time.sleep(ROW_GAP)
            log(f"cached path round {r + 1}/{s.rounds}: " + ", ".join(
                f"{row.key} {row.rounds[-1].rate:.0f} req/s" for row in self.rows))

    def finish(self) -> None:
        """Note the load average, and that the push worker lived through the run."""
        self.load_average = (self.load_average[0], os.getloadavg()[0])
        if self.deliver.proc.poll() is not None:
            raise RuntimeError(f"the push worker exited:\n{self.deliver.tail()}")

    def conditions(self, known: dict) -> list[tuple[str, str]]:
        """The docs section's conditions table; ``known`` is what bench.facts collected."""
        s = self.setup
        counts = ", ".join(f"{k} {v:,}" for k, v in self.data_set.counts.items())
        return [
            ("machine", known["machine"]),
            ("software", known["software"]),
            ("databases", known["databases"]),
            ("data set", f"{self.data_set.name}, seeded in {self.data_set.seed_seconds:.0f} s: "
                         f"{counts}"),
            ("IdP", "production mode behind one proxy, gunicorn with idp/infra/gunicorn_conf.py: "
                    "the IdP pool (2 sync workers, as in the main benchmark) and the events "
                    "pool for long polls (1 gthread process, 32 threads); one `flask ssf "
                    "deliver` with its defaults"),
            ("kit apps", "bench/apps/kit.py under gunicorn, 1 sync worker each: poll stream, "
                         "push stream (its endpoint in the same app), no kit"),
            ("load", f"wrk, {s.threads} thread, {s.connections} connections, cycling "
                     f"{len(self.seeded.access_tokens):,} cached live access tokens"),
            ("kills", f"{s.kills} per method over {s.rounds} interleaved rounds, after "
                      f"{WARMUP_KILLS} warm-up kills each; {PAUSE[0]:g}-{PAUSE[1]:g} s random "
                      "pause before each revoke"),
            ("cached path", f"warm-up {s.warmup} s per app, then {s.rounds} interleaved rounds "
                            f"of {s.duration} s"),
            ("load average", f"{self.load_average[0]:.1f} at the start, "
                             f"{self.load_average[1]:.1f} at the end (2 cores)"),
        ]

    def heading(self, commit: str, date: str) -> str:
        """Which run the section reports."""
        s = self.setup
        what = (f"Run of {date} ({s.name} profile, {s.database}, commit `{commit}`).")
        if s.name == "quick":
            what += (" A quick run on a shared machine: few kills, so p99 is close to the "
                     "slowest kill, and short rounds; read the figures as a check that the "
                     "benchmark works, not as the measurement the targets are judged by.")
        return what


def arguments(argv=None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="bench/run --propagation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK.kills} kills per method, {QUICK.size:,} tokens, short "
                             "rounds")
    parser.add_argument("--kills", type=int, help="counted kills per delivery method")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--databases", nargs="+", choices=("sqlite", "postgresql"),
                        help="as the main harness takes it; the first one is used")
    parser.add_argument("--size", type=int, help="stored tokens of each kind")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--duration", type=int, help="seconds per cached-path row per round")
    parser.add_argument("--keep-data", action="store_true", default=None)
    parser.add_argument("--write-doc", action=argparse.BooleanOptionalAction, default=None,
                        help="rewrite the propagation section of docs/PERFORMANCE.md "
                             "(default: on for a full run, off for --quick)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Run it; exit 1 when a target is missed or anything was wrong."""
    args = arguments(argv)
    setup = QUICK if args.quick else FULL
    database = args.databases[0] if args.databases else args.database
    overrides = {"kills": args.kills, "size": args.size, "rounds": args.rounds,
                 "duration": args.duration, "keep_data": args.keep_data, "database": database}
    setup = replace(setup, **{k: v for k, v in overrides.items() if v is not None})
    with Propagation(setup) as run:
        run.prepare()
        run.measure_propagation()
        run.measure_cached_path()
        run.finish()
    methods = list(run.methods.values())
    checks = report.targets(methods, run.rows)
    print(report.console(methods, run.rows, checks))
    report.write_kills(OUT / "propagation-kills.csv", methods)
    write = args.write_doc if args.write_doc is not None else setup.name == "full"
    if write:
        known = facts.collect((setup.database,))
        section = report.markdown(methods, run.rows, checks, run.conditions(known),
                                  run.heading(known["commit"], known["date"]))
        write_doc(DOC, section, report.START, report.END)
        log(f"propagation results written to {DOC.relative_to(ROOT)}")
    return 0 if all(ok for _, _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
