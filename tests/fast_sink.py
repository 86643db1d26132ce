"""A small, fast recording SMTP server for the tests that send tens of thousands of messages:
asyncio, PIPELINING offered, every accepted message logged as `recipient<TAB>Message-ID` (the
same record `smtp_servers.recording_server` keeps), nothing else parsed. Run as a script:
`python fast_sink.py PORT RECORD_FILE`; it prints `ready`, and stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


class Sink:
    def __init__(self, record: str) -> None:
        self.fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 fast-sink ESMTP\r\n")
        recipient = b""
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(b"250-fast-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                elif verb == b"MAIL":
                    recipient = b""
                    writer.write(b"250 2.1.0 ok\r\n")
                elif verb == b"RCPT":
                    recipient = line[line.find(b"<") + 1 : line.rfind(b">")]
                    writer.write(b"250 2.1.5 ok\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    body = await reader.readuntil(b"\r\n.\r\n")
                    found = MESSAGE_ID.search(body)
                    os.write(self.fd, recipient + b"\t" + (found.group(1) if found else b"-") + b"\n")
                    writer.write(b"250 2.0.0 queued\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:  # RSET, NOOP
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


async def main(port: int, record: str) -> None:
    sink = Sink(record)
    server = await asyncio.start_server(sink.session, "127.0.0.1", port, limit=1 << 22)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
