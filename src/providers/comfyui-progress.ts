/**
 * Overall progress of one ComfyUI prompt, as a fraction of its workflow's nodes.
 *
 * ComfyUI reports `progress {value, max, node}` per node (every sampler, upscaler or video node counts its
 * own steps from 1), so forwarding `value / max` as is goes back to the start at each such node. Here each
 * node of the workflow weighs the same: a node counts 1 once it has run (`executed`, a later `executing`,
 * listed in `execution_cached`, or `finished` in a `progress_state` message) and `value / max` while it
 * runs. Nodes ComfyUI reports that are not in the submitted workflow (expanded subgraph nodes) count nothing.
 * The answer never goes below an earlier one.
 */
import { isRecord } from './http-util.ts';

export class WorkflowProgress {
  private readonly nodes: ReadonlySet<string>;
  private readonly done = new Set<string>();
  private running: { node: string; fraction: number } | undefined;
  private reported = 0;

  constructor(nodeIds: Iterable<string>) {
    this.nodes = new Set(nodeIds);
  }

  /** Applies one websocket event of this prompt; returns the new overall fraction when it grew. */
  apply(type: unknown, data: Record<string, unknown>): number | undefined {
    if (type === 'execution_cached' && Array.isArray(data.nodes)) {
      for (const node of data.nodes) this.finishNode(String(node));
    } else if (type === 'executing') {
      if (data.node === null || data.node === undefined) this.finishAll();
      else this.start(String(data.node));
    } else if (type === 'executed' && data.node !== undefined) {
      this.finishNode(String(data.node));
    } else if (type === 'progress') {
      this.step(data.node, data.value, data.max);
    } else if (type === 'progress_state' && isRecord(data.nodes)) {
      for (const [node, state] of Object.entries(data.nodes)) {
        if (!isRecord(state)) continue;
        if (state.state === 'finished') this.finishNode(node);
        else if (state.state === 'running') this.step(node, state.value, state.max);
      }
    } else if (type === 'execution_success') {
      this.finishAll();
    } else {
      return undefined;
    }
    return this.grow();
  }

  /** The overall fraction reported so far (0..1). */
  get fraction(): number {
    return this.reported;
  }

  private start(node: string): void {
    if (this.running && this.running.node !== node) this.finishNode(this.running.node);
    if (this.running?.node !== node) this.running = { node, fraction: 0 };
  }

  private step(node: unknown, value: unknown, max: unknown): void {
    if (typeof value !== 'number' || typeof max !== 'number' || !(max > 0)) return;
    // Old servers send no node with progress: it belongs to the node that is executing.
    const id = node === undefined || node === null ? this.running?.node : String(node);
    if (id === undefined) return;
    this.start(id);
    if (this.running) this.running.fraction = Math.min(1, Math.max(0, value / max));
  }

  private finishNode(node: string): void {
    if (this.nodes.has(node)) this.done.add(node);
    if (this.running?.node === node) this.running = undefined;
  }

  private finishAll(): void {
    for (const node of this.nodes) this.done.add(node);
    this.running = undefined;
  }

  private grow(): number | undefined {
    if (this.nodes.size === 0) return undefined;
    const partial =
      this.running && this.nodes.has(this.running.node) && !this.done.has(this.running.node)
        ? this.running.fraction
        : 0;
    const fraction = Math.min(1, (this.done.size + partial) / this.nodes.size);
    if (fraction <= this.reported) return undefined;
    this.reported = fraction;
    return fraction;
  }
}
