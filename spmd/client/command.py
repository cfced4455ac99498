"""Command: a command line mapped over items, in the user's own image.

    cmd = spmd.Command(["dwi2tensor", "{dwi}", "-fslgrad", "{bvecs}", "{bvals}", "tensor.mif"],
                       image="myorg/mrtrix:3.0.4", outputs=["tensor.mif"])
    job = spmd.Knot(cmd, vcpus=2, memory="4GiB").map(
        [{"dwi": spmd.File(d), "bvecs": spmd.File(v), "bvals": spmd.File(b)} for d, v, b in subjects])
    job.results()  # CommandResult(exit_code=0, log=..., outputs={"tensor.mif": "<url>"}) per item

A Command is a picklable callable, so a Knot runs it like any function and it gets the same
resources, retries, timeout, cancel, logs and attach. One item fills one command line:
``{name}`` placeholders from a dict item (or keyword arguments), ``{0}``, ``{1}``... from
positional arguments (a tuple with ``starmap=True``). Data references among the values are
staged first, so placeholders receive local paths. The command runs in the item's
``spmd.outputs()`` folder: what it writes there (relative paths) is stored with the result.
Its output is echoed to the task log; a non-zero exit raises ``CommandFailed`` with the tail.
"""
from __future__ import annotations

import collections
import os
import string
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .. import data
from ..errors import CommandFailed, CommandSpecError

LOG_TAIL_LINES = 40
RESULT_LOG_LINES = 200


@dataclass(frozen=True)
class CommandResult:
    """One item's run: exit code, the last lines of its output, its declared outputs as URLs."""

    argv: list[str]
    exit_code: int
    log: str
    outputs: dict[str, str] = field(default_factory=dict)


def _fields(text: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise CommandSpecError(f"bad placeholder in {text!r}: {exc}; write literal braces "
                               "as {{ and }}") from exc


class Command:
    """A command line with ``{placeholders}``, run once per item (see the module docstring).

    ``image`` is any image with the tool (pulled or built locally); spmd adds its runtime on
    top. Without ``image`` the command runs in the Knot's usual task image (or, on a backend
    without images, in the task's own environment). ``outputs`` are paths relative to the
    working folder (placeholders allowed) that must exist after a successful run.
    """

    def __init__(self, argv: Sequence[str], *, image: str | None = None,
                 outputs: Sequence[str] = (), env: Mapping[str, str] | None = None):
        if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
            raise CommandSpecError(
                f"Command needs argv as a non-empty list of strings, like ['dwi2tensor', '{{dwi}}', "
                f"'tensor.mif'], got {argv!r:.120}")
        if isinstance(outputs, str):
            outputs = [outputs]
        for out in outputs:
            if not isinstance(out, str) or not out or out.startswith("/") \
                    or ".." in out.replace("\\", "/").split("/"):
                raise CommandSpecError(f"Command output {out!r} must be a relative path inside the "
                                       "working folder, like 'tensor.mif' or 'fa/{subject}.nii.gz'")
        if image is not None and (not isinstance(image, str) or not image.strip()):
            raise CommandSpecError(f"Command image={image!r} must be an image reference, "
                                   "like 'myorg/tool:1.0' or a locally built tag")
        env = dict(env or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise CommandSpecError(f"Command env must map strings to strings, got {env!r:.120}")
        self.argv = list(argv)
        self.image = image
        self.outputs = list(outputs)
        self.env = env
        self._names = [n for text in self.argv + self.outputs for n in _fields(text)]
        self.__name__ = os.path.basename(self.argv[0]) or "command"

    def __repr__(self) -> str:
        image = f", image={self.image!r}" if self.image else ""
        return f"spmd.Command({self.argv!r}{image}, outputs={self.outputs!r})"

    @staticmethod
    def _values(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if len(args) == 1 and not kwargs and isinstance(args[0], dict):
            return (), dict(args[0])
        return tuple(args), dict(kwargs)

    def _fill(self, texts: list[str], args: tuple, kwargs: dict) -> list[str]:
        positional, named = self._values(args, kwargs)
        return [text.format(*positional, **named) for text in texts]

    def check_call(self, index: int, args: tuple, kwargs: dict) -> None:
        """On the client, before anything is submitted: the item fills every placeholder."""
        positional, named = self._values(args, kwargs)
        for name in self._names:
            if name.isdigit() or name == "":
                if name == "" or int(name) >= len(positional):
                    raise CommandSpecError(
                        f"item {index} has {len(positional)} positional value(s), but the command "
                        f"uses {{{name}}}; give one value per placeholder (starmap=True for tuples)"
                        " and number the placeholders {0}, {1}, ...")
            else:
                key = name.split(".")[0].split("[")[0]
                if key not in named:
                    raise CommandSpecError(
                        f"item {index} has no value for placeholder {{{key}}} (it has "
                        f"{sorted(named) or 'no named values'}); pass a dict with that key")

    def __call__(self, *args: Any, **kwargs: Any) -> CommandResult:
        argv = self._fill(self.argv, args, kwargs)
        outputs = self._fill(self.outputs, args, kwargs)
        workdir = data.outputs()
        print("$ " + " ".join(argv), flush=True)
        tail: collections.deque[str] = collections.deque(maxlen=RESULT_LOG_LINES)
        try:
            process = subprocess.Popen(argv, cwd=workdir, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        except OSError as exc:
            raise CommandFailed(f"could not start: {exc}", argv=argv, exit_code=127) from None
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace")
            sys.stdout.write(line)
            tail.append(line.rstrip("\n"))
        code = process.wait()
        sys.stdout.flush()
        last = "\n".join(list(tail)[-LOG_TAIL_LINES:])
        if code != 0:
            raise CommandFailed(f"exited with status {code}", argv=argv, exit_code=code,
                                log_tail=last)
        missing = [out for out in outputs if not (workdir / out).exists()]
        if missing:
            raise CommandFailed(f"exited with status 0 but did not write the declared output(s) "
                                f"{missing}", argv=argv, exit_code=0, log_tail=last)
        item = data.current()
        urls = {out: item.url(out) if item else str(workdir / out) for out in outputs}
        return CommandResult(argv=argv, exit_code=code, log="\n".join(tail), outputs=urls)
