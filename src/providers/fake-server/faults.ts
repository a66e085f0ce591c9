import { FAULTS, type Fault } from './types.ts';

interface QueuedFault {
  fault: Fault;
  /** Key id the fault is reserved for; undefined matches any key. */
  keyId: string | undefined;
}

/** Scripted faults of one simulated provider, applied in order to the next matching requests. */
export class FaultQueue {
  private queue: QueuedFault[] = [];

  add(faults: Fault[], keyId?: string): void {
    for (const fault of faults) this.queue.push({ fault, keyId });
  }

  peek(keyId: string): Fault | undefined {
    return this.queue.find((entry) => matches(entry, keyId))?.fault;
  }

  take(keyId: string): Fault | undefined {
    const index = this.queue.findIndex((entry) => matches(entry, keyId));
    if (index < 0) return undefined;
    const [entry] = this.queue.splice(index, 1);
    return entry?.fault;
  }

  clear(): void {
    this.queue = [];
  }

  get size(): number {
    return this.queue.length;
  }
}

function matches(entry: QueuedFault, keyId: string): boolean {
  return entry.keyId === undefined || entry.keyId === keyId;
}

export function isFault(value: unknown): value is Fault {
  return typeof value === 'string' && (FAULTS as readonly string[]).includes(value);
}
