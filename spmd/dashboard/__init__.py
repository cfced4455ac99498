"""See a run: the self-contained HTML run report (``html_report``), the JSON views of jobs
(``views``) and ``spmd dashboard``'s local web server (``server``).

Only the standard library: the extra ``spmd[dashboard]`` adds nothing to install. The core
imports this package only when a report is drawn as HTML or the dashboard runs.
"""
