"""How a :class:`~flowestate_kit.ssf.Receiver` runs: started once, stepped, closed, forked.

The receiver runs in a daemon thread of the process that judges bearers (or is stepped by its
owner), retries failures with a bounded exponential backoff, deletes the stream it created
when it is closed or the interpreter exits, and starts afresh in a forked child.
"""

import atexit
import logging
import random
import threading

import requests

from flowestate_kit.ssf_transmitter import StreamError

# One logger for the whole receiver, as before it was split: logging settings name it.
log = logging.getLogger("flowestate_kit.ssf")


class Running:
    """Start, step and close the receiver; it works on the state ``Receiver`` keeps."""

    def start(self) -> None:
        """Start receiving in this process (once; the thread is a daemon)."""
        with self._start_lock:
            if self.started:
                return
            self.started = True
            if self._closed:
                return
            self._set_unhealthy("starting")
            if self.threaded:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="flowestate-ssf-receiver")
                self._thread.start()
            atexit.register(self._close_at_exit)

    def close(self, timeout: float | None = None) -> bool:
        """Delete the stream if this receiver created it and stop the thread (waiting up to
        ``timeout`` seconds, by default one long poll); whether the thread has ended.

        The stream goes first: the transmitter answers a poll of a deleted stream at once, so
        the thread is not left waiting out its long poll.
        """
        self._closed = True
        self.started = True  # a judge must not start it again
        self._stop.set()
        self._wake.set()
        with self._lock:
            stream_id = self.stream_id if self._owned else None
            if stream_id is not None:
                self.stream_id, self._owned = None, False
        if stream_id is not None and self.transmitter.metadata is not None:
            try:
                self.transmitter.streams("DELETE", params={"stream_id": stream_id},
                                         expect=(200, 202, 204))
                log.info("revocation stream %s deleted", stream_id)
            except StreamError as error:
                log.info("revocation stream %s not deleted: %s", stream_id, error)
        ended = True
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.poll_timeout + self.timeout if timeout is None else timeout)
            ended = not thread.is_alive()
        self._set_unhealthy("receiver closed", fault=False)
        atexit.unregister(self._close_at_exit)
        if self.transmitter.own_session:
            self.transmitter.session.close()
        return ended

    def _close_at_exit(self) -> None:
        """At interpreter exit: delete our stream without waiting out a long poll."""
        self.close(timeout=1)

    def _run(self) -> None:
        """The thread: step until closed, waiting between steps as each says."""
        while not self._stop.is_set():
            self._wake.clear()  # before the step: a wake during it must cut the next wait
            try:
                delay = self.step()
            except Exception:  # the thread must not die: unhealthy, and try again later
                log.exception("revocation stream receiver failed")
                self._failures += 1
                self._set_unhealthy("receiver error")
                delay = self._backoff()
            if delay > 0:
                self._wake.wait(delay)

    def step(self) -> float:
        """One round: set the stream up if needed, send a heartbeat when due, poll once (a
        poll stream); how many seconds to wait before the next round."""
        try:
            self._ensure_stream()
            self._heartbeat()
            if self.delivery == "poll":
                self._poll()
                delay = 0.0
            else:
                delay = self._until_heartbeat()
        except StreamError as error:
            if self._stop.is_set():
                return 0.0  # closing: the stream was deleted under the poll, as intended
            self._failures += 1
            # The judge logs the turn to unhealthy; repeats of the same failure stay quiet.
            (log.info if self._failures == 1 else log.debug)(
                "revocation stream: %s", error)
            self._set_unhealthy(str(error))
            return self._backoff()
        self._failures = 0
        return delay

    def _backoff(self) -> float:
        """Exponential in the failures in a row, at most ``backoff_max``, with jitter so
        that many processes do not return to a recovering IdP at the same instant."""
        base = min(self.backoff_max, 2.0 ** min(max(self._failures, 1) - 1, 16))
        return base * (0.5 + random.random() / 2)


def forked(reference) -> None:
    """In a forked child: the parent's thread, locks, connections and own stream are the
    parent's; this process starts afresh (a stream of its own) on its first bearer."""
    receiver = reference()
    if receiver is None:
        return
    owned = receiver._owned
    receiver._reset_state()
    receiver._start_lock = threading.Lock()
    receiver._stop = threading.Event()
    receiver._wake = threading.Event()
    receiver._thread = None
    receiver.started = receiver._closed
    # Found again, with locks of this process.
    receiver.transmitter.metadata = receiver.verifier = None
    if owned:
        receiver.stream_id = None
    if receiver.transmitter.own_session:
        receiver.transmitter.session = requests.Session()
