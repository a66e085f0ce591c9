import { currentLang } from './i18n.js';

const locale = () => (currentLang() === 'zh' ? 'zh-CN' : 'en-GB');

export function num(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return n.toLocaleString(locale(), { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '–';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function time(iso) {
  if (!iso) return '–';
  return new Date(iso).toLocaleTimeString(locale(), { hour12: false });
}

export function dateTime(iso) {
  if (!iso) return '–';
  return new Date(iso).toLocaleString(locale(), { hour12: false });
}

export function shortId(id) {
  return id.length > 13 ? `…${id.slice(-12)}` : id;
}
