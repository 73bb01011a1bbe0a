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


def test_an_operator_pauses_and_disables_a_stream_and_the_receiver_is_told(app, client, factory):
    rs = receiver(factory)
    stream = new_stream(client, rs)["stream_id"]
    runner = app.test_cli_runner()
    paused = runner.invoke(args=["ssf", "set-stream-status", stream, "paused",
                                 "--reason", "receiver gone"])
    assert paused.exit_code == 0 and paused.stdout == f"{stream} paused\n"
    status = client.get(f"/ssf/status?stream_id={stream}", headers=rs["auth"]).get_json()
    assert status["status"] == "paused" and status["reason"] == "receiver gone"
    assert runner.invoke(args=["ssf", "set-stream-status", stream, "enabled"]).exit_code == 0
    answer = client.post(f"/ssf/poll/{stream}", headers=rs["auth"],
                         json={"returnImmediately": True}).get_json()
    # The pause and the enable, each told on the stream (the pause was held while paused).
    assert len(answer["sets"]) == 2


def test_an_operator_deletes_a_stream_and_its_queue(app, client, factory):
    rs = receiver(factory)
    stream = new_stream(client, rs)["stream_id"]
    emit(app)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["ssf", "delete-stream", stream])
    assert result.exit_code == 0 and result.stdout == f"{stream} deleted\n"
    assert client.get(f"/ssf/streams?stream_id={stream}", headers=rs["auth"]).status_code == 404
    assert json.loads(runner.invoke(args=["ssf", "streams", "--json"]).stdout) == []


def test_stream_commands_refuse_an_unknown_stream_or_status(app):
    runner = app.test_cli_runner()
    for args in (["ssf", "delete-stream", "str_nope"],
                 ["ssf", "set-stream-status", "str_nope", "paused"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 2 and "No stream 'str_nope'" in result.output
    wrong = runner.invoke(args=["ssf", "set-stream-status", "str_nope", "asleep"])
    assert wrong.exit_code == 2 and "asleep" in wrong.output
