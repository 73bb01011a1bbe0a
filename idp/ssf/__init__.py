"""The Shared Signals transmitter (docs/ssf.md): signing keys, SETs, streams, poll and push.

A layer above the store: it reads and writes rows through ``idp.store``. Requests commit in
the web layer's unit of work (idp/web/unit_of_work.py) and operator commands in idp/cli; only
the push worker, a process of its own, commits its own short transactions (idp/ssf/push.py and
the push_* modules beside it).
"""
