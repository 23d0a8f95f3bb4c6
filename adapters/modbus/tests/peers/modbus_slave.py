#!/usr/bin/env python3
"""Modbus RTU slaves (pymodbus) on one serial port, for the adapter's tests.

Usage: modbus_slave.py PORT UNIT[,UNIT...] [BAUD]

Serves every UNIT on PORT (one end of a socat PTY pair; `tcp:N` serves
Modbus TCP on 127.0.0.1:N instead), each with SIZE
coils, discrete inputs, holding and input registers at protocol addresses
0..SIZE-1 (anything beyond answers exception 02, illegal address).

Commands, one a line on stdin; each is answered with one line on stdout:
  set UNIT TABLE ADDR V...   write values into the datastore      -> ok
                             (TABLE: co di hr ir; bits as 0/1)
  get UNIT TABLE ADDR COUNT  read the datastore                   -> V V ...
  requests UNIT FC           requests seen for UNIT with function -> N
  total                      requests seen, all units             -> N
  mute UNIT | unmute UNIT    stop / resume answering UNIT         -> ok
  corrupt N                  break the CRC of the next N answers  -> ok
  busy UNIT 0|1              answer UNIT with exception 06        -> ok
Prints "ready" once serving. Runs until stdin closes or it is killed.
"""

import asyncio
import sys

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

SIZE = 200
TABLES = {"co": ("c", 1, 5), "di": ("d", 2, None), "hr": ("h", 3, 16), "ir": ("i", 4, None)}

requests = {}
state = {"mute": set(), "corrupt": 0, "busy": set(), "internal": False, "tcp": False}


def blocks():
    bits = lambda: [SimData(address=0, count=SIZE, values=False, datatype=DataType.BITS)]
    regs = lambda: [SimData(address=0, count=SIZE, values=0, datatype=DataType.REGISTERS)]
    return (bits(), bits(), regs(), regs())


def make_action(unit):
    async def action(function_code, start, address, count, registers, values):
        if state["internal"]:
            return None
        if unit in state["busy"]:
            return ExcCodes.DEVICE_BUSY
        return None

    return action


def trace_pdu(sending, pdu):
    if not sending:
        key = (pdu.dev_id, pdu.function_code)
        requests[key] = requests.get(key, 0) + 1
    return pdu


def trace_packet(sending, data):
    if not sending:
        return data
    # The unit id is the first byte of an RTU frame, the seventh over TCP.
    unit = data[6] if state["tcp"] else data[0]
    if unit in state["mute"]:
        return b""
    if state["corrupt"] > 0 and len(data) >= 3:
        state["corrupt"] -= 1
        return data[:-2] + bytes([data[-2] ^ 0xFF, data[-1] ^ 0x55])
    return data


async def datastore(server, unit, fc, address, count, values=None):
    runtime = server.context.devices[unit]
    state["internal"] = True
    try:
        return await runtime.get_block(fc, address, count, values)
    finally:
        state["internal"] = False


async def command(server, line):
    words = line.split()
    if not words:
        return "?"
    op = words[0]
    if op == "set":
        unit, (_, _, write_fc) = int(words[1]), TABLES[words[2]]
        address, values = int(words[3]), [int(v) for v in words[4:]]
        table = words[2]
        if table in ("co", "di"):
            values = [bool(v) for v in values]
        fc = write_fc or TABLES[table][1]
        # Input tables have no write function: the runtime takes the read one with values.
        result = await datastore(server, unit, fc, address, len(values), values)
        return "ok" if isinstance(result, list) else f"error {result}"
    if op == "get":
        unit, table = int(words[1]), words[2]
        result = await datastore(server, unit, TABLES[table][1], int(words[3]), int(words[4]))
        return " ".join(str(int(v)) for v in result) if isinstance(result, list) else f"error {result}"
    if op == "requests":
        return str(requests.get((int(words[1]), int(words[2])), 0))
    if op == "total":
        return str(sum(requests.values()))
    if op == "mute":
        state["mute"].add(int(words[1]))
        return "ok"
    if op == "unmute":
        state["mute"].discard(int(words[1]))
        return "ok"
    if op == "corrupt":
        state["corrupt"] = int(words[1])
        return "ok"
    if op == "busy":
        unit = int(words[1])
        (state["busy"].add if words[2] == "1" else state["busy"].discard)(unit)
        return "ok"
    return f"unknown command {op}"


async def main():
    port, units = sys.argv[1], [int(u) for u in sys.argv[2].split(",")]
    baud = int(sys.argv[3]) if len(sys.argv) > 3 else 9600
    devices = [SimDevice(id=u, simdata=blocks(), action=make_action(u)) for u in units]
    if port.startswith("tcp:"):
        state["tcp"] = True
        server = ModbusTcpServer(
            devices,
            framer=FramerType.SOCKET,
            address=("127.0.0.1", int(port[4:])),
            trace_packet=trace_packet,
            trace_pdu=trace_pdu,
        )
    else:
        server = ModbusSerialServer(
            devices,
            framer=FramerType.RTU,
            port=port,
            baudrate=baud,
            trace_packet=trace_packet,
            trace_pdu=trace_pdu,
        )
    # Returns once the port is open (or the socket listens).
    await server.serve_forever(background=True)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        try:
            answer = await command(server, line)
        except Exception as exc:  # a bad command must not kill the slave
            answer = f"error {exc!r}"
        print(answer, flush=True)
    await server.shutdown()


if __name__ == "__main__":
    import logging

    logging.disable(logging.WARNING)
    asyncio.run(main())
