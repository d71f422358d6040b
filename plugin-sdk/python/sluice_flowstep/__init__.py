"""Helpers for Sluice Flowsteps written in Python, built with componentize-py against
``sluice:flowstep@0.2.0`` (world ``flowstep``). See README.md.

A step subclasses :class:`Flowstep` as ``Handler``, names a dataclass as its configuration and
writes ``step``::

    @dataclass
    class Config:
        prefix: str
        skip_if_present: bool = True

    class Handler(Flowstep):
        config_type = Config

        def step(self, msg, config):
            ...
            return outcome.CONTINUE
"""

import dataclasses
import json
import typing

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log as host_log
from wit_world.imports.types import (
    EditError_InvalidAddress,
    EditError_InvalidHeaderName,
    EditError_InvalidHeaderValue,
    EditError_MalformedMessage,
    EditError_NoSuchAttachment,
    EditError_TooLarge,
    Message,
    Outcome,
    Outcome_Continue,
    Outcome_Discard,
    Outcome_Hold,
    StepError_CapabilityFailed,
    StepError_InvalidConfig,
    StepError_MissingData,
    StepError_Other,
    StepError_UnsupportedMessage,
)

__all__ = [
    "Flowstep",
    "Message",
    "describe_edit_error",
    "invalid_config",
    "log",
    "missing_data",
    "other_error",
    "outcome",
    "parse_config",
    "parse_data",
    "unsupported_message",
]

_STEP_ERRORS = (
    StepError_InvalidConfig,
    StepError_MissingData,
    StepError_UnsupportedMessage,
    StepError_CapabilityFailed,
    StepError_Other,
)


def invalid_config(why: str) -> Err:
    """The error to raise when the configuration is missing something or has a wrong value."""
    return Err(StepError_InvalidConfig(why))


def missing_data(why: str) -> Err:
    """The error to raise when the submitted ``data`` lacks something the step needs."""
    return Err(StepError_MissingData(why))


def unsupported_message(why: str) -> Err:
    """The error to raise when the message has a form the step cannot work with."""
    return Err(StepError_UnsupportedMessage(why))


def other_error(why: str) -> Err:
    """The error to raise for anything else."""
    return Err(StepError_Other(why))


class outcome:
    """What happens to the message after the step."""

    CONTINUE: Outcome = Outcome_Continue()
    """Go on to the next step."""

    @staticmethod
    def hold(reason: str) -> Outcome:
        """Stop the flow and keep the message as HELD, for a person to look at."""
        return Outcome_Hold(reason)

    @staticmethod
    def discard(reason: str) -> Outcome:
        """Stop the flow and do not send the message."""
        return Outcome_Discard(reason)


class log:
    """Writing to the step's log, which the host keeps with the message's events."""

    @staticmethod
    def debug(line: str) -> None:
        """Records a debugging detail."""
        host_log.write(host_log.Level.DEBUG, line)

    @staticmethod
    def info(line: str) -> None:
        """Records something worth knowing about this message."""
        host_log.write(host_log.Level.INFO, line)

    @staticmethod
    def warn(line: str) -> None:
        """Records something that went wrong but did not stop the step."""
        host_log.write(host_log.Level.WARN, line)

    @staticmethod
    def error(line: str) -> None:
        """Records an error."""
        host_log.write(host_log.Level.ERROR, line)


def _type_name(expected: typing.Any) -> str:
    return getattr(expected, "__name__", str(expected))


def _has_type(value: typing.Any, expected: typing.Any) -> bool:
    origin = typing.get_origin(expected) or expected
    if origin is typing.Any:
        return True
    if origin is typing.Union:
        return any(_has_type(value, option) for option in typing.get_args(expected))
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is type(None):
        return value is None
    return isinstance(value, origin)


_CONFIG_FIELDS: dict = {}


def _config_fields(config_type: type) -> list:
    """The dataclass's fields as (name, type, has a default), worked out once per type.

    A Handler's ``config_type`` is worked out when its class is defined, at import: the
    toolchain snapshots the component after importing the app, so each call (in a fresh
    instance of that snapshot) finds the answer instead of asking ``typing`` again.
    """
    known = _CONFIG_FIELDS.get(config_type)
    if known is None:
        hints = typing.get_type_hints(config_type)
        known = [
            (
                field.name,
                hints[field.name],
                field.default is not dataclasses.MISSING
                or field.default_factory is not dataclasses.MISSING,
            )
            for field in dataclasses.fields(config_type)
        ]
        _CONFIG_FIELDS[config_type] = known
    return known


def parse_config(text: str, config_type: type):
    """Parses the step's JSON configuration into the dataclass ``config_type``.

    Unknown keys, values of the wrong type and missing fields without a default raise
    ``invalid-config``, so a typo in a flow fails loudly instead of being ignored.
    """
    try:
        parsed = json.loads(text) if text.strip() else {}
    except ValueError as error:
        raise invalid_config(f"the configuration is not JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise invalid_config("the configuration must be a JSON object")
    fields = _config_fields(config_type)
    names = [name for name, _, _ in fields]
    for key in parsed:
        if key not in names:
            raise invalid_config(f"unknown field `{key}`, expected one of {', '.join(names)}")
    values = {}
    for name, expected, has_default in fields:
        if name not in parsed:
            if not has_default:
                raise invalid_config(f"missing field `{name}`")
            continue
        if not _has_type(parsed[name], expected):
            raise invalid_config(f"field `{name}` must be a {_type_name(expected)}")
        values[name] = parsed[name]
    return config_type(**values)


def parse_data(msg: Message) -> dict:
    """The message's ``data`` (the JSON submitted with it) as a dict; raises ``missing-data``
    when there is none or it is not a JSON object."""
    text = msg.data()
    if text is None:
        raise missing_data("the message was submitted without data")
    try:
        parsed = json.loads(text)
    except ValueError as error:
        raise missing_data(f"the message's data is not JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise missing_data("the message's data must be a JSON object")
    return parsed


def describe_edit_error(refused) -> str:
    """The words for a change the host refused (an ``edit-error``), as the Rust SDK words them."""
    value = refused.value
    if isinstance(refused, EditError_InvalidHeaderName):
        return f"{json.dumps(value)} is not a header name"
    if isinstance(refused, EditError_InvalidHeaderValue):
        return f"the value of header {json.dumps(value)} holds a line break or control character"
    if isinstance(refused, EditError_InvalidAddress):
        return f"{json.dumps(value)} is not an address"
    if isinstance(refused, EditError_MalformedMessage):
        return f"malformed message: {value}"
    if isinstance(refused, EditError_TooLarge):
        return f"the message would be larger than the limit of {value} bytes"
    if isinstance(refused, EditError_NoSuchAttachment):
        return f"there is no attachment {value}"
    return repr(refused)


class Flowstep(exports.Handler):
    """Base class of a step's ``Handler``: parses the configuration, calls :meth:`step` and
    turns whatever it raises into a ``step-error`` the host records."""

    config_type: typing.Optional[type] = None
    """A dataclass the JSON configuration is parsed into; None passes the raw string."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.config_type is not None:
            _config_fields(cls.config_type)

    def step(self, msg: Message, config) -> typing.Optional[Outcome]:
        """Processes one message; returns an outcome (None means continue) or raises."""
        raise NotImplementedError

    def process(self, msg: Message, config: str) -> Outcome:
        """Called by the host: parses the configuration, runs :meth:`step`, maps its errors."""
        try:
            parsed = config if self.config_type is None else parse_config(config, self.config_type)
            result = self.step(msg, parsed)
            return outcome.CONTINUE if result is None else result
        except Err as refused:
            if isinstance(refused.value, _STEP_ERRORS):
                raise
            # Anything but a step-error (an edit-error from a setter) would not lower into
            # the export's error type, and a failed lowering is a trap.
            raise other_error(f"the host refused a change: {describe_edit_error(refused.value)}")
        except MemoryError:
            # Running out of memory means the step hit the host's cap: letting it trap lets
            # the host report it as memory-limit rather than as the step's own error.
            raise
        except Exception as error:
            raise other_error(f"{type(error).__name__}: {error}") from None
