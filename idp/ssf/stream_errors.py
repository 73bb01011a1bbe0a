"""How the stream-management endpoints refuse a request (SSF 1.0 §8.1), for every stream module.

One family of errors, so the web layer answers each with its status and ``error`` code and
the operators' commands show the sentence, whichever rule refused.
"""


class SsfError(Exception):
    """A request the transmitter refuses: ``status`` and ``error`` say how, the message why."""

    #: HTTP status of the answer.
    status = 400
    #: The ``error`` code of the JSON body.
    error = "invalid_request"

    @property
    def description(self) -> str:
        """The sentence a receiver's developer reads."""
        return str(self)


class NotFound(SsfError):
    """No stream of this resource server has this id (SSF 1.0 §8.1.1.2: 404)."""

    status = 404
    error = "not_found"


class TooManyStreams(SsfError):
    """The resource server already holds IDP_SSF_MAX_STREAMS streams (SSF 1.0 §8.1.1.1: 409)."""

    status = 409
