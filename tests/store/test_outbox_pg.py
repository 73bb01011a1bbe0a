"""Two sequencers in two processes on one PostgreSQL while events keep committing
(docs/ssf.md, item 2): every event is numbered exactly once, and every stream's deliveries run
1, 2, 3… in the order of the events' numbers."""

import os
import random
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import select

from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import outbox
from idp.store.models import SsfDelivery
from idp.store.models import SsfEvent
from idp.store.models import SsfStream
from tests.helpers import ROOT
from tests.helpers import TEST_SECRET_KEY
from tests.oauth_helpers import ISSUER
from tests.store.test_outbox_sequence import IDS
from tests.store.test_outbox_sequence import PAUSED
from tests.store.test_outbox_sequence import make_stream

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get("IDP_TEST_DATABASE_URL", "").startswith("postgresql"),
        reason="two sequencing processes need PostgreSQL (IDP_TEST_DATABASE_URL)"),
]

#: One sequencer process: ``sequence`` and commit in a loop, small batches so the two
#: processes interleave, until told to stop and nothing is left; prints how many it numbered.
SEQUENCER = """
import os, sys, time
from sqlalchemy import func, select
from idp import create_app
from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import outbox
from idp.store.models import SsfEvent

url, stop, batch, secret, issuer = sys.argv[1:6]
app = create_app({"TESTING": True, "SECRET_KEY": secret, "IDP_ISSUER": issuer,
                  "SQLALCHEMY_DATABASE_URI": url})
total = 0
with app.app_context():
    print("ready", flush=True)
    while True:
        done = outbox.sequence(db.session, utcnow(), limit=int(batch))
        db.session.commit()
        total += done
        if done:
            continue
        if os.path.exists(stop) and not db.session.scalar(
                select(func.count(SsfEvent.id)).where(SsfEvent.seq.is_(None))):
            break
        db.session.rollback()
        time.sleep(0.002)
print(total)
"""
#: Events each emitting thread commits, and the threads.
PER_THREAD = 120
THREADS = 3
KINDS = ("api_key_revoked", "api_key_disabled", "org_suspended", "disconnected")


def emitter(app, seed: int, made: list, failures: list) -> None:
    """Commit PER_THREAD events in transactions of one to three, some held open a moment so
    they commit after events with higher ids."""
    chance = random.Random(seed)
    try:
        with app.app_context():
            left = PER_THREAD
            while left:
                count = min(left, chance.randint(1, 3))
                rows = [outbox.emit(db.session, kind, utcnow(), issuer=ISSUER, **IDS[kind])
                        for kind in chance.choices(KINDS, k=count)]
                db.session.flush()
                ids = [row.id for row in rows]
                if chance.random() < 0.2:
                    # Long enough for a sequencer to number later commits meanwhile, even on
                    # a busy machine.
                    time.sleep(0.05 + chance.random() / 10)
                db.session.commit()
                made.extend(ids)
                left -= count
    except Exception as error:  # noqa: BLE001  (reported by the test)
        failures.append(repr(error))


def test_two_sequencing_processes_number_every_event_once_and_in_order(
        app, demo, database_url, tmp_path):
    streams = {"all": make_stream(app), "paused types": make_stream(app, types=[PAUSED]),
               "paused stream": make_stream(app, status="paused"),
               "disabled": make_stream(app, status="disabled")}
    stop = tmp_path / "stop"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sequencers = [subprocess.Popen(
        [sys.executable, "-c", SEQUENCER, database_url, str(stop), str(batch), TEST_SECRET_KEY,
         ISSUER], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for batch in (3, 5)]
    made, failures = [], []
    try:
        # Emit only once both sequencers run, so events commit while they number.
        for process in sequencers:
            assert process.stdout.readline().strip() == "ready", process.stderr.read()[-3000:]
        threads = [threading.Thread(target=emitter, args=(app, seed, made, failures))
                   for seed in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        stop.touch()
        outputs = [process.communicate(timeout=120) for process in sequencers]
    finally:
        for process in sequencers:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert failures == []
    for process, (_, err) in zip(sequencers, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    numbered = [int(out.strip()) for out, _ in outputs]
    total = THREADS * PER_THREAD
    print(f"\nsequenced per process: {numbered}")
    assert sum(numbered) == total == len(made)

    with app.app_context():
        events = {row.id: row for row in db.session.scalars(select(SsfEvent))}
        assert sorted(events) == sorted(made)
        assert sorted(event.seq for event in events.values()) == list(range(1, total + 1))
        for name, stream_id in streams.items():
            stream = db.session.get(SsfStream, stream_id)
            rows = db.session.execute(
                select(SsfDelivery.stream_seq, SsfDelivery.event_id)
                .where(SsfDelivery.stream_id == stream_id).order_by(SsfDelivery.stream_seq)
            ).all()
            wanted = sorted((e for e in events.values()
                             if stream.status != "disabled"
                             and e.event_type in stream.events_delivered),
                            key=lambda e: e.seq)
            assert [seq for seq, _ in rows] == list(range(1, len(wanted) + 1)), name
            assert [event_id for _, event_id in rows] == [e.id for e in wanted], name
            assert stream.last_stream_seq == len(wanted), name
        assert len(wanted) == 0 and name == "disabled"
    # The late commits happened: some event got a lower number than one with a lower id.
    by_id = sorted(events.values(), key=lambda e: e.id)
    assert any(a.seq > b.seq for a, b in zip(by_id, by_id[1:], strict=False)), \
        "no event committed late; the test did not exercise the race"
