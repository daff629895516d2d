// The audit verifier compiled to WebAssembly (audit/wasm), loaded the way
// the DPO console will load it in a browser (audit/wasm/verify.mjs, the
// plain WebAssembly API), checks exports the real server wrote: a good one
// verifies, a later one extends the checkpoint kept from the first, and a
// copy cut back to fewer entries — which verifies on its own — fails
// against the kept checkpoint; an altered entry fails outright.
//
// Run: CLOISTER_BIN=target/debug/cloister CLOISTER_AUDIT_WASM=<path> node --test tests/js/audit-wasm.test.mjs
// (scripts/test-js.sh builds both and sets them.)

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadVerifier } from "../../audit/wasm/verify.mjs";

const BIN = process.env.CLOISTER_BIN ?? "";
const WASM = process.env.CLOISTER_AUDIT_WASM ?? "";

test("the WebAssembly verifier checks the server's audit exports and catches a rollback", async () => {
  assert.ok(BIN, "set CLOISTER_BIN to the cloister binary");
  assert.ok(WASM, "set CLOISTER_AUDIT_WASM to the verifier's .wasm (scripts/build-audit-wasm.sh)");
  const verifier = await loadVerifier(readFileSync(WASM));
  const dir = mkdtempSync(join(tmpdir(), "cloister-audit-wasm-"));
  try {
    const env = { ...process.env, CLOISTER_DATA_DIR: join(dir, "data"), NO_COLOR: "1" };
    const cloister = (...args) => execFileSync(BIN, args, { env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    const key = cloister("audit", "key").trim().split("\n").pop();
    const exportNow = (name) => {
      const path = join(dir, name);
      cloister("audit", "export", "--out", path);
      return readFileSync(path);
    };

    // Each export is itself audited and checkpointed: 1, then 3 entries.
    const first = exportNow("first.json");
    const report = verifier.verify(first, key);
    assert.equal(report.ok, true, JSON.stringify(report));
    assert.equal(report.entries, 1);
    const kept = report.latest_note;
    assert.ok(kept, "a checkpoint note to keep");
    exportNow("second.json");
    const third = exportNow("third.json");
    const later = verifier.verify(third, key, kept);
    assert.equal(later.ok, true, JSON.stringify(later));
    assert.equal(later.entries, 3);
    const keptNow = later.latest_note;

    // Someone with the database cuts the log back to its first entry and
    // drops the later checkpoints: consistent in itself…
    const cut = JSON.parse(third.toString("utf8"));
    cut.entries = cut.entries.slice(0, 1);
    cut.checkpoints = cut.checkpoints.filter((c) => Number(c.note.split("\n")[1]) <= 1);
    const cutBytes = Buffer.from(JSON.stringify(cut));
    assert.equal(verifier.verify(cutBytes, key).ok, true, "the cut log is consistent on its own");
    // …but not with what the DPO kept.
    const rolledBack = verifier.verify(cutBytes, key, keptNow);
    assert.equal(rolledBack.ok, false);
    assert.match(rolledBack.failures.join("\n"), /truncated|rolled back|fewer/i, JSON.stringify(rolledBack));

    // An altered entry fails, and so does another log's key.
    const altered = JSON.parse(third.toString("utf8"));
    altered.entries[1].action = "login";
    const alteredReport = verifier.verify(Buffer.from(JSON.stringify(altered)), key);
    assert.equal(alteredReport.ok, false, JSON.stringify(alteredReport));
    assert.equal(verifier.verify(third, key.replace(/.$/, (c) => (c === "A" ? "B" : "A"))).ok, false);
    assert.match(verifier.verify(Buffer.from("not json"), key).failures[0], /not an audit export/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
