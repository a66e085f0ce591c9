// libuv's threadpool (4 threads by default) runs sharp's image work, every fs call and each
// fsync; with tens of jobs in flight it becomes a queue. libuv reads UV_THREADPOOL_SIZE once,
// when the pool first starts, and Node reads an ES module entry through that pool: so this is
// CommonJS, loaded first (bin/darkroom.cjs, or `node --require ./bin/threadpool.cjs`).
// A size the user set is kept.
'use strict';
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = '16';
