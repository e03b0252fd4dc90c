"""`@replicated`: the methods of an object that change its state, applied through Raft.

    class Counter:
        def __init__(self) -> None:
            self.value = 0

        @replicated
        def add(self, amount: int) -> int:
            self.value += amount
            return self.value

An object registered with a node (`Node(..., objects={"counter": counter})`) has its
replicated methods proposed through the log when called, on any node, and applied on every
replica in log order; the caller gets what the method returned on its own replica, or the
exception it raised there. Called on an object no node holds, the method just runs (handy
in unit tests of the object's logic). Methods not marked are local: reads of the replica.

A replicated method must be deterministic: the same state and arguments give the same
result and the same new state on every replica (no clock, no randomness, no I/O, no
iteration over a set of strings whose order differs between processes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar, overload

R = TypeVar("R")

# Attributes of an object named so are local to its replica, not replicated state.
LOCAL_PREFIX = "_raftkv_"
# The attribute an object registered with a node carries: the node that proposes its calls.
NODE_ATTRIBUTE = LOCAL_PREFIX + "node"


class Caller(Protocol):
    """What a node offers a replicated method (`Node`, `AsyncNode`)."""

    def call_from_method(
        self, target: object, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Propose the call; what the method's invocation returns (a value or an awaitable)."""

    def submit_call(
        self, target: object, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> concurrent.futures.Future[Any]: ...


class replicated(Generic[R]):  # lower case: a decorator, named like one
    """Marks a method as replicated (see the module docstring)."""

    def __init__(self, function: Callable[..., R]) -> None:
        self.function = function
        self.name = function.__name__
        self.__doc__ = function.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> replicated[R]: ...

    @overload
    def __get__(self, instance: object, owner: type) -> BoundReplicated[R]: ...

    def __get__(self, instance: object | None, owner: type) -> Any:
        if instance is None:
            return self
        return BoundReplicated(instance, self)


class BoundReplicated(Generic[R]):
    """A replicated method of one object: call it, or `submit`/`acall` it."""

    __slots__ = ("_instance", "_method")

    def __init__(self, instance: object, method: replicated[R]) -> None:
        self._instance = instance
        self._method = method

    def _node(self) -> Caller | None:
        node: Caller | None = getattr(self._instance, NODE_ATTRIBUTE, None)
        return node

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """With a blocking `Node`: the result (blocks until applied here). With an
        `AsyncNode`: an awaitable of it. With no node: the method runs locally."""
        node = self._node()
        if node is None:
            return self._method.function(self._instance, *args, **kwargs)
        return node.call_from_method(self._instance, self._method.name, args, kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> concurrent.futures.Future[R]:
        """Propose without waiting, from any thread: a future of the result."""
        node = self._node()
        if node is None:
            raise RuntimeError("this object is not registered with a node")
        return node.submit_call(self._instance, self._method.name, args, kwargs)

    async def acall(self, *args: Any, **kwargs: Any) -> R:
        """Await the result from any event loop (the node's own or another)."""
        node = self._node()
        if node is None:
            return self._method.function(self._instance, *args, **kwargs)
        future = node.submit_call(self._instance, self._method.name, args, kwargs)
        result: R = await asyncio.wrap_future(future)
        return result


def replicated_method(owner: type, name: str) -> replicated[Any] | None:
    """The replicated method `name` of `owner`, or None if there is none by that name (a
    call naming anything else — a local method, an attribute — is refused, never run)."""
    for klass in owner.__mro__:
        candidate = klass.__dict__.get(name)
        if candidate is not None:
            return candidate if isinstance(candidate, replicated) else None
    return None
