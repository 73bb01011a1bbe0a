"""Turn a run's outcomes into the results table, the target checks and the docs section."""

import os
import runpy
import statistics
from dataclasses import dataclass

from bench import granian
from bench.harness import Measurement
from bench.harness import Run
from bench.scenarios import LABELS
from bench.settings import GUNICORN_CONF

#: The docs section between these markers is rewritten by every full run.
START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"
READ_ROWS = ("introspect_key", "introspect_token", "me_key", "me_token")


@dataclass
class Line:
    """One row of the results table: medians over the rounds."""

    m: Measurement
    rate: float
    p50: float
    p99: float
    errors: int
    ceiling: float = 0.0
    floor: float = 0.0

    @property
    def where(self) -> str:
        """The data set name, or a dash for the ceiling."""
        return self.m.data_set.name if self.m.data_set else "-"

    @property
    def tail(self) -> float:
        """p99 over p50."""
        return self.p99 / self.p50 if self.p50 else 0.0


def summarize(run: Run) -> list[Line]:
    """Medians per row, with each row's ratio to the ceiling and to its data set's floor."""
    lines = []
    for m in run.measurements:
        outcomes = m.rounds
        errors = sum(o.errors for o in outcomes) + (m.warmup.errors if m.warmup else 0)
        lines.append(Line(m, statistics.median(o.rate for o in outcomes),
                          statistics.median(o.p50_ms for o in outcomes),
                          statistics.median(o.p99_ms for o in outcomes), errors))
    ceiling = lines[0].rate
    floors = {id(line.m.data_set): line.rate for line in lines if line.m.row.key == "floor"}
    for line in lines:
        line.ceiling = line.rate / ceiling if ceiling else 0.0
        floor = floors.get(id(line.m.data_set))
        line.floor = line.rate / floor if floor else 0.0
    return lines


def find(lines: list[Line], database: str, size: int, key: str) -> Line | None:
    """The line of one row of one data set."""
    for line in lines:
        ds = line.m.data_set
        if ds and ds.database == database and ds.size == size and line.m.row.key == key:
            return line
    return None


#: The performance issue's targets, as x ceiling of the same run: (database, rows, least).
CEILING_TARGETS = (
    ("sqlite", READ_ROWS, 0.70),
    ("postgresql", READ_ROWS, 0.45),
    ("sqlite", ("refresh",), 0.25),
    ("postgresql", ("refresh",), 0.20),
    ("sqlite", ("code",), 0.15),
    ("postgresql", ("code",), 0.15),
)
#: Against the peers, same run: (our row, peer row, least ratio). Ours on the smallest SQLite
#: data set, which holds as many tokens as the peers and, like DOT, is SQLite.
PEER_TARGETS = (
    ("introspect_token", "dot_introspect", 3.0),
    ("introspect_token", "oidc_introspect", 0.75),
    ("refresh", "dot_refresh", 5.0),
)


def targets(run: Run, lines: list[Line]) -> list[tuple[str, str, bool]]:
    """Each target of the performance issue: (what, measured, met)."""
    out = []
    sizes = run.profile.sizes
    for line in lines:
        ds = line.m.data_set
        for database, rows, least in CEILING_TARGETS:
            if ds and ds.database == database and line.m.row.key in rows:
                out.append((f"{line.where} {LABELS[line.m.row.key]} >= {least:.2f} x ceiling",
                            f"{line.ceiling:.2f}", line.ceiling >= least))
    ours = {line.m.row.key: line for line in lines
            if line.m.data_set and line.m.row.server == "idp"
            and line.m.data_set.database == "sqlite" and line.m.data_set.size == min(sizes)}
    peers = {line.m.row.key: line for line in lines if line.m.row.server == "peer"}
    for mine, theirs, least in PEER_TARGETS:
        if mine in ours and theirs in peers and peers[theirs].rate:
            ratio = ours[mine].rate / peers[theirs].rate
            out.append((f"{ours[mine].where} {LABELS[mine]} >= {least:g} x "
                        f"{LABELS[theirs]}", f"{ratio:.2f}", ratio >= least))
    if len(sizes) > 1:
        small, large = min(sizes), max(sizes)
        for database in run.profile.databases:
            for key in LABELS:
                a, b = find(lines, database, small, key), find(lines, database, large, key)
                if a and b and a.rate:
                    kept = b.rate / a.rate
                    out.append((f"{database} {LABELS[key]}: {b.where} keeps >= 0.90 of "
                                f"{a.where}", f"{kept:.2f}", kept >= 0.90))
    # The peers' rows are there for comparison; the targets are the IdP's own.
    worst = max((line for line in lines if line.m.row.server != "peer"),
                key=lambda line: line.tail)
    out.append(("p99 <= 4 x p50 on every row",
                f"worst {worst.tail:.1f} ({worst.where} {worst.m.row.key})", worst.tail <= 4))
    largest = [ds for ds in run.data_sets if ds.size == max(sizes)]
    rss = max(w["rss_mib"] for ds in largest for w in run.memory[ds.idp.name])
    out.append((f"IdP worker RSS <= 150 MB after the {largest[0].name.split('-')[1]} run",
                f"{rss:.0f} MiB", rss <= 150))
    errors = sum(line.errors for line in lines)
    out.append(("0 errors (wrong answers, socket errors, pool run out)", str(errors),
                errors == 0))
    return out


def console(lines: list[Line], checks: list[tuple[str, str, bool]]) -> str:
    """The table and the target checks as plain text."""
    # Wide enough for a peer's name and release (--peers); 16 otherwise, as always.
    w = max([16] + [len(line.where) + 2 for line in lines])
    head = (f"{'data set':<{w}}{'row':<40}{'req/s':>9}{'x ceil':>8}{'x floor':>8}"
            f"{'p50 ms':>8}{'p99 ms':>8}{'p99/p50':>8}{'errors':>7}")
    out = [head, "-" * len(head)]
    for line in lines:
        out.append(f"{line.where:<{w}}{LABELS[line.m.row.key]:<40}{line.rate:>9.0f}"
                   f"{line.ceiling:>8.2f}{line.floor or 0:>8.2f}{line.p50:>8.2f}"
                   f"{line.p99:>8.2f}{line.tail:>8.1f}{line.errors:>7}")
    out.append("")
    out += [f"{'PASS' if ok else 'FAIL'}  {what}: {measured}" for what, measured, ok in checks]
    out += [f"first wrong answer, {where}: {text}" for where, text in wrong_answers(lines)]
    return "\n".join(out)


def wrong_answers(lines: list[Line]) -> list[tuple[str, str]]:
    """The first wrong answer of each row that had one (or what else went wrong)."""
    out = []
    for line in lines:
        for o in ([line.m.warmup] if line.m.warmup else []) + line.m.rounds:
            if o.errors:
                what = o.first_wrong or (
                    "credential pool ran out" if o.exhausted else
                    f"{o.socket_errors} socket errors or timeouts (wrk --timeout 5s)")
                out.append((f"{line.where} {line.m.row.key}", what))
                break
    return out


def server_settings(p) -> str:
    """gunicorn's worker class, processes and threads as every server of the run had them."""
    if p.server == "granian":
        return granian.settings_line(p)
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith("IDP_")]:
            del os.environ[name]
        if p.server_threads:
            os.environ["IDP_THREADS"] = str(p.server_threads)
        if p.server_workers:
            os.environ["IDP_WORKERS"] = str(p.server_workers)
        conf = runpy.run_path(str(GUNICORN_CONF))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    worker_class = p.worker_class or conf["worker_class"]
    if worker_class == "sync" and conf["threads"] > 1:
        worker_class = "gthread"  # what gunicorn itself does
    return (f"gunicorn `{worker_class}` worker, {conf['workers']} processes x "
            f"{conf['threads']} thread(s)")


def markdown(run: Run, lines: list[Line], checks, facts: dict) -> str:
    """The generated docs section: conditions, results, targets, memory, data sets."""
    p = run.profile
    out = [START, "", f"Run of {facts['date']} ({p.name} profile, commit `{facts['commit']}`).",
           "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in facts.items() if k not in ("date", "commit")]
    out += [f"| load | wrk, {p.threads} thread, {p.connections} connections; warm-up "
            f"{p.warmup} s per row, then {p.rounds} interleaved rounds of {p.duration} s |",
            f"| servers | {server_settings(p)}, the same for every server |"]
    if run.peers:
        from bench.peers import describe

        out.append(f"| peers | {describe()} |")
    out.append("")
    out += ["### Results (medians over the rounds)", "",
            "| data set | row | req/s | x ceiling | x floor | p50 ms | p99 ms | p99/p50 | "
            "req/s per round | errors |", "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for line in lines:
        per_round = " / ".join(f"{o.rate:.0f}" for o in line.m.rounds)
        floor = f"{line.floor:.2f}" if line.floor else ""
        out.append(f"| {line.where} | {LABELS[line.m.row.key]} | {line.rate:.0f} | "
                   f"{line.ceiling:.2f} | {floor} | {line.p50:.2f} | {line.p99:.2f} | "
                   f"{line.tail:.1f} | {per_round} | {line.errors} |")
    out += ["", "### Targets", "", "| target | measured | met |", "|---|---|---|"]
    out += [f"| {what} | {measured} | {'yes' if ok else '**no**'} |"
            for what, measured, ok in checks]
    wrong = wrong_answers(lines)
    if wrong:
        out += ["", "First wrong answer of each row that had errors:", ""]
        out += [f"- {where}: `{text}`" for where, text in wrong]
    out += ["", "### Worker memory after the run", "",
            "| server | worker RSS MiB | worker peak RSS MiB |", "|---|---|---|"]
    for name, workers in run.memory.items():
        now = " / ".join(f"{w['rss_mib']:.0f}" for w in workers)
        peak = " / ".join(f"{w['peak_mib']:.0f}" for w in workers)
        out.append(f"| {name} | {now} | {peak} |")
    out += ["", "### Data sets as seeded", "", "| data set | seeded in | rows per table |",
            "|---|---|---|"]
    for ds in [*run.data_sets, *run.peers]:
        counts = ", ".join(f"{k} {v:,}" for k, v in ds.counts.items())
        out.append(f"| {ds.name} | {ds.seed_seconds:.0f} s | {counts} |")
    out += ["", END]
    return "\n".join(out)


def write_doc(path, section: str, start: str = START, end: str = END) -> None:
    """Replace the generated section between ``start`` and ``end`` (or append one); other
    generated sections of the page keep markers of their own."""
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
