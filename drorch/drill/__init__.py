"""Scheduled DR drills: a drill is a runbook run (runbooks/drills/KIND.yaml) with
preflight guards, measurements kept in a history, reports and metrics.

- schedule.py: when each drill is due (cron in a time zone + deterministic jitter)
- scheduler.py: the daemon that starts due drills (missed runs, busy sites)
- preflight.py: the guards a drill must pass before it starts
- history.py: the SQLite history under the state directory
- runner.py: one drill: preflight, runbook run, measurements, history row
- trend.py, report_html.py, metrics.py: what the history shows
"""
