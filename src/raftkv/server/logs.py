"""Log output of a node: one readable line per event (or one JSON object with --log-format
json), and the --trace-rpc stream of every RPC in the wire schema."""

from __future__ import annotations

import json
import logging
import sys
import time

from raftkv.core import codec
from raftkv.core.messages import AnyMessage


class _HumanFormatter(logging.Formatter):
    def __init__(self, node_id: int) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        milliseconds = int(record.msecs)
        level = f"{record.levelname:<7}"
        text = f"{stamp}.{milliseconds:03d} node{self.node_id} {level} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _JsonFormatter(logging.Formatter):
    def __init__(self, node_id: int) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": round(record.created, 3),
            "node": self.node_id,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload)


def configure_logging(node_id: int, level: str, json_format: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter(node_id) if json_format else _HumanFormatter(node_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def trace_line(direction: str, message: AnyMessage) -> str:
    """One JSON line: the message in the seed's wire schema plus its direction."""
    body = codec.to_json(message).decode()
    return '{"direction":"' + direction + '",' + body[1:]
