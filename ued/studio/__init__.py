"""ued studio: a local web app to watch runs, draw levels, try the student on them and send
them into training (``python scripts/studio.py RUNS``). Needs the ``studio`` extra."""
