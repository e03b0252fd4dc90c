"""Rules for the modules setup.py compiles with mypyc, read from their source (so they hold on
an interpreted install too), and the helpers those modules await their clean-ups through."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from raftkv.async_cleanup import first_to_end, then_clean_up

ROOT = Path(__file__).resolve().parent.parent


def compiled_modules() -> list[str]:
    """setup.py's MYPYC_MODULES, read without running setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "MYPYC_MODULES" for target in node.targets
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return value
    raise AssertionError("setup.py has no MYPYC_MODULES")


def awaiting_finally_blocks(source: str) -> list[int]:
    """Lines of the `try` statements whose `finally` awaits (directly, not in a nested def)."""

    def awaits(node: ast.AST) -> bool:
        if isinstance(node, (ast.Await, ast.AsyncWith, ast.AsyncFor)):
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            return False
        return any(awaits(child) for child in ast.iter_child_nodes(node))

    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Try, ast.TryStar))
        and any(awaits(statement) for statement in node.finalbody)
    ]


def test_the_rule_finds_an_awaiting_finally_and_only_one() -> None:
    source = (
        "async def f():\n"
        "    try:\n"
        "        await g()\n"
        "    finally:\n"
        "        await h()\n"
        "    try:\n"
        "        pass\n"
        "    finally:\n"
        "        async def later():\n"
        "            await h()\n"
    )
    assert awaiting_finally_blocks(source) == [2]


def test_no_compiled_module_awaits_in_a_finally_block() -> None:
    """mypyc (2.4.1) compiles such a block to end by raising a stale exception, one the thread
    handled earlier, when its `try` body ended normally (raftkv/async_cleanup.py)."""
    modules = compiled_modules()
    assert "src/raftkv/server/http_server.py" in modules
    found = {
        module: lines
        for module in modules
        if (lines := awaiting_finally_blocks((ROOT / module).read_text()))
    }
    assert found == {}, f"await through raftkv.async_cleanup instead: {found}"


def test_the_cleanup_helpers_stay_interpreted() -> None:
    assert "src/raftkv/async_cleanup.py" not in compiled_modules()


def test_then_clean_up_cleans_up_after_a_result_an_error_and_a_cancellation() -> None:
    async def main() -> None:
        cleaned: list[str] = []

        async def clean_up() -> None:
            await asyncio.sleep(0)  # a clean-up that suspends (the case mypyc gets wrong)
            cleaned.append("done")

        async def answer() -> int:
            return 42

        async def fail() -> None:
            raise ValueError("the work's own error")

        assert await then_clean_up(answer(), clean_up) == 42
        with pytest.raises(ValueError, match="the work's own error"):
            await then_clean_up(fail(), clean_up)
        started = asyncio.Event()

        async def wait_forever() -> None:
            started.set()
            await asyncio.Event().wait()

        task = asyncio.create_task(then_clean_up(wait_forever(), clean_up))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cleaned == ["done", "done", "done"]

    asyncio.run(main())


def test_first_to_end_cancels_and_awaits_the_others() -> None:
    async def main() -> None:
        async def quick() -> None:
            raise ConnectionError("ended first")

        waiting = asyncio.Event()

        async def slow() -> None:
            waiting.set()
            await asyncio.Event().wait()

        first = asyncio.create_task(quick())
        second = asyncio.create_task(slow())
        done = await first_to_end(first, second)
        assert done == {first}
        assert second.cancelled()
        with pytest.raises(ConnectionError):
            first.result()

        # Cancelled while waiting: both tasks are cancelled and awaited before it raises.
        waiting.clear()
        waiter = asyncio.create_task(
            first_to_end(asyncio.create_task(slow()), asyncio.create_task(slow()))
        )
        await waiting.wait()  # the tasks run once the waiter has started them
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        assert others == []  # both cancelled and awaited before the waiter ended

    asyncio.run(main())
