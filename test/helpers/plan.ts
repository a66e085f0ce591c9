/** A node of `EXPLAIN (ANALYZE, FORMAT JSON)` output, as the plan-shape tests read it. */
export interface PlanNode {
  'Node Type'?: string;
  'Relation Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  Plans?: PlanNode[];
}

/** Rows every scan of `relation` touched: returned plus removed by its filter, over all loops. */
export function rowsTouched(node: PlanNode, relation: string): number {
  let n = 0;
  if (node['Relation Name'] === relation)
    n += ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0)) * (node['Actual Loops'] ?? 1);
  for (const child of node.Plans ?? []) n += rowsTouched(child, relation);
  return n;
}

/** The relations the plan reads with a sequential scan. */
export function seqScans(node: PlanNode): string[] {
  const own = node['Node Type'] === 'Seq Scan' ? [node['Relation Name'] ?? '?'] : [];
  return [...own, ...(node.Plans ?? []).flatMap(seqScans)];
}
