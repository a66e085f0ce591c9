// The admin API as the page calls it: the key lives in sessionStorage only, sent as a Bearer header.
const KEY = 'darkroom.adminKey';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const session = {
  key: () => sessionStorage.getItem(KEY),
  set: (key) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

export async function api(path, { method = 'GET', body, key = session.key(), signal } = {}) {
  const headers = { authorization: `Bearer ${key ?? ''}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      signal,
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'network', String(error.message ?? error));
  }
  const text = await res.text();
  let json;
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = {};
  }
  if (!res.ok) {
    const err = json.error ?? {};
    throw new ApiError(res.status, err.code ?? `http_${res.status}`, err.message ?? res.statusText);
  }
  return json;
}

/** A route this server does not have (an older darkroom): a 404 that names no resource. */
export function isMissingRoute(error) {
  return error instanceof ApiError && error.status === 404 && error.code === 'not_found';
}

/**
 * Server-Sent Events over fetch, since EventSource cannot send an Authorization header.
 * Calls onEvent(name, data) for each event; resolves when the stream ends.
 */
export async function stream(path, onEvent, signal) {
  let res;
  try {
    res = await fetch(path, {
      headers: { authorization: `Bearer ${session.key() ?? ''}`, accept: 'text/event-stream' },
      cache: 'no-store',
      signal,
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'network', String(error.message ?? error));
  }
  if (!res.ok || !res.body) {
    const err = (await res.json().catch(() => ({}))).error ?? {};
    throw new ApiError(res.status, err.code ?? `http_${res.status}`, err.message ?? res.statusText);
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, JSON.parse(data.join('\n')));
    }
  }
}
