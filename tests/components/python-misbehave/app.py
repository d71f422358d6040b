"""A Python step that misbehaves on request, for the containment tests (and reads a header,
for the bench). It changes the subject first, so a test sees that a stopped step's change is
thrown away."""

from dataclasses import dataclass

from sluice_flowstep import Flowstep, outcome


@dataclass
class Config:
    """Which misbehaviour to show."""

    behaviour: str


class Handler(Flowstep):
    """Loops or hoards memory, as configured."""

    config_type = Config

    def step(self, msg, config):
        if config.behaviour == "read-header":
            # The same work as the Rust test step's read-header, for the per-call bench.
            msg.header("Subject")
            return outcome.CONTINUE
        msg.set_header("Subject", "changed before misbehaving")
        if config.behaviour == "change-subject":
            return outcome.CONTINUE
        if config.behaviour == "loop":
            while True:
                pass
        if config.behaviour == "memory-bomb":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        raise ValueError(f"unknown behaviour {config.behaviour}")
