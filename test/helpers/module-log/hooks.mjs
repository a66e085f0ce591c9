// Module hooks (node:module register) that append the URL of every module loaded through the
// ES module loader to the file named at registration: which packages a process really loads.
import { appendFileSync } from 'node:fs';

let file;

export function initialize(data) {
  file = data.file;
}

export async function load(url, context, next) {
  appendFileSync(file, `${url}\n`);
  return next(url, context);
}
