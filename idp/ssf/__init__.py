"""The Shared Signals transmitter (docs/ssf.md): signing keys, SETs, streams, poll and push.

A layer above the store: it reads and writes rows through ``idp.store`` and never commits;
the web and cli layers that call it do (idp/web/unit_of_work.py).
"""
