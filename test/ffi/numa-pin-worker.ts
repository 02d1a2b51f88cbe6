// Worker for numa.test.ts: pins itself to the node it is given and reports where it then runs.
import { currentCpu, numaNodeOfCpu, pinThreadToNode } from "../../ffi/numa/numa.ts";

declare const self: Worker;

self.onmessage = (e: MessageEvent<number>) => {
  try {
    pinThreadToNode(e.data);
    self.postMessage({ node: e.data, cpuNode: numaNodeOfCpu(currentCpu()) });
  } catch (err) {
    self.postMessage({ error: String(err) });
  }
};
