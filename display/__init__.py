"""What the CLI and the UI both show: one definition of each, owned by neither.

Queue health and status words and the queue's JSON shape (``queues``), an agent's status
(``agents``), a schedule in words (``schedules``), times for people (``time_text``), how
runs are shown (``runs``), the queue gauges as metrics (``queue_metrics``) and the small
text helpers both print with (``text``). ``runq ... -o json`` and the UI's ``/api/``
answer with the same shapes because both build them here. It imports only the broker.
"""
