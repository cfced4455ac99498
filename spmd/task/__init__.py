"""What runs inside a task: the worker (``python -m spmd.task.worker``), the warm container's
server (``python -m spmd.task.serve``) and the messages between that server and its runner
(``wire``)."""
