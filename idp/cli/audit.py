"""``flask audit list``: read the audit trail (SPEC §7)."""

import re
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import click

from idp.cli.support import emit
from idp.cli.support import find_connection
from idp.cli.support import find_org
from idp.cli.support import json_option
from idp.cli.support import show
from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.store import audit

#: ``30m``, ``12h``, ``7d``, ``2w``: a duration back from now.
_DURATION = re.compile(r"(\d{1,6})([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Since(click.ParamType):
    """A moment: ISO date or date-time (UTC), or a duration back from now (``7d``)."""

    name = "ISO-DATE|DURATION"

    def convert(self, value, param, ctx):
        """A naive-UTC datetime, as times are stored."""
        if isinstance(value, datetime):
            return value
        text = value.strip()
        duration = _DURATION.fullmatch(text)
        if duration:
            return utcnow() - timedelta(**{_UNITS[duration[2]]: int(duration[1])})
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is neither an ISO date (2026-11-28, 2026-11-28T09:30) nor a "
                      "duration (30m, 12h, 7d, 2w).", param, ctx)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        return moment


@click.group("audit")
def audit_group():
    """Read the audit trail: who changed what, when, from where."""


@audit_group.command("list")
@click.option("--org", "org_id", default=None, help="Only this organization's events (org_…).")
@click.option("--connection", "con_id", default=None,
              help="Only events about this connection (con_…).")
@click.option("--since", type=Since(), default=None,
              help="From this UTC date/time, or this long ago (30m, 12h, 7d, 2w).")
@click.option("--kind", "kinds", multiple=True,
              help="Only this kind of event, e.g. connection_ended (repeatable).")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True,
              help="At most this many, newest first.")
@json_option
def audit_list(org_id, con_id, since, kinds, limit, as_json):
    """Events newest first: time, event, org, actor, subject, address, details."""
    # Filtering on an id that never existed would print nothing, which reads as "no events":
    # an unknown org or connection is an error instead (connections are never deleted).
    if org_id is not None:
        find_org(org_id, "--org")
    if con_id is not None:
        find_connection(con_id, "--connection")
    known = audit.known_kinds(db.session)
    for kind in kinds:
        if kind not in known:
            raise click.BadParameter(f"No event kind {kind!r}; known kinds: {', '.join(known)}.",
                                     param_hint="--kind")
    rows = audit.search(db.session, org=org_id, subject=con_id, since=since, kinds=kinds,
                        limit=limit)
    entries = [audit.fields(row) for row in rows]
    if as_json:
        show(entries)
        return
    for entry in entries:
        entry["detail"] = audit.detail_text(entry["detail"])
    emit(entries, ("time", "event", "org", "actor", "subject", "ip", "detail"), False)


#: Commands this module adds to ``flask``.
COMMANDS = (audit_group,)
