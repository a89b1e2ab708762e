import assert from "node:assert/strict";
import { registeredImports, WASI_MODULES, type AbiVersion } from "../../wasm-filters/host/abi.js";
import { buildImports } from "../../wasm-filters/host/link.js";

// The imports table is assembled from the host-call groups in hostcalls/: a registered name
// without an implementation would link in Envoy but fail here only when a module calls it.
describe("wasm host: imports table", () => {
  for (const abi of ["0_1_0", "0_2_0", "0_2_1"] as AbiVersion[]) {
    it(`provides a function for exactly the imports Envoy registers for ABI ${abi}`, () => {
      const imports = buildImports(abi, { vm: null });
      const provided = new Set<string>();
      for (const [mod, fns] of Object.entries(imports)) {
        for (const [name, fn] of Object.entries(fns as Record<string, unknown>)) {
          assert.equal(typeof fn, "function", `${mod}.${name}`);
          provided.add(`${mod}.${name}`);
        }
      }
      assert.deepEqual([...provided].sort(), [...registeredImports(abi).keys()].sort());
      assert.deepEqual(Object.keys(imports).sort(), ["env", ...WASI_MODULES].sort());
    });
  }

  it("refuses host calls before the VM exists (start section), naming the function", () => {
    const env = buildImports("0_2_1", { vm: null }).env as Record<string, () => unknown>;
    assert.throws(() => env.proxy_log!(), /proxy_log called during instantiation/);
  });
});
