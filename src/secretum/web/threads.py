"""The worker threads of the busiest routes: one lean hand-over from the event loop.

Starlette's ``run_in_threadpool`` goes through AnyIO (a capacity limiter, a cancel scope, a
run-variable lookup and a ``queue.Queue`` whose ``Condition`` wakes the worker): on the FHIR
read, that hand-over cost more of the event loop's time than anything the route itself does.
:func:`in_thread` hands the call to a :class:`~concurrent.futures.ThreadPoolExecutor` of its
own (a C ``SimpleQueue``, one asyncio future woken with ``call_soon_threadsafe``), in a copy of
the caller's context (``contextvars``, as ``asyncio.to_thread``: the request id of the log and
the audit barrier's :class:`~secretum.audit.witnessing.Owed` go along).

As many threads as the database pools have connections (``storage.db.POOL_SIZE``, and AnyIO's
default of 40 threads): a read
holds one connection at a time, and waits in its thread for the group commit of its audit
entry, so every thread is one read in flight. If the caller is cancelled (the client went
away), the call still runs to its end in its thread (its audit entry is written); its result
is dropped.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

THREADS = 40
_executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="secretum-web")


async def in_thread(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``func(*args, **kwargs)`` in a worker thread, in a copy of this context; its result."""
    context = contextvars.copy_context()
    call = functools.partial(context.run, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_executor, call)
