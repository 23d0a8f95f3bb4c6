#!/usr/bin/env python3
"""A CoAP device that serves its readings, for the observer's tests.

Usage: observable_server.py PORT [START]

Listens on 127.0.0.1:PORT (aiocoap) and serves
  /sensors/temp   observable; JSON (content format 50) {"temperature": N},
                  N counting up from START (default 0) every 200 ms
  /sensors/plain  not observable; a text/plain number (content format 0)
                  that counts up on every GET
  /actuators/led  PUT or POST: answers 2.04 with "<METHOD> <payload>" and
                  the request's content format as "cf=N" appended
  /actuators/lock GET only: PUT and POST get 4.05
Prints "ready" on stdout once listening; runs until killed.
"""

import asyncio
import json
import logging
import sys

import aiocoap
import aiocoap.resource as resource
from aiocoap.numbers.contentformat import ContentFormat

CHANGE_EVERY_S = 0.2


class Temperature(resource.ObservableResource):
    def __init__(self, start):
        super().__init__()
        self.value = start

    async def tick(self):
        while True:
            await asyncio.sleep(CHANGE_EVERY_S)
            self.value += 1
            self.updated_state()

    async def render_get(self, request):
        payload = json.dumps({"temperature": self.value}).encode()
        return aiocoap.Message(payload=payload, content_format=ContentFormat.JSON)


class Plain(resource.Resource):
    def __init__(self, start):
        super().__init__()
        self.value = start

    async def render_get(self, request):
        self.value += 1
        return aiocoap.Message(
            payload=str(self.value).encode(), content_format=ContentFormat.TEXT
        )


class Led(resource.Resource):
    def _echo(self, request):
        cf = request.opt.content_format
        payload = b"%s %s cf=%s" % (
            str(request.code).encode(),
            request.payload,
            b"none" if cf is None else str(int(cf)).encode(),
        )
        return aiocoap.Message(code=aiocoap.CHANGED, payload=payload)

    async def render_put(self, request):
        return self._echo(request)

    async def render_post(self, request):
        return self._echo(request)


class Lock(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(payload=b"locked")


async def main(port, start):
    temperature = Temperature(start)
    site = resource.Site()
    site.add_resource(["sensors", "temp"], temperature)
    site.add_resource(["sensors", "plain"], Plain(start))
    site.add_resource(["actuators", "led"], Led())
    site.add_resource(["actuators", "lock"], Lock())
    await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port))
    print("ready", flush=True)
    await temperature.tick()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    port = int(sys.argv[1])
    start = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    asyncio.run(main(port, start))
