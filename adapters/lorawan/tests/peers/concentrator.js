// A test concentrator: builds LoRaWAN frames with lora-packet (an
// implementation independent of the gateway's) and speaks GWMP v2 to the
// gateway over loopback UDP from two sockets, as a packet forwarder does
// (PUSH_DATA from one port, PULL_DATA and TX_ACK from another). Checks
// PUSH_ACK, PULL_ACK and the PULL_RESP of the join (timing, frequency,
// data rate), decrypts the JoinAccept, derives the session keys, and
// prints one JSON line per step for the Rust test.
//
// usage: node concentrator.js PORT SCENARIO [ARGS]
//   join | abp FCNT [confirmed] | bad
//   confirmed FROM TO   confirmed ABP uplinks FROM..=TO carrying Cayenne LPP
//                       temperature_1 = FCNT (°C); each ACK checked
//   linkcheck FCNT      an ABP uplink with LinkCheckReq in FOpts; the answer checked
//   downlink FCNT       an ABP uplink; the downlink that follows decrypted
//   stat                a PUSH_DATA with a `stat` report
"use strict";
const dgram = require("dgram");
const lp = require("lora-packet");

const port = Number(process.argv[2]);
const scenario = process.argv[3] || "join";
const GW = Buffer.from("aa555a0000000001", "hex");
const GW2 = Buffer.from("aa555a0000000002", "hex");
const OTAA = { devEui: "0011223344556677", joinEui: "70b3d57ed0000000", appKey: "2b7e151628aed2a6abf7158809cf4f3c" };
const ABP = { devAddr: "26011b01", nwkSKey: "000102030405060708090a0b0c0d0e0f", appSKey: "101112131415161718191a1b1c1d1e1f" };

function out(obj) { process.stdout.write(JSON.stringify(obj) + "\n"); }
function fail(msg) { out({ step: "fail", msg }); process.exit(1); }

const push = dgram.createSocket("udp4");
const pull = dgram.createSocket("udp4");
let token = 1;
const waiting = [];
function expect(sock, pred, ms, what) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail("timeout waiting for " + what), ms);
    waiting.push({ sock, pred, resolve: (m) => { clearTimeout(timer); resolve(m); } });
  });
}
for (const sock of [push, pull]) {
  sock.on("message", (m) => {
    const i = waiting.findIndex((w) => w.sock === sock && w.pred(m));
    if (i >= 0) { const w = waiting.splice(i, 1)[0]; w.resolve(m); }
  });
}
function tok() { token = (token + 1) & 0xffff; return Buffer.from([token >> 8, token & 0xff]); }
function send(sock, buf) { return new Promise((r) => sock.send(buf, port, "127.0.0.1", r)); }

async function pushFrame(phy, gw, tmst, rssi, lsnr) {
  const t = tok();
  const json = JSON.stringify({ rxpk: [{ tmst, chan: 0, rfch: 0, freq: 868.1, stat: 1, modu: "LORA",
    datr: "SF7BW125", codr: "4/5", rssi, lsnr, size: phy.length, data: phy.toString("base64") }] });
  const ack = expect(push, (m) => m.length === 4 && m[3] === 1 && m[1] === t[0] && m[2] === t[1], 2000, "PUSH_ACK");
  await send(push, Buffer.concat([Buffer.from([2]), t, Buffer.from([0]), gw, Buffer.from(json)]));
  const a = await ack;
  if (a[0] !== 2) fail("PUSH_ACK version " + a[0]);
}

async function pullData(gw = GW) {
  const t = tok();
  const ack = expect(pull, (m) => m.length === 4 && m[3] === 4 && m[1] === t[0] && m[2] === t[1], 2000, "PULL_ACK");
  await send(pull, Buffer.concat([Buffer.from([2]), t, Buffer.from([2]), gw]));
  await ack;
}

function pullResp(ms) {
  return expect(pull, (m) => m.length > 4 && m[3] === 3, ms, "PULL_RESP").then((m) => {
    return { token: m.slice(1, 3), txpk: JSON.parse(m.slice(4).toString()).txpk };
  });
}

async function txAck(t, error) {
  const body = error ? Buffer.from(JSON.stringify({ txpk_ack: { error } })) : Buffer.alloc(0);
  await send(pull, Buffer.concat([Buffer.from([2]), t, Buffer.from([5]), GW, body]));
}

function uplink(devAddr, nwk, app, fcnt, payload, confirmed, fopts) {
  return lp.fromFields({
    MType: confirmed ? "Confirmed Data Up" : "Unconfirmed Data Up",
    DevAddr: Buffer.from(devAddr, "hex"), FCnt: fcnt & 0xffff, FPort: 1, payload: Buffer.from(payload, "hex"),
    FOpts: fopts,
  }, Buffer.from(app, "hex"), Buffer.from(nwk, "hex"), undefined,
  Buffer.from([(fcnt >> 16) & 0xff, (fcnt >> 24) & 0xff])).getPHYPayload();
}

async function join(devNonce) {
  const req = lp.fromFields({ MType: "Join Request", AppEUI: Buffer.from(OTAA.joinEui, "hex"),
    DevEUI: Buffer.from(OTAA.devEui, "hex"), DevNonce: Buffer.from(devNonce, "hex") },
  undefined, undefined, Buffer.from(OTAA.appKey, "hex"));
  const tmst = 1000000;
  const resp = pullResp(8000);
  await pushFrame(req.getPHYPayload(), GW, tmst, -50, 7.5);
  const r = await resp;
  await txAck(r.token, null);
  const accept = lp.fromWire(Buffer.from(r.txpk.data, "base64"));
  const clear = lp.fromWire(lp.decryptJoinAccept(accept, Buffer.from(OTAA.appKey, "hex")));
  const micOk = lp.verifyMIC(clear, undefined, Buffer.from(OTAA.appKey, "hex"));
  const keys = lp.generateSessionKeys10(Buffer.from(OTAA.appKey, "hex"), clear.NetID, clear.AppNonce, Buffer.from(devNonce, "hex"));
  out({ step: "join", delay_us: (r.txpk.tmst - tmst) >>> 0, freq: r.txpk.freq, datr: r.txpk.datr, powe: r.txpk.powe,
    ipol: r.txpk.ipol, mic_ok: micOk, dev_addr: clear.DevAddr.toString("hex"), cflist: clear.CFList.toString("hex"),
    dl_settings: clear.DLSettings.toString("hex"), rx_delay: clear.RxDelay.toString("hex"),
    nwk_skey: keys.NwkSKey.toString("hex"), app_skey: keys.AppSKey.toString("hex") });
  return { devAddr: clear.DevAddr.toString("hex"), nwk: keys.NwkSKey.toString("hex"), app: keys.AppSKey.toString("hex") };
}

async function main() {
  await new Promise((r) => push.bind(0, "127.0.0.1", r));
  await new Promise((r) => pull.bind(0, "127.0.0.1", r));
  await pullData();
  out({ step: "pull_ack" });
  if (scenario === "join") {
    const s = await join("0102");
    // A second packet forwarder comes up (its keepalive makes it live, so
    // the server waits for its copy), then a data uplink with the derived
    // session keys, heard by both.
    await pullData(GW2);
    const up = uplink(s.devAddr, s.nwk, s.app, 1, "0367011003680a", false);
    await pushFrame(up, GW, 2000000, -60, 5.0);
    await pushFrame(up, GW2, 2000100, -90, -3.0);
    out({ step: "otaa_uplink" });
    // The same DevNonce again: replayed, no answer.
    const req = lp.fromFields({ MType: "Join Request", AppEUI: Buffer.from(OTAA.joinEui, "hex"),
      DevEUI: Buffer.from(OTAA.devEui, "hex"), DevNonce: Buffer.from("0102", "hex") },
    undefined, undefined, Buffer.from(OTAA.appKey, "hex"));
    await pushFrame(req.getPHYPayload(), GW, 3000000, -50, 7.5);
    out({ step: "replayed_join" });
  } else if (scenario === "abp") {
    const fcnt = Number(process.argv[4] || "1");
    const confirmed = process.argv[5] === "confirmed";
    const resp = confirmed ? pullResp(4000) : null;
    await pushFrame(uplink(ABP.devAddr, ABP.nwkSKey, ABP.appSKey, fcnt, "0167011003680a", confirmed), GW, 5000000, -70, 6.0);
    if (resp) {
      const r = await resp;
      const down = lp.fromWire(Buffer.from(r.txpk.data, "base64"));
      await txAck(r.token, null);
      out({ step: "ack", delay_us: (r.txpk.tmst - 5000000) >>> 0, freq: r.txpk.freq, datr: r.txpk.datr,
        ack: down.getFCtrlACK(), mic_ok: lp.verifyMIC(down, Buffer.from(ABP.nwkSKey, "hex")), fcnt: down.getFCnt() });
    }
    out({ step: "abp_uplink", fcnt });
  } else if (scenario === "confirmed") {
    const from = Number(process.argv[4]), to = Number(process.argv[5]);
    for (let fcnt = from; fcnt <= to; fcnt++) {
      // Cayenne LPP: channel 1, temperature (0x67), fcnt °C in 0.1 °C.
      const lpp = Buffer.from([0x01, 0x67, 0, 0]); lpp.writeInt16BE(fcnt * 10, 2);
      const tmst = 10000000 + fcnt * 1000;
      const resp = pullResp(3000);
      await pushFrame(uplink(ABP.devAddr, ABP.nwkSKey, ABP.appSKey, fcnt, lpp.toString("hex"), true), GW, tmst, -70, 6.0);
      const r = await resp;
      const down = lp.fromWire(Buffer.from(r.txpk.data, "base64"));
      if (!down.getFCtrlACK()) fail("no ACK for " + fcnt);
      if (!lp.verifyMIC(down, Buffer.from(ABP.nwkSKey, "hex"))) fail("bad MIC on the ACK of " + fcnt);
      await txAck(r.token, null);
      out({ step: "acked", fcnt, delay_us: (r.txpk.tmst - tmst) >>> 0 });
    }
  } else if (scenario === "linkcheck" || scenario === "downlink") {
    const fcnt = Number(process.argv[4]);
    const tmst = 7000000;
    const resp = pullResp(4000);
    const fopts = scenario === "linkcheck" ? Buffer.from([0x02]) : undefined;
    await pushFrame(uplink(ABP.devAddr, ABP.nwkSKey, ABP.appSKey, fcnt, "0167011003680a", false, fopts), GW, tmst, -70, 6.0);
    const r = await resp;
    const down = lp.fromWire(Buffer.from(r.txpk.data, "base64"));
    const clear = down.FRMPayload && down.FRMPayload.length > 0
      ? lp.decrypt(down, Buffer.from(ABP.appSKey, "hex"), Buffer.from(ABP.nwkSKey, "hex")) : Buffer.alloc(0);
    await txAck(r.token, null);
    out({ step: scenario, delay_us: (r.txpk.tmst - tmst) >>> 0, freq: r.txpk.freq, datr: r.txpk.datr,
      mtype: down.getMType(), mic_ok: lp.verifyMIC(down, Buffer.from(ABP.nwkSKey, "hex")),
      fopts: down.FOpts.toString("hex"), fport: down.getFPort(), payload: clear.toString("hex") });
  } else if (scenario === "stat") {
    const t = tok();
    const stat = { time: "2026-11-30 12:00:00 GMT", lati: 46.24, long: 3.2523, alti: 145, rxnb: 12, rxok: 10,
      rxfw: 9, ackr: 100.0, dwnb: 3, txnb: 2 };
    const ack = expect(push, (m) => m.length === 4 && m[3] === 1 && m[1] === t[0] && m[2] === t[1], 2000, "PUSH_ACK of stat");
    await send(push, Buffer.concat([Buffer.from([2]), t, Buffer.from([0]), GW, Buffer.from(JSON.stringify({ stat }))]));
    await ack;
    out({ step: "stat" });
  } else if (scenario === "bad") {
    // Wrong MIC, unknown DevAddr, truncated frame, invalid JSON, wrong version, garbage.
    const good = uplink(ABP.devAddr, ABP.nwkSKey, ABP.appSKey, 50, "0167011003680a", false);
    const badMic = Buffer.from(good); badMic[badMic.length - 1] ^= 0xff;
    await pushFrame(badMic, GW, 1, -70, 6.0);
    await pushFrame(uplink("26ffffff", ABP.nwkSKey, ABP.appSKey, 1, "00", false), GW, 2, -70, 6.0);
    await pushFrame(good.slice(0, 9), GW, 3, -70, 6.0);
    const t = tok();
    const ack = expect(push, (m) => m.length === 4 && m[3] === 1 && m[1] === t[0], 2000, "PUSH_ACK of bad JSON");
    await send(push, Buffer.concat([Buffer.from([2]), t, Buffer.from([0]), GW, Buffer.from("{\"rxpk\":[")]));
    await ack;
    await send(push, Buffer.concat([Buffer.from([1]), tok(), Buffer.from([0]), GW, Buffer.from("{}")]));
    await send(push, Buffer.concat([Buffer.from([2]), tok(), Buffer.from([9])]));
    await send(push, Buffer.from("garbage!"));
    out({ step: "bad_sent" });
  }
  push.close(); pull.close();
}
main().catch((e) => fail(String(e && e.stack || e)));
