"""An independent WebSocket client for the chat stream tests: Python's
`websockets` package (asyncio client).

usage: python ws_client.py CONFIG_JSON
  CONFIG_JSON: {"url": ..., "headers": {name: value}, "timeout": seconds}

Connects to `url` with `headers`, then:
  * every line read on stdin is sent as one text message;
  * end of stdin closes the connection normally (1000);
  * every text frame received is printed as it came, one line on stdout
    (a frame that is not JSON is printed as {"invalid": text});
  * the end is one last line: {"close": code, "reason": text} when the
    connection closed, {"refused": status} when the server answered the
    handshake with another status than 101, {"error": text} when the
    connection failed otherwise, {"timeout": seconds} when `timeout` passed.
"""

import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


def emit(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def emit_json(value):
    emit(json.dumps(value))


async def send_stdin_lines(socket):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        await socket.send(line.decode("utf-8").rstrip("\n"))
    await socket.close()


async def print_frames(socket):
    try:
        while True:
            text = await socket.recv()
            if isinstance(text, bytes):
                emit_json({"binary": len(text)})
                continue
            try:
                json.loads(text)
            except ValueError:
                emit_json({"invalid": text})
                continue
            emit(text)
    except ConnectionClosed:
        pass
    emit_json({"close": socket.close_code, "reason": socket.close_reason})


async def run(config):
    try:
        socket = await connect(
            config["url"], additional_headers=config.get("headers", {}), max_size=None
        )
    except InvalidStatus as refused:
        emit_json({"refused": refused.response.status_code})
        return
    except OSError as err:
        emit_json({"error": str(err)})
        return
    sender = asyncio.ensure_future(send_stdin_lines(socket))
    await print_frames(socket)
    sender.cancel()


def main():
    config = json.loads(sys.argv[1])
    timeout = config.get("timeout", 120)
    try:
        asyncio.run(asyncio.wait_for(run(config), timeout))
    except asyncio.TimeoutError:
        emit_json({"timeout": timeout})


if __name__ == "__main__":
    main()
