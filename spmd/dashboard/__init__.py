"""See a run: the JSON views of jobs (``views``) and ``spmd dashboard``'s local web server
(``server``), drawn with ``spmd.html_report`` (which Report.to_html also uses).

Only the standard library: the extra ``spmd[dashboard]`` adds nothing to install. The core
imports this package only when a report is drawn as HTML or the dashboard runs.
"""
