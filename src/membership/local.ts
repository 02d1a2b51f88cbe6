// The in-process reliable membership for `hermes-kv local`: the process is the RM, so it is
// trivially reliable. It behaves like the real one: every member holds a lease it must keep
// renewing; a member that stops renewing is removed only after its lease has expired, with a new
// epoch; a member that comes back registers again (new epoch) and must load state before serving.

import type { NodeId } from "../base/ids.ts";
import { monotonicMs } from "../base/clock.ts";
import type { MemberInfo, Membership, MembershipView } from "./membership.ts";

export interface LocalRmOptions {
  leaseMs: number;
  /** How often live members' leases are renewed. */
  renewEveryMs: number;
  /** Removal waits this long past the lease end (clock drift allowance, as a real RM would). */
  removalMarginMs: number;
  log: (line: string) => void;
}

export const localRmDefaults: LocalRmOptions = {
  leaseMs: 1000,
  renewEveryMs: 100,
  removalMarginMs: 50,
  log: (line) => console.error(line),
};

class LocalMember implements Membership {
  readonly info: MemberInfo;
  readonly #rm: LocalRm;
  leaseUntil = 0;
  renewing = true;
  readonly listeners: ((view: MembershipView) => void)[] = [];

  constructor(rm: LocalRm, info: MemberInfo) {
    this.#rm = rm;
    this.info = info;
  }
  view(): MembershipView {
    return this.#rm.view();
  }
  leaseUntilMs(): number {
    return this.renewing && this.#rm.isMember(this.info.id) ? this.leaseUntil : 0;
  }
  onChange(listener: (view: MembershipView) => void): void {
    this.listeners.push(listener);
  }
  async close(): Promise<void> {
    // A stopped replica just stops renewing, like a crashed process: the RM removes it once its
    // lease has surely expired.
    this.renewing = false;
  }
}

export class LocalRm {
  readonly options: LocalRmOptions;
  #epoch = 0;
  readonly #members = new Map<NodeId, LocalMember>();
  readonly #timer: ReturnType<typeof setInterval>;
  changes = 0;

  constructor(options: Partial<LocalRmOptions> = {}) {
    this.options = { ...localRmDefaults, ...options };
    this.#timer = setInterval(() => this.#round(), this.options.renewEveryMs);
  }

  view(): MembershipView {
    const members = [...this.#members.values()].map((m) => m.info).sort((a, b) => a.id - b.id);
    return { epoch: this.#epoch, members };
  }

  isMember(id: NodeId): boolean {
    return this.#members.has(id);
  }

  /** Several members join in one epoch (the initial cluster). */
  registerAll(infos: MemberInfo[]): Membership[] {
    const handles = infos.map((info) => {
      if (this.#members.has(info.id)) throw new Error(`node ${info.id} is already a member`);
      const member = new LocalMember(this, info);
      member.leaseUntil = monotonicMs() + this.options.leaseMs;
      this.#members.set(info.id, member);
      return member;
    });
    this.#change(`members ${infos.map((i) => i.id).join(",")} joined`);
    return handles;
  }

  /** A member (re)joins: a new epoch that includes it. Its old registration must be gone. */
  register(info: MemberInfo): Membership {
    return this.registerAll([info])[0]!;
  }

  #round(): void {
    const now = monotonicMs();
    for (const member of this.#members.values()) {
      if (member.renewing) {
        member.leaseUntil = now + this.options.leaseMs;
      } else if (now > member.leaseUntil + this.options.removalMarginMs) {
        this.#members.delete(member.info.id);
        this.#change(`node ${member.info.id} removed (lease expired)`);
      }
    }
  }

  /** Resolves once `id` is no longer a member (its lease expired and the RM removed it). */
  async waitRemoved(id: NodeId): Promise<void> {
    while (this.#members.has(id)) await Bun.sleep(this.options.renewEveryMs);
  }

  #change(why: string): void {
    this.#epoch++;
    this.changes++;
    const view = this.view();
    this.options.log(`hermes-kv rm: epoch ${view.epoch} members [${view.members.map((m) => m.id).join(",")}]: ${why}`);
    for (const member of this.#members.values()) for (const listener of member.listeners) listener(view);
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
