// The audit log's verifier in the browser (or Node): loads the WebAssembly
// module built from audit/wasm (scripts/build-audit-wasm.sh) with the
// standard WebAssembly API — no glue library, no imports — and verifies
// exports with it, so a DPO need not trust the server that made them.
//
//   const verifier = await loadVerifier(await (await fetch("audit.wasm")).arrayBuffer());
//   const report = verifier.verify(exportBytes, logPublicKey, keptCheckpointNote,
//                                  witnessKeys, minWitnesses);
//   // report.ok, report.failures, report.latest_note (keep it for next time),
//   // report.witnessed_by

export async function loadVerifier(wasmBytes) {
  const { instance } = await WebAssembly.instantiate(wasmBytes, {});
  const m = instance.exports;
  const encoder = new TextEncoder();
  const put = (bytes) => {
    const ptr = m.cloister_audit_alloc(bytes.length);
    new Uint8Array(m.memory.buffer, ptr, bytes.length).set(bytes);
    return [ptr, bytes.length];
  };
  return {
    /** Verify an export (bytes of its JSON) against the log's key, a kept
     * checkpoint when given, and `minWitnesses` cosignatures (by default one
     * when witness keys are given) from `witnesses` on its newest checkpoint. */
    verify(exportBytes, key, trusted = "", witnesses = [], minWitnesses = witnesses.length ? 1 : 0) {
      const inputs = [
        put(exportBytes),
        put(encoder.encode(key)),
        put(encoder.encode(trusted)),
        put(encoder.encode(witnesses.join("\n"))),
      ];
      const lenPtr = m.cloister_audit_alloc(4);
      const [e, k, t, w] = inputs;
      const ptr = m.cloister_audit_verify(...e, ...k, ...t, ...w, minWitnesses >>> 0, lenPtr);
      const len = new DataView(m.memory.buffer).getUint32(lenPtr, true);
      const text = new TextDecoder().decode(new Uint8Array(m.memory.buffer, ptr, len));
      for (const [p, l] of [...inputs, [lenPtr, 4], [ptr, len]]) m.cloister_audit_free(p, l);
      return JSON.parse(text);
    },
  };
}
