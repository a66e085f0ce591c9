// Providers and keys from /v1/admin/providers: rate use against each key's RPM, calls in flight
// against concurrency, the AIMD-adapted concurrency, cooldowns and rests, 429s, the last error.
import { h, fill } from './dom.js';
import { num, time } from './format.js';
import { t } from './i18n.js';

function meter(used, limit) {
  const ratio = limit > 0 ? Math.min(1, used / limit) : 0;
  const level = ratio >= 0.9 ? 'hot' : ratio >= 0.6 ? 'warm' : 'ok';
  return h(
    'div',
    { class: 'meter' },
    h('span', { class: 'n' }, `${num(used)} / ${num(limit)}`),
    h('div', { class: `bar ${level}` }, h('i', { style: `width:${(ratio * 100).toFixed(1)}%` })),
  );
}

function inFlight(f) {
  return f.admitted + f.running;
}

function until(key) {
  const parts = [];
  if (key.cooldown_until) parts.push(`cooldown ${t('pv.until', { time: time(key.cooldown_until) })}`);
  if (key.rest_until) parts.push(`rest ${t('pv.until', { time: time(key.rest_until) })}`);
  return parts.length ? h('span', { class: 'warn' }, parts.join(' · ')) : '–';
}

function keyRow(provider, key) {
  return h(
    'tr',
    { dataset: { key: `${provider.name}/${key.id}` }, class: key.disabled ? 'disabled' : undefined },
    h('td', {}, key.id, key.disabled ? h('span', { class: 'tag' }, t('pv.disabled')) : ''),
    h('td', {}, meter(key.requests_last_minute, key.rpm)),
    h('td', {}, meter(inFlight(key.in_flight), key.concurrency)),
    h(
      'td',
      { class: `n ${key.rate_limited_last_minute > 0 ? 'warn' : ''}` },
      `${num(key.rate_limited_last_minute)} · ${num(key.rate_limited_total)}`,
    ),
    h('td', { class: `n ${key.errors_last_minute > 0 ? 'warn' : ''}` }, num(key.errors_last_minute)),
    h('td', {}, until(key)),
    h(
      'td',
      { class: 'error-cell', title: key.last_error?.message ?? '' },
      key.last_error
        ? `${time(key.last_error.at)} ${key.last_error.outcome}: ${key.last_error.message}`
        : '–',
    ),
  );
}

export function renderProviders(root, { providers }) {
  fill(
    root,
    providers.map((p) =>
      h(
        'article',
        { class: 'provider', dataset: { provider: p.name } },
        h(
          'header',
          {},
          h('h2', {}, p.name),
          h('span', { class: 'tag' }, p.type),
          h('span', { class: 'spacer' }),
          h('span', {}, t('pv.concurrency')),
          meter(inFlight(p.in_flight), p.concurrency),
          h(
            'span',
            { class: p.effective_concurrency < p.concurrency ? 'warn' : 'muted' },
            t('pv.effective', { n: num(p.effective_concurrency) }),
          ),
        ),
        h(
          'table',
          { class: 'grid' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['pv.key', 'pv.rpm', 'pv.inflight', 'pv.429', 'pv.errors', 'pv.cooldown', 'pv.last_error'].map(
                (k) => h('th', {}, t(k)),
              ),
            ),
          ),
          h(
            'tbody',
            {},
            p.keys.map((k) => keyRow(p, k)),
          ),
        ),
      ),
    ),
  );
}
