"""The propagation benchmark's figures: per delivery method, the cached-path ratio, the targets,
the console table and the docs section (docs/PERFORMANCE.md, "Revocation propagation")."""

import statistics
from dataclasses import dataclass
from dataclasses import field

from bench.kills import Kill
from bench.kills import percentile
from bench.load import Outcome

#: The docs section between these markers is rewritten by every full propagation run.
START = "<!-- bench:propagation:start -->"
END = "<!-- bench:propagation:end -->"
#: The issue's targets: p99 from the Disconnect to the kit's first refusal, and the kit's
#: cached path against the same app without the kit.
P99_TARGET_MS = 250
RATIO_TARGET = 0.90
LABELS = {"reference": "the same Flask app without the kit",
          "poll": "kit, poll stream, cached bearers", "push": "kit, push stream, cached bearers"}


@dataclass
class Method:
    """Everything measured for one delivery method."""

    method: str
    kills: list[Kill] = field(default_factory=list)
    #: Kills before the rounds, under load too, not counted in the figures.
    warmup_kills: list[Kill] = field(default_factory=list)
    #: wrk on the kit app while the kills of each round ran, and during the warm-up.
    loads: list[Outcome] = field(default_factory=list)
    warmup_load: Outcome | None = None

    @property
    def counted(self) -> list[Kill]:
        """The kills that measured what they claim (Kill.problem)."""
        return [k for k in self.kills if k.problem() is None]

    @property
    def problems(self) -> list[str]:
        """Why each kill that does not count (warm-up included) does not."""
        return [p for k in self.warmup_kills + self.kills if (p := k.problem())]

    def figure(self, q: float) -> float | None:
        """The q-th percentile of propagation over the counted kills, in ms."""
        times = [k.propagation_ms for k in self.counted]
        return percentile(times, q) if times else None

    @property
    def load_errors(self) -> int:
        """Wrong answers and socket errors of the load, warm-up included."""
        warmup = self.warmup_load.errors if self.warmup_load else 0
        return sum(o.errors for o in self.loads) + warmup


@dataclass
class Row:
    """One row of the cached-path comparison."""

    key: str
    rounds: list[Outcome] = field(default_factory=list)
    warmup: Outcome | None = None

    @property
    def rate(self) -> float:
        """Median requests per second over the rounds."""
        return statistics.median(o.rate for o in self.rounds)

    @property
    def errors(self) -> int:
        """Every wrong answer, warm-up included."""
        return sum(o.errors for o in self.rounds) + (self.warmup.errors if self.warmup else 0)


def ms(value: float | None) -> str:
    """A time in ms for a table, or a dash."""
    return "-" if value is None else f"{value:.0f}"


def method_lines(methods: list[Method]) -> list[list[str]]:
    """Per method: kills counted, p50, p99, max, revoke p50, probes p50, load rate, errors."""
    out = []
    for m in methods:
        counted = m.counted
        revoke = percentile([k.revoke_ms for k in counted], 50) if counted else None
        probes = percentile([k.probes for k in counted], 50) if counted else None
        rate = statistics.median(o.rate for o in m.loads) if m.loads else 0.0
        out.append([m.method, f"{len(counted)} of {len(m.kills)}", ms(m.figure(50)),
                    ms(m.figure(99)), ms(m.figure(100)), ms(revoke),
                    "-" if probes is None else str(probes), f"{rate:.0f}", str(m.load_errors)])
    return out


def ratio_lines(rows: list[Row]) -> list[list[str]]:
    """Per row: req/s, ratio to the reference, p50, p99, rate per round, errors."""
    reference = rows[0].rate
    return [[LABELS[r.key], f"{r.rate:.0f}", f"{r.rate / reference:.2f}" if reference else "-",
             f"{statistics.median(o.p50_ms for o in r.rounds):.2f}",
             f"{statistics.median(o.p99_ms for o in r.rounds):.2f}",
             " / ".join(f"{o.rate:.0f}" for o in r.rounds), str(r.errors)] for r in rows]


def targets(methods: list[Method], rows: list[Row]) -> list[tuple[str, str, bool]]:
    """Each target: (what, measured, met)."""
    out = []
    for m in methods:
        p99 = m.figure(99)
        out.append((f"{m.method}: p99 from the revoke to the kit's first refusal <= "
                    f"{P99_TARGET_MS} ms", f"{ms(p99)} ms",
                    p99 is not None and p99 <= P99_TARGET_MS))
    reference = rows[0].rate if rows else 0.0
    for row in rows[1:]:
        ratio = row.rate / reference if reference else 0.0
        out.append((f"{LABELS[row.key]} >= {RATIO_TARGET:.2f} x {LABELS['reference']}",
                    f"{ratio:.2f}", ratio >= RATIO_TARGET))
    total = sum(len(m.kills) + len(m.warmup_kills) for m in methods)
    bad = sum(len(m.problems) for m in methods)
    out.append(("every kill counted: token served from the cache, then refused as "
                "token_revoked after a fresh look", f"{total - bad} of {total}", bad == 0))
    errors = sum(m.load_errors for m in methods) + sum(r.errors for r in rows)
    out.append(("0 errors under load (wrong answers, socket errors)", str(errors), errors == 0))
    return out


METHOD_HEAD = ["delivery", "kills counted", "p50 ms", "p99 ms", "max ms",
               "revoke answered p50 ms", "probes p50", "kit req/s under kills", "load errors"]
RATIO_HEAD = ["row", "req/s", "x without kit", "p50 ms", "p99 ms", "req/s per round", "errors"]


def text_table(head: list[str], lines: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell."""
    widths = [max(len(c) for c in column) for column in zip(head, *lines, strict=True)]
    out = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True))]
    out.append("-" * len(out[0]))
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return out


def console(methods: list[Method], rows: list[Row], checks) -> str:
    """Both tables, the targets and the first problems, as plain text."""
    out = text_table(METHOD_HEAD, method_lines(methods)) + [""]
    if rows:
        out += text_table(RATIO_HEAD, ratio_lines(rows)) + [""]
    out += [f"{'PASS' if ok else 'FAIL'}  {what}: {measured}" for what, measured, ok in checks]
    for m in methods:
        out += [f"not counted, {m.method}: {p}" for p in m.problems[:5]]
    return "\n".join(out)


def md_table(head: list[str], lines: list[list[str]], numeric_from: int = 2) -> list[str]:
    """A markdown table, right-aligned from column ``numeric_from``."""
    align = ["---" if i < numeric_from else "---:" for i in range(len(head))]
    return [f"| {' | '.join(head)} |", f"|{'|'.join(align)}|"] + [
        f"| {' | '.join(line)} |" for line in lines]


def markdown(methods: list[Method], rows: list[Row], checks, conditions: list[tuple[str, str]],
             heading: str) -> str:
    """The generated docs section: conditions, both tables, targets."""
    out = [START, "", heading, "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in conditions]
    out += ["", "### From the revoke to the kit's first refusal", ""]
    out += md_table(METHOD_HEAD, method_lines(methods))
    out += ["", "### The kit's cached path under load (medians over the rounds)", ""]
    out += md_table(RATIO_HEAD, ratio_lines(rows), numeric_from=1)
    out += ["", "### Targets", "", "| target | measured | met |", "|---|---|---|"]
    out += [f"| {what} | {measured} | {'yes' if ok else '**no**'} |"
            for what, measured, ok in checks]
    problems = [f"- {m.method}: {p}" for m in methods for p in m.problems[:5]]
    if problems:
        out += ["", "Kills not counted:", "", *problems]
    out += ["", END]
    return "\n".join(out)


def write_kills(path, methods: list[Method]) -> None:
    """Every kill as a CSV line, for a look at the whole distribution."""
    lines = ["method,warmup,propagation_ms,revoke_ms,probes,refusal,problem"]
    for m in methods:
        for warmup, k in [(True, k) for k in m.warmup_kills] + [(False, k) for k in m.kills]:
            took = "" if k.propagation_ms is None else f"{k.propagation_ms:.1f}"
            lines.append(f"{m.method},{int(warmup)},{took},{k.revoke_ms:.1f},{k.probes},"
                         f"{k.refusal},{(k.problem() or '').replace(',', ';')}")
    path.write_text("\n".join(lines) + "\n")
