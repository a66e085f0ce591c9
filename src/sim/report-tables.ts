import type { PlanReport } from './metrics.ts';

export type Cell = string | number;

export interface ReportTable {
  header: string[];
  rows: Cell[][];
}

export const pct = (x: number) => `${(x * 100).toFixed(0)}%`;

/** The provider, key and store tables of a report, shared by the text and HTML renderers. */
export function resourceTables(r: PlanReport): ReportTable[] {
  const tables: ReportTable[] = [
    {
      header: ['provider', 'capacity', 'busy', 'calls', '429s', 'min AIMD'],
      rows: r.providers.map((p) => [
        p.name,
        p.capacity,
        pct(p.utilisation),
        p.calls,
        p.rateLimited,
        p.minEffectiveConcurrency,
      ]),
    },
    {
      header: [
        'key',
        'rpm',
        'concurrency',
        'requests',
        '429s',
        'rpm use',
        'busy',
        'max in 60s',
        'max in flight',
      ],
      rows: r.providers.flatMap((p) =>
        p.keys.map((k) => [
          `${p.name}/${k.id}`,
          k.rpm,
          k.concurrency,
          k.requests,
          k.rateLimited,
          pct(k.rpmUse),
          pct(k.utilisation),
          k.maxIn60s,
          k.maxInFlight,
        ]),
      ),
    },
  ];
  if (r.stores.length) {
    tables.push({
      header: ['store', 'concurrency', 'jobs', 'images', 'busy'],
      rows: r.stores.map((st) => [st.name, st.concurrency, st.jobs, st.images, pct(st.utilisation)]),
    });
  }
  return tables;
}
