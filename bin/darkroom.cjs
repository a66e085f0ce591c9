#!/usr/bin/env node
// The `darkroom` command: sizes libuv's threadpool (bin/threadpool.cjs) before anything starts it,
// which only a CommonJS entry can do, then runs the program (bin/darkroom.js).
'use strict';
require('./threadpool.cjs');
import('./darkroom.js');
