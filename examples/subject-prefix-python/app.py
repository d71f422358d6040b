"""A customer-style Flowstep in Python: puts a configured prefix before the subject. The same
behaviour as the Rust example in examples/subject-prefix, byte for byte."""

from dataclasses import dataclass

from sluice_flowstep import Flowstep, invalid_config, log, outcome


@dataclass
class Config:
    """The step's JSON configuration."""

    prefix: str
    skip_if_present: bool = True


class Handler(Flowstep):
    """Puts `prefix` before the subject, once."""

    config_type = Config

    def step(self, msg, config):
        if not config.prefix.strip():
            raise invalid_config("prefix must not be empty")
        subject = msg.header("Subject") or ""
        if config.skip_if_present and subject.startswith(config.prefix):
            log.debug("subject already carries the prefix")
            return outcome.CONTINUE
        # A prefix the host refuses (a line break in it) raises an edit-error, which Flowstep
        # turns into the step's error; the message is then kept as it was.
        msg.set_header("Subject", f"{config.prefix} {subject}" if subject else config.prefix)
        return outcome.CONTINUE
