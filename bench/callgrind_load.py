"""HTTP/1.1 load for bench/callgrind.sh.

callgrind_load.py PORT CONNS WARM N PID [warm|fresh|cold]: CONNS keep-alive
connections to PORT, requests spread over them and all in flight at once;
WARM requests, then callgrind's counters in process PID are zeroed, N
requests are sent and the counters dumped. fresh: the warm-up runs on
connections of its own and N goes over CONNS new ones (the proxy's
upstream pool is already filled); cold: nothing before zeroing, so the
first connections both sides are counted, as in bench/proxy's max rps.
"""
import asyncio
import subprocess
import sys

port, conns, warm, n = (int(a) for a in sys.argv[1:5])
pid = sys.argv[5]
mode = sys.argv[6] if len(sys.argv) > 6 else "warm"
REQ = b"GET /bench HTTP/1.1\r\nhost: bench.test\r\n\r\n"


def callgrind(flag):
    subprocess.run(["callgrind_control", flag, pid], check=True, capture_output=True)


async def run(c, k):
    r, w = c
    for _ in range(k):
        w.write(REQ)
        head = await r.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await r.readexactly(length)


async def phase(cs, total):
    per, extra = divmod(total, len(cs))
    await asyncio.gather(*(run(c, per + (i < extra)) for i, c in enumerate(cs)))


async def connect():
    return [await asyncio.open_connection("127.0.0.1", port) for _ in range(conns)]


async def main():
    if mode == "cold":
        callgrind("-z")
        cs = await connect()
    elif mode == "fresh":
        old = await connect()
        await phase(old, warm)
        callgrind("-z")
        for _, w in old:
            w.close()
        cs = await connect()
    else:
        cs = await connect()
        await phase(cs, warm)
        callgrind("-z")
    await phase(cs, n)
    callgrind("-d")
    for _, w in cs:
        w.close()


asyncio.run(main())
