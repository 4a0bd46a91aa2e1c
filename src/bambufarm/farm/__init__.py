"""The farm: the stored printers brought to life in the fleet, and what serves them.

`Farm` (service.py) loads the printers from the database into a `Fleet`, keeps the two in step
when printers are added, edited or removed, audits every control action, and owns the pieces
around the fleet: connection tests before saving (probe.py), the event history writer
(history.py), SD-card files over FTPS (files.py) and the fleet's Prometheus metrics
(metrics.py). It knows nothing of HTTP; the API and the CLI call it.
"""
