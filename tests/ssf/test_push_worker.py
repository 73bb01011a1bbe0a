"""``flask ssf deliver`` as operators run it: a loop, in its own process, stopped by a signal;
on PostgreSQL two of them beside each other, each SET delivered once and in order."""

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict

import pytest
import requests
from sqlalchemy.orm import sessionmaker

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.ssf import push_worker
from tests.conftest import BASE_CONFIG
from tests.conftest import PG_URL
from tests.helpers import ROOT
from tests.ssf.push_receiver import Receiver
from tests.ssf.push_receiver import claims_of
from tests.ssf.push_support import RECEIVER_AUTHORIZATION
from tests.ssf.push_support import Clock
from tests.ssf.push_support import emit
from tests.ssf.push_support import jwks
from tests.ssf.push_support import push_stream

#: Longest any test here waits for SETs to arrive: only a broken worker takes this long.
PATIENCE_SECONDS = 60


@pytest.fixture
def receiver():
    """A receiver that answers 202."""
    receiver = Receiver(authorization=RECEIVER_AUTHORIZATION).start()
    yield receiver
    receiver.stop()


def wait_for(receiver: Receiver, count: int) -> None:
    """Wait until the receiver has accepted ``count`` SETs."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    while len(receiver.accepted()) < count:
        assert time.monotonic() < deadline, f"{len(receiver.accepted())} of {count} arrived"
        time.sleep(0.02)


def worker(database_url: str, log_path, interval: float = 0.02) -> subprocess.Popen:
    """``flask ssf deliver`` in its own process, on the test's database, once it runs."""
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": BASE_CONFIG["SECRET_KEY"],
           "IDP_ISSUER": BASE_CONFIG["IDP_ISSUER"], "IDP_LOG_LEVEL": "DEBUG"}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "ssf", "deliver", "--interval",
             str(interval)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    # Until its loop runs, a signal would end it the default way.
    deadline = time.monotonic() + PATIENCE_SECONDS
    while "ssf push: delivering" not in log_path.read_text():
        assert process.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.02)
    return process


def stop(process: subprocess.Popen, log_path) -> None:
    """SIGTERM, and the worker must end by itself, cleanly."""
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=15) == 0, log_path.read_text()[-3000:]
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def test_deliver_once_prints_how_many_were_accepted(app, receiver):
    push_stream(app, Clock(), receiver.url)
    emit(app, Clock(), 3)
    result = app.test_cli_runner().invoke(args=["ssf", "deliver", "--once"])
    assert result.exit_code == 0, result.output
    assert result.output == "accepted: 3\n"
    assert len(receiver.accepted()) == 3


def test_the_loop_delivers_as_events_come_and_stops_when_told(app, receiver):
    push_stream(app, Clock(), receiver.url)
    stopping = threading.Event()
    with app.app_context():
        # A session factory rather than a session: each pass opens and closes its own.
        sessions = sessionmaker(db.engine)
    with requests.Session() as http:
        loop = threading.Thread(target=push_worker.run_forever, args=(sessions, app.config, utcnow,
                                                               http),
                                kwargs={"interval": 0.02, "stop": stopping})
        loop.start()
        try:
            for round_ in range(3):
                emit(app, Clock(), 2, first=2 * round_)
                wait_for(receiver, 2 * round_ + 2)
        finally:
            stopping.set()
            loop.join(timeout=15)
    assert not loop.is_alive()
    key_set = jwks(app)
    assert [claims_of(token, key_set)["stream_seq"] for token in receiver.accepted()] == [
        1, 2, 3, 4, 5, 6]


def test_the_worker_process_ends_cleanly_on_sigterm(app, receiver, database_url, tmp_path):
    push_stream(app, Clock(), receiver.url)
    log_path = tmp_path / "worker.log"
    process = worker(database_url, log_path)
    try:
        emit(app, Clock(), 3)
        wait_for(receiver, 3)
    finally:
        stop(process, log_path)
    log = log_path.read_text()
    assert "ssf push: stopped" in log
    assert RECEIVER_AUTHORIZATION.split()[1] not in log
    assert all(token.split(".")[1] not in log for token in receiver.accepted())


def served_streams(log_path) -> set[str]:
    """The streams a worker's log says it posted to."""
    return set(re.findall(r"stream (str_\w+) seq \d+ answered 202", log_path.read_text()))


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL.startswith("postgresql"),
                    reason="workers on several hosts share streams through PostgreSQL's row "
                           "locks (SKIP LOCKED); runs in the PostgreSQL pass")
def test_two_workers_deliver_every_set_once_and_in_order(app, database_url, tmp_path):
    # A little slow to answer, so the workers' passes overlap.
    receiver = Receiver(authorization=RECEIVER_AUTHORIZATION, delay=0.003).start()
    streams = {push_stream(app, Clock(), receiver.url, name=f"API {n}") for n in range(3)}
    logs = [tmp_path / f"worker-{n}.log" for n in range(3)]
    running = {0: worker(database_url, logs[0], 0.02), 1: worker(database_url, logs[1], 0.033)}
    rounds, per_round = 12, 4
    try:
        # Changes keep coming while the workers run, in bursts with uneven pauses.
        for round_ in range(rounds):
            emit(app, Clock(), per_round, first=round_ * per_round)
            time.sleep(random.uniform(0.02, 0.2))
            if round_ == rounds // 2:
                # A rolling restart: the first worker leaves (whatever it held is given
                # back), a new one comes; its streams change hands.
                stop(running.pop(0), logs[0])
                running[2] = worker(database_url, logs[2], 0.02)
        wait_for(receiver, len(streams) * rounds * per_round)
        # Anything sent twice would arrive now.
        time.sleep(0.5)
    finally:
        for number, process in running.items():
            stop(process, logs[number])
        receiver.stop()

    key_set = jwks(app)
    by_audience = defaultdict(list)
    for token, status in receiver.received:
        assert status == 202
        claims = claims_of(token, key_set)
        by_audience[claims["aud"]].append(claims["stream_seq"])
    assert receiver.malformed == []
    assert len(by_audience) == len(streams)
    expected = list(range(1, rounds * per_round + 1))
    assert all(seqs == expected for seqs in by_audience.values()), by_audience
    # What the first worker served went on from the others.
    assert served_streams(logs[0]) <= served_streams(logs[1]) | served_streams(logs[2])
