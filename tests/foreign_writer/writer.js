// A runjournal writer in another language, written from docs/format.md alone (no runjournal code).
//
//   node writer.js ROOT RUN_ID finish         a whole run: a step, then a fan-out whose third item is killed: failed
//   node writer.js ROOT RUN_ID hold [SECS]    start a run, print "ready", then heartbeat every SECS until killed
//
// With WRITER_RAW_BOOT_ID=1 the boot id is written as the file gives it, trailing newline
// included (a writer that did not strip it): readers compare boot ids normalised.
//
// Node has no flock(2): as docs/format.md section 10 says for such runtimes, the lock is taken
// by util-linux flock(1) on the file descriptor we pass it. The lock belongs to the open file
// description, which this process keeps open, so it lasts until we exit or die.
"use strict";
const fs = require("node:fs");
const os = require("node:os");
const { createHash, randomBytes } = require("node:crypto");
const { spawnSync } = require("node:child_process");

const [root, runId, mode, secs] = process.argv.slice(2);
const GENESIS = "0".repeat(64);
const heartbeatSeconds = Number(secs || 30);

function encodeLine(event, prevH) {
  const body = JSON.stringify(event).slice(0, -1); // drop the closing "}"
  const h = createHash("sha256").update(prevH, "ascii").update(body, "utf8").digest("hex");
  return [Buffer.from(`${body},"h":"${h}"}\n`, "utf8"), h];
}

// UTC, exactly six fractional digits: toISOString() gives milliseconds.
const now = () => new Date().toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");

function startTicks() {
  const stat = fs.readFileSync("/proc/self/stat", "utf8");
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // field 3 onwards
  return Number(rest[19]); // field 22
}

function rawBootId() {
  const text = fs.readFileSync("/proc/sys/kernel/random/boot_id", "ascii");
  return process.env.WRITER_RAW_BOOT_ID === "1" ? text : text.trim();
}

function lockExclusive(fd) {
  const result = spawnSync("flock", ["--exclusive", "--nonblock", "3"], { stdio: ["ignore", "inherit", "inherit", fd] });
  if (result.status !== 0) throw new Error(`cannot lock the run file (flock exited ${result.status})`);
}

const runs = `${root}/runs`;
fs.mkdirSync(runs, { recursive: true, mode: 0o700 });
fs.chmodSync(root, 0o700);
fs.chmodSync(runs, 0o700);
const C = fs.constants;
const tmp = `${runs}/.${runId}.creating-${process.pid}-${randomBytes(4).toString("hex")}`;
const fd = fs.openSync(tmp, C.O_RDWR | C.O_CREAT | C.O_EXCL | C.O_APPEND | C.O_NOFOLLOW, 0o600);
lockExclusive(fd);

let prev = GENESIS;
let seq = 0;
function append(type, fields, sync = true) {
  const [line, h] = encodeLine({ v: 1, run_id: runId, seq, ts: now(), type, ...fields }, prev);
  if (fs.writeSync(fd, line) !== line.length) throw new Error("short write");
  if (sync) fs.fdatasyncSync(fd);
  prev = h;
  seq += 1;
}

const items = ["eu", "us", "ap"];
append("started", {
  workflow: "node-deploy",
  steps: [{ name: "build", items: null }, { name: "ship", items }],
  inputs: { version: "1.4.2" },
  writer: {
    host: os.hostname(),
    boot_id: rawBootId(),
    pid: process.pid,
    start_ticks: startTicks(),
    argv: process.argv,
    user: os.userInfo().username,
    tool_version: "node-writer 1.0",
  },
  heartbeat_interval: heartbeatSeconds,
});
fs.linkSync(tmp, `${runs}/${runId}.jsonl`);
fs.unlinkSync(tmp);
const dir = fs.openSync(runs, C.O_RDONLY);
fs.fsyncSync(dir);
fs.closeSync(dir);

append("step-progress", { step: "build", state: "started" });
append("step-progress", { step: "build", state: "succeeded", exit_code: 0 });
append("step-progress", { step: "ship", state: "started", done: 0, total: items.length });

if (mode === "hold") {
  append("step-progress", { step: "ship", state: "started", item: "eu", item_state: "started", done: 0, total: 3 });
  append("heartbeat", {}, false);
  process.stdout.write("ready\n");
  setInterval(() => append("heartbeat", {}, false), heartbeatSeconds * 1000);
} else {
  items.forEach((item, index) => {
    append("step-progress", { step: "ship", state: "started", item, item_state: "started", done: index, total: 3 });
    // a command killed by SIGTERM (signal 15) is recorded as 128 + 15, as a shell reports it
    const code = item === "ap" ? 143 : 0;
    append("step-progress", { step: "ship", state: "started", item, item_state: code === 0 ? "succeeded" : "failed",
                              done: index + 1, total: 3, exit_code: code, message: code ? "killed by SIGTERM" : null });
  });
  append("step-progress", { step: "ship", state: "failed", done: 3, total: 3, exit_code: 143 });
  append("failed", { reason: "step-failed", step: "ship", exit_code: 143, message: "item 'ap': killed by SIGTERM" });
  fs.closeSync(fd);
}
