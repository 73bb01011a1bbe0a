"""The long poll's loop (idp/ssf/poll.py, ``wait``), on a fake clock: when it looks, when it
only asks whether a look may find something, and when it gives up."""

from idp.ssf.poll import LOOK_INTERVAL
from idp.ssf.poll import PollAnswer
from idp.ssf.poll import PollRequest
from idp.ssf.poll import parse
from idp.ssf.poll import wait


class Rig:
    """A fake clock and sleep, and looks that find SETs only after ``ready_at`` seconds."""

    def __init__(self, ready_at: float | None = None):
        """Nothing is ready unless ``ready_at`` says when."""
        self.now = 0.0
        self.ready_at = ready_at
        self.looks: list[tuple[float, bool]] = []
        self.asked = 0

    def clock(self) -> float:
        """The fake monotonic clock."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Sleeping moves the clock and nothing else."""
        self.now += seconds

    def ready(self) -> bool:
        """Whether a SET is waiting now."""
        return self.ready_at is not None and self.now >= self.ready_at

    def look(self, first: bool) -> PollAnswer:
        """A look (a write transaction in the real poll), noted with its time."""
        self.looks.append((self.now, first))
        return PollAnswer({"jti": "set"} if self.ready() else {})

    def due(self) -> bool:
        """The cheap read between looks, counted."""
        self.asked += 1
        return self.ready()

    def wait(self, request: PollRequest, seconds: float = 10) -> PollAnswer:
        """Run the poll's loop on this rig."""
        return wait(request, self.look, self.due, seconds, clock=self.clock, sleep=self.sleep)


def test_sets_found_at_once_are_answered_at_once():
    rig = Rig(ready_at=0)
    assert rig.wait(PollRequest()).sets == {"jti": "set"}
    assert rig.looks == [(0, True)] and rig.asked == 0


def test_return_immediately_never_waits():
    rig = Rig()
    assert rig.wait(parse({"returnImmediately": True})).sets == {}
    assert rig.looks == [(0, True)] and rig.now == 0


def test_a_wait_looks_again_only_when_something_may_be_due():
    rig = Rig(ready_at=1.0)
    answer = rig.wait(PollRequest())
    assert answer.sets == {"jti": "set"}
    # One look at the start and one when the cheap read said so, none in between.
    assert [first for _, first in rig.looks] == [True, False]
    assert 1.0 <= rig.looks[-1][0] < 1.0 + LOOK_INTERVAL + 1e-9
    assert rig.asked >= 1.0 / LOOK_INTERVAL - 1


def test_a_wait_gives_up_when_its_time_is_up():
    rig = Rig()
    answer = rig.wait(PollRequest(), seconds=0.5)
    assert answer.sets == {} and answer.more_available is False
    assert rig.now == 0.5 and rig.looks == [(0, True)]


def test_a_final_answer_ends_the_wait():
    rig = Rig()
    rig.look = lambda first: PollAnswer({}, final=True)
    rig.wait(PollRequest())
    assert rig.now == 0


def test_max_events_is_capped_and_defaults_to_the_cap():
    assert parse({}).max_events == parse({"maxEvents": 10_000}).max_events == 100
    assert parse({"maxEvents": 3}).max_events == 3
