"""Drive one row of load with wrk and read back what happened."""

import re
import signal
import subprocess
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from bench.settings import ROOT

WALK = ROOT / "bench" / "lua" / "walk.lua"
#: What the proxy in front of production adds to every request (IDP_PROXY_HOPS=1).
PROXY_HEADERS = {"X-Forwarded-For": "127.0.0.9", "X-Forwarded-Proto": "https"}
RESULT_LINE = re.compile(r"^BENCH (.*)$", re.MULTILINE)
FIRST_BAD_LINE = re.compile(r"^BENCH-FIRST-BAD (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Plan:
    """What one row sends and what a right answer looks like."""

    method: str
    path: str
    #: Header templates; ``{value}`` is replaced by the credential of each request.
    headers: dict[str, str]
    body: str | None
    #: Lua patterns every right body contains.
    expect: tuple[str, ...]
    #: Read rows cycle through their sample; single-use rows must never repeat a value.
    cycle: bool
    status: int = 200


@dataclass
class Outcome:
    """wrk's figures for one row of one round, and the wrong answers it saw."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    wrong: int
    exhausted: bool
    first_wrong: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        """Every request that did not get the right answer (a run out pool counts too)."""
        return self.socket_errors + self.wrong + (1 if self.exhausted else 0)


def lua_string(text: str) -> str:
    """A Lua long-bracket literal, which takes its content verbatim."""
    level = "=" * 4
    assert f"]{level}]" not in text
    return f"[{level}[{text}]{level}]"


def write_plan(path: Path, plan: Plan, values_path: Path | None) -> None:
    """Write the Lua table walk.lua loads with dofile()."""
    headers = {**PROXY_HEADERS, **plan.headers}
    lines = ["return {"]
    lines.append(f"  method = {lua_string(plan.method)},")
    lines.append(f"  path = {lua_string(plan.path)},")
    lines.append("  headers = {")
    lines += [f"    [ {lua_string(k)} ] = {lua_string(v)}," for k, v in headers.items()]
    lines.append("  },")
    if plan.body is not None:
        lines.append(f"  body = {lua_string(plan.body)},")
    lines.append("  expect = {" + ", ".join(lua_string(e) for e in plan.expect) + "},")
    lines.append(f"  cycle = {'true' if plan.cycle else 'false'},")
    lines.append(f"  status = {plan.status},")
    if values_path is not None:
        lines.append(f"  values = {lua_string(str(values_path))},")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")


def parse(output: str) -> Outcome:
    """Read the line walk.lua's done() prints."""
    match = RESULT_LINE.search(output)
    if match is None:
        raise RuntimeError(f"wrk printed no result line:\n{output[-2000:]}")
    figures = {k: int(v) for k, v in (pair.split("=") for pair in match.group(1).split())}
    bad = FIRST_BAD_LINE.search(output)
    return Outcome(
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        max_ms=figures["max_us"] / 1000,
        socket_errors=sum(figures[k] for k in ("connect", "read", "write", "timeout")),
        wrong=figures["bad"],
        exhausted=bool(figures["exhausted"]),
        first_wrong=bad.group(1) if bad else "",
    )


def command(url: str, plan_path: Path, seconds: int, connections: int, threads: int) -> list:
    """wrk's command line for one row."""
    return ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
            "--timeout", "5s", "-s", str(WALK), url, "--", str(plan_path)]


def run(url: str, plan_path: Path, seconds: int, connections: int, threads: int) -> Outcome:
    """Run wrk for ``seconds`` against ``url`` with a written plan."""
    argv = command(url, plan_path, seconds, connections, threads)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
    return parse(done.stdout)


#: Longest a background load may run; it is meant to be stopped long before.
BACKGROUND_LIMIT = 3600


def start(url: str, plan_path: Path, connections: int, threads: int) -> subprocess.Popen:
    """Start wrk in the background, for load that lasts as long as something else does."""
    argv = command(url, plan_path, BACKGROUND_LIMIT, connections, threads)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen) -> Outcome:
    """Stop a background wrk and read its figures.

    wrk takes SIGINT as the end of its run: it stops sending, reports and calls walk.lua's
    done(), with the time it actually ran as the duration.
    """
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err[-2000:]}")
    return parse(out)
