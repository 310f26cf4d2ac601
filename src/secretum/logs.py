"""Structured JSON-lines logging with a redaction layer that runs on every record.

Everything — our structlog events, stdlib loggers, uvicorn's ``uvicorn.error`` logger, asyncio,
warnings, uncaught exceptions in threads — ends in one root handler whose
:class:`structlog.stdlib.ProcessorFormatter` applies, in order:

1. :func:`safe_exception_info` — an exception becomes ``exc_type`` (its class) and ``exc_stack``
   (``file:line in function`` frames) plus ``exc_chain`` (classes of its causes). **The
   exception message and args are never logged**: messages are built from data (``KeyError``
   shows the key, ``ValueError`` the value, an HTTP parser error the raw request line, an
   ORM error the bound parameters), so the only safe message is none. The class and the
   stack locate the bug; the request id ties it to the request.
2. :func:`redact` — keys on a deny-list (any ``_``/camelCase token of the key: password, token,
   secret, key, cookie, authorization, name, birth, email, phone, address, ins, nir, note,
   text, value, body, content, args, …) have their value replaced by ``[redacted]``; every
   other string value is scrubbed of e-mail-like tokens, French NIR/INS numbers and any run
   of 9+ digits (phone numbers, identifiers); bytes are never rendered; unknown objects are
   shown as ``<TypeName>`` (their ``str`` could be a patient).
3. Messages from stdlib loggers (uvicorn, libraries) keep their %-template; their arguments are
   rendered only when they are numbers, any other argument becomes ``[redacted]`` (a library
   logging ``"lookup %s", patient_name`` must not leak it). Warnings (``py.warnings``) are
   rendered and scrubbed, and so are the few server templates of :data:`SERVER_TEMPLATES`,
   whose arguments are the server's own configuration (the listening address). A non-string
   message object is shown as ``<TypeName>``.

The uvicorn access log is switched off: :mod:`secretum.web.requestlog` writes our own request
line (method, route template, status, duration, request id — never the path, query string,
headers or body).
"""

from __future__ import annotations

import enum
import logging
import re
import sys
import threading
import types
import uuid
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import IO, Any

import structlog
from structlog.typing import EventDict, WrappedLogger

REDACTED = "[redacted]"
REDACTED_BYTES = "[redacted bytes]"

#: Key tokens whose values are always masked (matched against each token of the key).
DENY_KEY_TOKENS = frozenset(
    """
    password passwd pwd passphrase pin otp totp token secret secrets key keys apikey
    cookie cookies authorization auth credential credentials session
    name names firstname lastname surname givenname familyname fullname username
    birth birthdate birthday dob born age sex gender
    email mail phone telephone tel mobile fax address addr street city zip postcode
    ins nir ssn insee
    note notes text value values body content data payload query params form json
    args headers header comment comments diagnosis message msg
    """.split()  # noqa: SIM905 - one readable block
)
#: Substrings that mask a key wherever they appear (``accesstoken``, ``x_user_email``...).
DENY_KEY_SUBSTRINGS = (
    "password",
    "passphrase",
    "secret",
    "token",
    "cookie",
    "authoriz",
    "email",
    "phone",
    "birth",
    "diagnos",
)
#: Keys our own code fills with code-defined values: neither masked nor scrubbed.
SAFE_KEYS = frozenset(
    {
        "timestamp",
        "level",
        "logger",
        "request_id",
        "route",
        "status",
        "duration_ms",
        "exc_type",
        "exc_stack",
        "exc_chain",
    }
)

#: A whitespace-delimited token containing an at sign (raw, percent-encoded or full-width).
#: Anchored at token starts so that long tokens without one cost linear time, not quadratic.
_EMAIL = re.compile(r"(?<!\S)\S*(?:@|%40|\uff20)\S*", re.IGNORECASE)
_SEP = r"(?:[\s.\-/_]|%20|\+)?"
#: NIR / INS: sex, year, month, department (incl. 2A/2B Corsica), commune, order, [key].
_NIR = re.compile(
    rf"[1-478]{_SEP}\d\d{_SEP}\d\d{_SEP}(?:\d\d|2[ABab]){_SEP}\d{{3}}{_SEP}\d{{3}}(?:{_SEP}\d\d)?"
)
#: Any 9+ digits, possibly separated: NIR without its pattern, phone numbers, account ids.
_DIGITS = re.compile(rf"\d(?:{_SEP}\d){{8,}}")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_TOKEN_SPLIT = re.compile(r"[^a-z0-9]+")
_MAX_DEPTH = 6
_MAX_FRAMES = 40


def scrub(text: str) -> str:
    """Mask e-mail-like tokens, NIR/INS numbers and long digit runs in ``text``."""
    text = _EMAIL.sub(REDACTED, text)
    text = _NIR.sub(REDACTED, text)
    return _DIGITS.sub(REDACTED, text)


def is_denied_key(key: str) -> bool:
    """Whether the value under ``key`` must be masked whatever it looks like."""
    lowered = key.lower()
    if any(part in lowered for part in DENY_KEY_SUBSTRINGS):
        return True
    tokens = _TOKEN_SPLIT.split(_CAMEL.sub("_", key).lower())
    return any(t in DENY_KEY_TOKENS for t in tokens)


def redact_value(value: Any, depth: int = 0) -> Any:
    """A JSON-safe, scrubbed version of ``value`` (recursing into containers)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return REDACTED_BYTES
    if depth >= _MAX_DEPTH:
        return REDACTED
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if is_denied_key(str(k)) else redact_value(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v, depth + 1) for v in value]
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, BaseException):
        return f"<{_qualname(type(value))}>"
    return f"<{type(value).__name__}>"


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask deny-listed keys, scrub every other value (see module doc)."""
    out: EventDict = {}
    for key, value in event_dict.items():
        if key in SAFE_KEYS:
            out[key] = value if _is_plain(value) else redact_value(value)
        elif key == "event":
            out[key] = scrub(value) if isinstance(value, str) else redact_value(value)
        elif is_denied_key(key):
            out[key] = REDACTED
        else:
            out[key] = redact_value(value)
    return out


def safe_exception_info(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: replace ``exc_info``/``exception`` by type + stack, no message."""
    exc_info = event_dict.pop("exc_info", None)
    event_dict.pop("exception", None)
    event_dict.pop("stack_info", None)
    exc = _to_exception(exc_info, event_dict.get("_record"))
    if exc is not None:
        event_dict["exc_type"] = _qualname(type(exc))
        event_dict["exc_stack"] = _frames(exc.__traceback__)
        chain = _causes(exc)
        if chain:
            event_dict["exc_chain"] = chain
    return event_dict


#: Templates of stdlib loggers whose string arguments are the server's configuration, never a
#: request's data: ``(logger, template)``. Uvicorn's start-up line would otherwise read
#: ``[redacted]://[redacted]:8443`` and tell the operator nothing.
SERVER_TEMPLATES = frozenset(
    ("uvicorn.error", f"Uvicorn running on {address} (Press CTRL+C to quit)")
    for address in ("%s://%s:%d", "%s://[%s]:%d")
)


def render_foreign_args(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Pre-chain processor for stdlib records: keep the template, render numeric args only."""
    record: logging.LogRecord | None = event_dict.get("_record")
    args = event_dict.pop("positional_args", None)
    msg = record.msg if record is not None else event_dict.get("event")
    if not isinstance(msg, str):
        event_dict["event"] = f"<{type(msg).__name__}>"
        return event_dict
    event_dict["event"] = msg
    if not args:
        return event_dict
    warning = record is not None and (
        record.name == "py.warnings" or (record.name, msg) in SERVER_TEMPLATES
    )
    try:
        if isinstance(args, Mapping):
            event_dict["event"] = msg % {k: _safe_arg(v, warning) for k, v in args.items()}
        else:
            event_dict["event"] = msg % tuple(_safe_arg(a, warning) for a in args)
    except (TypeError, ValueError, KeyError):
        event_dict["event"] = msg
    return event_dict


def configure_logging(
    level: str | int = "INFO",
    *,
    stream: IO[str] | None = None,
    install_excepthooks: bool = True,
) -> logging.Handler:
    """Route every logger to one JSON-lines handler on ``stream`` (default stderr).

    Idempotent: a second call replaces the handler installed by the first. Returns the handler
    (tests may remove it). Uvicorn loggers propagate to it; ``uvicorn.access`` is disabled.
    """
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            render_foreign_args,
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
        ],
        processors=[
            structlog.stdlib.add_log_level,
            safe_exception_info,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _leading_keys_first,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        use_get_message=False,
        pass_foreign_args=True,
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name(_HANDLER_NAME)

    root = logging.getLogger()
    for old in list(root.handlers):
        # ours from a previous call, or a bare stderr/stdout handler (logging.basicConfig)
        if old.get_name() == _HANDLER_NAME or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())

    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
        uv.setLevel(logging.NOTSET)  # the root's level decides (uvicorn.Config sets its own)
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
    logging.captureWarnings(True)

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    if install_excepthooks:
        _install_excepthooks()
    return handler


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger; log events as ``log.info("thing.happened", key=value)``."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


_HANDLER_NAME = "secretum-json"


def _install_excepthooks() -> None:
    log = logging.getLogger("secretum.uncaught")

    def sys_hook(
        exc_type: type[BaseException],
        exc: BaseException,
        tb: types.TracebackType | None,
    ) -> None:
        log.critical("uncaught exception", exc_info=(exc_type, exc, tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or isinstance(args.exc_value, SystemExit):
            return
        log.critical(
            "uncaught exception in thread",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    sys.excepthook = sys_hook
    threading.excepthook = thread_hook


_LEADING_KEYS = ("timestamp", "level", "logger", "event", "request_id")


def _leading_keys_first(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    ordered = {k: event_dict[k] for k in _LEADING_KEYS if k in event_dict}
    ordered.update((k, v) for k, v in event_dict.items() if k not in ordered)
    return ordered


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _safe_arg(value: Any, render_strings: bool = False) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    if render_strings and isinstance(value, str):
        return value  # scrubbed with the whole event by ``redact``
    return REDACTED


def _to_exception(exc_info: Any, record: logging.LogRecord | None) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        return exc_info[1] if isinstance(exc_info[1], BaseException) else None
    if exc_info:
        if record is not None and record.exc_info and record.exc_info[1] is not None:
            return record.exc_info[1]
        return sys.exc_info()[1]
    return None


def _qualname(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _frames(tb: types.TracebackType | None) -> list[str]:
    frames: list[str] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append(f"{_short_path(code.co_filename)}:{tb.tb_lineno} in {code.co_name}")
        tb = tb.tb_next
    return frames[-_MAX_FRAMES:]


def _short_path(path: str) -> str:
    for marker in ("/site-packages/", "/src/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _causes(exc: BaseException) -> list[str]:
    chain: list[str] = []
    seen = {id(exc)}
    current = exc.__cause__ or exc.__context__
    while current is not None and id(current) not in seen and len(chain) < 10:
        seen.add(id(current))
        chain.append(_qualname(type(current)))
        current = current.__cause__ or current.__context__
    return chain
