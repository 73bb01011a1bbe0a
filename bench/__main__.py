"""Command line: ``bash bench/run [--quick] [--profile ROW ...]`` (see docs/PERFORMANCE.md)."""

import argparse
import shutil
import sys
from dataclasses import replace

from bench import facts
from bench import report
from bench.harness import Run
from bench.harness import log
from bench.settings import ROOT
from bench.settings import choose

DOC = ROOT / "docs" / "PERFORMANCE.md"


def arguments(argv=None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small data sets, short rounds, SQLite only (under 2 minutes)")
    parser.add_argument("--databases", nargs="+", choices=("sqlite", "postgresql"))
    parser.add_argument("--sizes", nargs="+", type=int, help="stored tokens per data set")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--duration", type=int, help="seconds per row per round")
    parser.add_argument("--server-threads", type=int,
                        help="IDP_THREADS for every server (1 = gunicorn's sync worker)")
    parser.add_argument("--server-workers", type=int,
                        help="IDP_WORKERS (processes) for every server")
    parser.add_argument("--worker-class", choices=("gthread", "sync"),
                        help="gunicorn worker class for every server (default: the config's)")
    parser.add_argument("--server", choices=("gunicorn", "granian"), default="gunicorn",
                        help="serve the ceiling, the floors and the IdP with gunicorn (the "
                             "production config) or granian, with the same settings")
    parser.add_argument("--keep-data", action="store_true", default=None,
                        help="keep the SQLite files and PostgreSQL scratch databases")
    parser.add_argument("--write-doc", action=argparse.BooleanOptionalAction, default=None,
                        help="rewrite the results section of docs/PERFORMANCE.md "
                             "(default: on for a full run, off for --quick)")
    parser.add_argument("--peers", action="store_true", default=None,
                        help="also measure django-oauth-toolkit and node oidc-provider "
                             "(installed pinned under bench/out/peers)")
    parser.add_argument("--propagation", action="store_true",
                        help="instead, time revocation from a Disconnect to the kit's first "
                             "refusal, poll and push, and the kit's cached path "
                             "(bench/propagation.py; --quick, --kills N, --database)")
    parser.add_argument("--profile", nargs="*", metavar="ROW",
                        help="instead of the table, sample the IdP with py-spy under load "
                             "(rows: introspect_key introspect_token me_key me_token refresh)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Run the benchmark (or the profiler); exit 1 when a target is missed or a run errs."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (bash bench/run installs it)", file=sys.stderr)
        return 2
    if "--propagation" in argv:
        # Its own options (--kills, --database) are not the table's: it parses them itself.
        from bench import propagation

        return propagation.main([a for a in argv if a != "--propagation"])
    args = arguments(argv)
    profile = choose(args.quick, databases=tuple(args.databases or ()) or None,
                     sizes=tuple(args.sizes or ()) or None, rounds=args.rounds,
                     duration=args.duration, server_threads=args.server_threads,
                     server_workers=args.server_workers,
                     worker_class=args.worker_class, keep_data=args.keep_data,
                     server=args.server)
    if args.profile is not None:
        from bench import profiling

        return profiling.main(profile, args.profile)
    if args.peers:
        profile = replace(profile, peers=True)
    with Run(profile) as run:
        run.prepare()
        run.measure()
    lines = report.summarize(run)
    checks = report.targets(run, lines)
    print(report.console(lines, checks))
    write = args.write_doc if args.write_doc is not None else profile.name == "full"
    if write:
        section = report.markdown(run, lines, checks, facts.collect(profile.databases))
        report.write_doc(DOC, section)
        log(f"results written to {DOC.relative_to(ROOT)}")
    return 0 if all(ok for _, _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
