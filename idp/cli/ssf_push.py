"""``flask ssf deliver``: the RFC 8935 push worker (docs/ssf.md, "The path of one event").

Run one or more anywhere the database is reachable: each leases one due stream at a time,
so workers on several hosts share the streams, and one stream's SETs go out from one worker
at a time, in order. SIGTERM or SIGINT ends a worker after the request in flight.
"""

import click
import requests
from flask import current_app

from idp.cli.ssf import ssf_group
from idp.core.clock import utcnow
from idp.infra.extensions import db
from idp.ssf import push
from idp.ssf import push_worker


@ssf_group.command("deliver")
@click.option("--once", is_flag=True,
              help="Serve every due push stream once, print how many SETs were accepted, exit.")
@click.option("--interval", type=click.FloatRange(0.01, 60), default=push_worker.IDLE_SECONDS,
              show_default=True, help="Seconds to wait after a pass that delivered nothing.")
def deliver_command(once, interval):
    """Push SETs to the receivers of push streams, in order, until SIGTERM or SIGINT."""
    with requests.Session() as http:
        if once:
            count = push.deliver_once(db.session, current_app.config, utcnow, http)
            click.echo(f"accepted: {count}")
            return
        push_worker.run_forever(db.session, current_app.config, utcnow, http, interval=interval)


#: Nothing at the top level: ``deliver`` joins the ``flask ssf`` group above.
COMMANDS = ()
