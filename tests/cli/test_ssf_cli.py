"""``flask ssf``: rotate-key, keys and streams (docs/ssf.md)."""

import json

from tests.ssf_support import PUSH
from tests.ssf_support import emit
from tests.ssf_support import new_stream
from tests.ssf_support import receiver


def test_rotate_key_prints_the_new_kid_and_keys_lists_both(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["ssf", "rotate-key"])
    second = runner.invoke(args=["ssf", "rotate-key"])
    assert first.exit_code == second.exit_code == 0
    old, new = first.stdout.split()[0], second.stdout.split()[0]
    assert second.stdout == f"{new} signs from now on\n"
    listed = json.loads(runner.invoke(args=["ssf", "keys", "--json"]).stdout)
    assert [(key["kid"], key["status"]) for key in listed] == [(new, "signing"),
                                                               (old, "retired")]
    assert listed[0]["retired_at"] is None and listed[1]["retired_at"] is not None
    lines = runner.invoke(args=["ssf", "keys"]).stdout.splitlines()
    assert [line.split("\t")[:2] for line in lines] == [[new, "signing"], [old, "retired"]]


def test_streams_lists_each_stream_with_its_lag(app, client, factory):
    rs = receiver(factory)
    polled = new_stream(client, rs)["stream_id"]
    pushed = new_stream(client, rs, delivery={"method": PUSH,
                                              "endpoint_url": "https://rs.example/e"})
    emit(app)
    emit(app)
    client.post(f"/ssf/poll/{polled}", headers=rs["auth"], json={"returnImmediately": True})
    runner = app.test_cli_runner()
    listed = json.loads(runner.invoke(args=["ssf", "streams", "--json"]).stdout)
    assert [(row["stream_id"], row["resource_server"], row["method"], row["status"],
             row["unacknowledged"]) for row in listed] == [
        (polled, rs["client_id"], "poll", "enabled", 2),
        (pushed["stream_id"], rs["client_id"], "push", "enabled", 2)]
    assert listed[0]["oldest_seconds"] >= 0 and listed[0]["last_delivery_at"]
    assert listed[1]["last_delivery_at"] is None and listed[1]["failures"] == 0
    text = runner.invoke(args=["ssf", "streams"]).stdout.splitlines()
    assert text[0].split("\t")[:6] == [polled, rs["client_id"], "poll", "enabled", "2",
                                       f"{listed[0]['oldest_seconds']}s"]


def test_streams_says_nothing_when_there_are_none(app):
    result = app.test_cli_runner().invoke(args=["ssf", "streams"])
    assert result.exit_code == 0 and result.stdout == ""
