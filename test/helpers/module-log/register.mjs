// `node --import` this file with MODULE_LOG_FILE set: every ES module the process loads is
// appended to that file (hooks.mjs). Processes it starts inherit it through NODE_OPTIONS.
import { register } from 'node:module';
import process from 'node:process';
import { URL } from 'node:url';

if (process.env.MODULE_LOG_FILE)
  register(new URL('./hooks.mjs', import.meta.url), { data: { file: process.env.MODULE_LOG_FILE } });
