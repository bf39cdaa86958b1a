"""Terminal progress bars for ``deploy.progress`` notifications (``rich`` or ``tqdm``, both optional)."""

from __future__ import annotations

import sys
from typing import Any, Literal, Protocol

ProgressMode = Literal["auto", "rich", "tqdm", "off"]


class ProgressDisplay(Protocol):
    """Something that shows the progress of one call."""

    def update(self, note: dict[str, Any]) -> None:
        """Shows one ``deploy.progress`` notification."""

    def close(self) -> None:
        """Removes or finishes the display."""


class _RichDisplay:
    def __init__(self, title: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[step]}"),
            TimeElapsedColumn(),
            console=Console(file=sys.stderr),
            transient=False,
        )
        self._task = self._progress.add_task(title, total=100, step="")
        self._progress.start()

    def update(self, note: dict[str, Any]) -> None:
        step = note.get("message") or note.get("step") or ""
        self._progress.update(self._task, completed=float(note.get("progress") or 0), step=str(step))

    def close(self) -> None:
        self._progress.stop()


class _TqdmDisplay:
    def __init__(self, title: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=100, desc=title, file=sys.stderr, unit="%")

    def update(self, note: dict[str, Any]) -> None:
        target = float(note.get("progress") or 0)
        self._bar.set_postfix_str(str(note.get("message") or note.get("step") or ""), refresh=False)
        self._bar.update(max(0.0, target - self._bar.n))

    def close(self) -> None:
        self._bar.close()


def make_display(mode: ProgressMode, title: str) -> ProgressDisplay | None:
    """Returns a progress display for ``mode``, or ``None``.

    ``"auto"`` shows a bar only when stderr is a terminal and ``rich`` or ``tqdm`` is installed;
    ``"rich"``/``"tqdm"`` force that library (ImportError if missing); ``"off"`` shows nothing.
    """
    if mode == "off":
        return None
    if mode == "rich":
        return _RichDisplay(title)
    if mode == "tqdm":
        return _TqdmDisplay(title)
    try:
        if not sys.stderr.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    for factory in (_RichDisplay, _TqdmDisplay):
        try:
            return factory(title)
        except ImportError:
            continue
    return None
