"""Medians, ratios and the target checks, on made-up outcomes (no load, no timing)."""

from bench import report
from bench.harness import DataSet
from bench.harness import Measurement
from bench.harness import Run
from bench.load import Outcome
from bench.scenarios import Row
from bench.scenarios import ceiling_row
from bench.settings import QUICK


def outcome(rate: float, p50: float = 10.0, p99: float = 20.0, wrong: int = 0) -> Outcome:
    """One round of one row at ``rate`` requests per second."""
    return Outcome(requests=int(rate * 10), seconds=10.0, p50_ms=p50, p99_ms=p99, max_ms=p99,
                   socket_errors=0, wrong=wrong, exhausted=False,
                   first_wrong="401 {}" if wrong else "")


class FakeServer:
    """Only the name the memory table uses."""

    def __init__(self, name: str):
        self.name = name


def make_run(rates: dict, rss: float = 90.0, wrong: int = 0) -> Run:
    """A finished run of the quick profile with the given median rates per (size, row)."""
    run = Run(QUICK)
    ceiling = Measurement(None, ceiling_row(), FakeServer("ceiling"))
    ceiling.rounds = [outcome(900), outcome(1000), outcome(1100)]
    run.measurements = [ceiling]
    for size in QUICK.sizes:
        data_set = DataSet("sqlite", size, f"sqlite:///{size}")
        data_set.idp = FakeServer(f"idp-{data_set.name}")
        run.data_sets.append(data_set)
        for key in ("floor", "introspect_key", "me_key", "refresh"):
            m = Measurement(data_set, Row(key, "idp", ceiling_row().plan), data_set.idp)
            m.rounds = [outcome(rates[size, key], wrong=wrong if key == "refresh" else 0)]
            run.measurements.append(m)
        run.memory[data_set.idp.name] = [{"pid": 1, "rss_mib": rss, "peak_mib": rss}]
    return run


RATES = {(1000, "floor"): 800, (1000, "introspect_key"): 650, (1000, "me_key"): 600,
         (1000, "refresh"): 250, (10000, "floor"): 790, (10000, "introspect_key"): 640,
         (10000, "me_key"): 500, (10000, "refresh"): 150}


def checks_by_name(run: Run) -> dict:
    """Target name -> (measured, met)."""
    checks = report.targets(run, report.summarize(run))
    return {what: (measured, ok) for what, measured, ok in checks}


def test_ratios_use_the_median_ceiling_and_the_data_set_floor():
    """1000 req/s is the median ceiling; each row is also compared with its own floor."""
    lines = report.summarize(make_run(RATES))
    intro = next(li for li in lines
                 if li.m.row.key == "introspect_key" and li.m.data_set.size == 1000)
    assert intro.ceiling == 0.65
    assert round(intro.floor, 4) == round(650 / 800, 4)


def test_each_target_is_judged_against_its_threshold():
    """Pass and fail on both sides of 0.70, 0.25 and the 0.90 size rule."""
    rates = {**RATES, (1000, "introspect_key"): 700}
    checks = checks_by_name(make_run(rates))
    assert checks["sqlite-1k introspection, API key >= 0.70 x ceiling"] == ("0.70", True)
    assert checks["sqlite-10k /api/v1/me, API key >= 0.70 x ceiling"] == ("0.50", False)
    assert checks["sqlite-1k refresh grant with rotation >= 0.25 x ceiling"] == ("0.25", True)
    assert checks["sqlite-10k refresh grant with rotation >= 0.25 x ceiling"] == ("0.15", False)
    kept = "sqlite {}: sqlite-10k keeps >= 0.90 of sqlite-1k"
    assert checks[kept.format("introspection, API key")] == ("0.91", True)
    assert checks[kept.format("refresh grant with rotation")] == ("0.60", False)


def test_peer_targets_compare_the_smallest_sqlite_set_with_each_peer():
    """Introspection >= 3 x DOT and >= 0.75 x oidc-provider; refresh >= 5 x DOT."""
    run = make_run(RATES)
    peers = DataSet("sqlite", 1000, "peer")
    for key, rate in (("introspect_token", 600), ("dot_introspect", 200),
                      ("oidc_introspect", 900), ("dot_refresh", 60)):
        data_set = run.data_sets[0] if key == "introspect_token" else peers
        m = Measurement(data_set, Row(key, "idp" if key == "introspect_token" else "peer",
                                      ceiling_row().plan), FakeServer(key))
        m.rounds = [outcome(rate)]
        run.measurements.append(m)
    checks = checks_by_name(run)
    dot = "sqlite-1k introspection, access token >= 3 x django-oauth-toolkit introspection"
    assert checks[dot] == ("3.00", True)
    oidc = "sqlite-1k introspection, access token >= 0.75 x oidc-provider introspection"
    assert checks[oidc] == ("0.67", False)
    refresh = "sqlite-1k refresh grant with rotation >= 5 x django-oauth-toolkit refresh, rotation"
    assert checks[refresh] == ("4.17", False)


def test_memory_errors_and_tail_targets():
    """RSS over 150 MiB, any wrong answer, and p99 over 4 x p50 each fail their target."""
    good = checks_by_name(make_run(RATES))
    assert good["IdP worker RSS <= 150 MB after the 10k run"] == ("90 MiB", True)
    assert good["0 errors (wrong answers, socket errors, pool run out)"] == ("0", True)
    assert good["p99 <= 4 x p50 on every row"][1]
    bad = checks_by_name(make_run(RATES, rss=151, wrong=2))
    assert bad["IdP worker RSS <= 150 MB after the 10k run"] == ("151 MiB", False)
    assert bad["0 errors (wrong answers, socket errors, pool run out)"] == ("4", False)
    assert report.wrong_answers(report.summarize(make_run(RATES, wrong=1)))[0][1] == "401 {}"


def test_doc_section_is_replaced_between_markers(tmp_path):
    """Text around the generated section survives a rewrite."""
    page = tmp_path / "PERFORMANCE.md"
    page.write_text(f"intro\n{report.START}\nold\n{report.END}\noutro\n")
    report.write_doc(page, f"{report.START}\nnew\n{report.END}")
    assert page.read_text() == f"intro\n{report.START}\nnew\n{report.END}\noutro\n"
