"""wrk's plan and result lines, and that walk.lua counts every wrong answer as an error."""

import shutil
import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pytest

from bench import load
from bench.load import Plan

RESULT = ("Running 1s test\nBENCH requests=120 duration_us=2000000 p50_us=1500 p99_us=4000 "
          "max_us=9000 connect=1 read=2 write=0 status=3 timeout=4 bad=5 exhausted=0\n"
          "BENCH-FIRST-BAD 401 {\"error\": 1}\n")


def test_parse_reads_figures_and_first_wrong_answer():
    """Rates, latencies in ms, socket errors and wrong answers come back from the line."""
    outcome = load.parse(RESULT)
    assert outcome.rate == 60
    assert (outcome.p50_ms, outcome.p99_ms, outcome.max_ms) == (1.5, 4.0, 9.0)
    assert outcome.socket_errors == 1 + 2 + 4
    # Status errors are wrong answers already; they are not counted twice.
    assert outcome.errors == 7 + 5
    assert outcome.first_wrong == '401 {"error": 1}'


def test_parse_refuses_output_without_a_result_line():
    """A wrk that never reached done() is a failure, not zero requests."""
    with pytest.raises(RuntimeError, match="no result line"):
        load.parse("Running 1s test\n")


def test_an_exhausted_pool_is_an_error():
    """Running out of single-use credentials invalidates the row."""
    outcome = load.parse(RESULT.replace("bad=5 exhausted=0", "bad=0 exhausted=1")
                         .replace("connect=1 read=2", "connect=0 read=0")
                         .replace("timeout=4", "timeout=0"))
    assert outcome.errors == 1


def test_lua_strings_are_verbatim_and_refuse_their_own_terminator():
    """Long brackets keep quotes, percent signs and backslashes as they are."""
    assert load.lua_string('"a":%s*\\') == '[====["a":%s*\\]====]'
    with pytest.raises(AssertionError):
        load.lua_string("x]====]y")


class Alternating(BaseHTTPRequestHandler):
    """Answers right, then wrong (a 200 without the field), then 401, in turn."""

    protocol_version = "HTTP/1.1"
    counter = 0
    lock = threading.Lock()

    def do_GET(self):
        """One answer of the cycle."""
        with Alternating.lock:
            Alternating.counter += 1
            turn = Alternating.counter % 3
        status, body = [(200, b'{"ok": true}'), (200, b'{"nope": 1}'), (401, b"{}")][turn]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        """Quiet."""


class QuietServer(ThreadingHTTPServer):
    """wrk drops its connections when the time is up; that is not worth a traceback."""

    def handle_error(self, request, client_address):
        """Ignore a client that went away."""


@pytest.fixture
def alternating_server():
    """A loopback server answering right and wrong in turn."""
    server = QuietServer(("127.0.0.1", 0), Alternating)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


@pytest.mark.live
@needs_wrk
def test_walk_counts_wrong_bodies_and_statuses(alternating_server, tmp_path):
    """About two answers in three are wrong, and wrk's figures say so."""
    values = tmp_path / "values.txt"
    values.write_text("a\nb\nc\n")
    plan = tmp_path / "plan.lua"
    load.write_plan(plan, Plan("GET", "/x", {"Authorization": "Bearer {value}"}, None,
                               ('"ok":%s*true',), cycle=True), values)
    outcome = load.run(alternating_server, plan, 1, connections=2, threads=1)
    assert outcome.requests > 30
    assert outcome.wrong >= outcome.requests // 2
    assert outcome.first_wrong.startswith(("200", "401"))


@pytest.mark.live
@needs_wrk
def test_walk_never_reuses_a_single_use_value(alternating_server, tmp_path):
    """With cycle off, the list running out stops the thread and flags the run."""
    values = tmp_path / "values.txt"
    values.write_text("only\n")
    plan = tmp_path / "plan.lua"
    load.write_plan(plan, Plan("GET", "/x", {}, None, ("",), cycle=False), values)
    outcome = load.run(alternating_server, plan, 1, connections=1, threads=1)
    assert outcome.exhausted
    assert outcome.errors >= 1
