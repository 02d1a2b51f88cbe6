// --transport auto|tcp|udp|rdma: auto takes RDMA when a device is present and says which it chose.

import type { TransportKind } from "../base/transport-kind.ts";
import { rdmaDeviceAvailable } from "../transport/rdma.ts";
import { UsageError } from "./args.ts";
import { FatalError } from "./fatal-error.ts";

export function resolveTransport(choice: string, log: (line: string) => void): TransportKind {
  switch (choice) {
    case "tcp":
    case "udp":
      return choice;
    case "rdma": {
      const device = rdmaDeviceAvailable();
      if (device === null)
        throw new FatalError("--transport rdma: no RDMA device found (ibv_get_device_list returned none)");
      log(`hermes-kv: transport rdma on ${device}`);
      return "rdma";
    }
    case "auto": {
      const device = rdmaDeviceAvailable();
      log(
        device === null
          ? "hermes-kv: transport auto: no RDMA device, using tcp"
          : `hermes-kv: transport auto: using rdma on ${device}`,
      );
      return device === null ? "tcp" : "rdma";
    }
    default:
      throw new UsageError(`--transport must be auto, tcp, udp or rdma, not "${choice}"`);
  }
}
