"""Snakemake logger plugin ``deepfake-lth``: the workflow's console
(:mod:`deepfake_lth.workflow.console`): a short line per job, a progress line per running
training job, one line on Ctrl-C. profiles/default turns it on (``logger: [deepfake-lth]``);
elsewhere ``snakemake --logger deepfake-lth``. A dry run prints Snakemake's own plan."""

from __future__ import annotations

import sys
import threading
from logging import LogRecord

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.settings import LogHandlerSettingsBase

# deepfake_lth is imported only when the handler is made: Snakemake imports every installed
# logger plugin at start-up, and a top-level import would bind deepfake_lth to the installed
# copy before the Snakefile puts its own checkout's src/ first (the jobs' code inputs are that
# checkout's modules, deepfake_lth.workflow.code)

POLL_SECONDS = 2.0  # how often the running jobs' logs are looked at


class LogHandlerSettings(LogHandlerSettingsBase):
    pass


class LogHandler(LogHandlerBase):
    def __post_init__(self) -> None:
        from deepfake_lth.workflow.console import Console

        settings = self.common_settings
        self.dryrun = bool(getattr(settings, "dryrun", False))
        self.stream = sys.stdout if getattr(settings, "stdout", False) else sys.stderr
        self.console = Console(self._write, bool(getattr(settings, "printshellcmds", False)))
        self.done = threading.Event()
        self.poller = self.plain = None
        if self.dryrun:  # Snakemake's own handler writes the plan, as without this plugin
            from snakemake.logging import ColorizingTextHandler

            self.plain = ColorizingTextHandler(nocolor=bool(getattr(settings, "nocolor", False)),
                                               stream=self.stream)
        else:
            self.poller = threading.Thread(target=self._poll, name="dlth-console", daemon=True)
            self.poller.start()

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def _poll(self) -> None:
        while not self.done.wait(POLL_SECONDS):
            try:
                self.console.poll()
            except Exception:  # noqa: BLE001 - the console must never end a run
                pass

    def emit(self, record: LogRecord) -> None:
        try:
            if self.plain is not None:  # Snakemake's filter ran; its formatter is ours
                self.plain.setFormatter(self.formatter)
                self.plain.emit(record)
                return
            self.console.handle(record.__dict__ | {"msg": record.getMessage()
                                                   if record.args else record.msg})
        except Exception:  # noqa: BLE001
            self.handleError(record)

    def close(self) -> None:
        self.done.set()
        try:
            self.console.close()
        finally:
            super().close()

    @property
    def writes_to_stream(self) -> bool:
        return True

    @property
    def writes_to_file(self) -> bool:
        return False

    @property
    def has_filter(self) -> bool:
        return not self.dryrun

    @property
    def has_formatter(self) -> bool:
        return not self.dryrun

    @property
    def needs_rulegraph(self) -> bool:
        return False
