// The stdio loop shared by v3.mjs and v2.mjs (driven by tests/tests/authing_sdk.rs).
//
// The test writes one JSON command per line on stdin, `{"seq": 1, "op": "gene", ...args}`;
// the script runs the SDK call and answers one JSON line on stdout, `{"seq": 1, "ok": true,
// "result": {...}}` or `{"seq": 1, "ok": false, "error": {...}}`. Callbacks of the SDK (the V2
// polling) print `{"event": "scanned", ...}` lines in between. Commands run one at a time, in
// order. The script ends when stdin closes, or after --timeout milliseconds.

import { createInterface } from 'node:readline';

/** `--name value` pairs of argv, with AUTHING_* environment variables as defaults. */
export function options(argv = process.argv.slice(2)) {
  const opts = {
    'app-host': process.env.AUTHING_APP_HOST,
    'app-id': process.env.AUTHING_APP_ID,
    'user-pool-id': process.env.AUTHING_USER_POOL_ID,
    timeout: '30000',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i];
    const value = argv[i + 1];
    if (!name.startsWith('--') || value === undefined) {
      throw new Error(`usage: node ${process.argv[1]} --app-host URL --app-id ID [--name value …]; got ${name}`);
    }
    opts[name.slice(2)] = value;
  }
  for (const required of ['app-host', 'app-id']) {
    if (!opts[required]) throw new Error(`--${required} (or its AUTHING_* variable) is required`);
  }
  // The secret comes from the environment only, so that it never shows in a process list.
  opts.secret = process.env.AUTHING_APP_SECRET || undefined;
  return opts;
}

/** Prints one JSON line. */
export function print(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** Prints an event line (an SDK callback). */
export function emit(event, data = {}) {
  print({ event, ...data });
}

/** The sorted keys of an object (what a response carried), or null. */
export function fields(value) {
  return value && typeof value === 'object' ? Object.keys(value).sort() : null;
}

/**
 * What an SDK threw, without anything that could hold a secret (axios errors carry the
 * request's headers: only their message and HTTP status are kept).
 */
export function describe(error) {
  if (error && typeof error === 'object' && 'code' in error && 'message' in error && !(error instanceof Error)) {
    // authing-js-sdk's default onError throws `{ code, message, data }` (the V2 envelope).
    return { sdkError: { code: error.code, message: error.message } };
  }
  if (error instanceof Error) {
    const out = { message: error.message };
    if (error.response) out.httpStatus = error.response.status;
    if (error.code) out.errorCode = error.code;
    return out;
  }
  return { message: String(error) };
}

/** Runs the command loop with `handlers` (op → async function of the command). */
export function serve(handlers, opts) {
  const timer = setTimeout(() => {
    print({ event: 'timeout', error: `no end within ${opts.timeout} ms` });
    process.exit(2);
  }, Number(opts.timeout));
  timer.unref();
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  let queue = Promise.resolve();
  lines.on('line', (line) => {
    if (!line.trim()) return;
    queue = queue.then(async () => {
      let command;
      try {
        command = JSON.parse(line);
      } catch (e) {
        print({ seq: null, ok: false, error: { message: `not a JSON command: ${e.message}` } });
        return;
      }
      const { seq, op, ...args } = command;
      const handler = handlers[op];
      if (!handler) {
        print({ seq, ok: false, error: { message: `unknown op ${op}` } });
        return;
      }
      try {
        print({ seq, ok: true, result: await handler(args) });
      } catch (e) {
        print({ seq, ok: false, error: describe(e) });
      }
    });
  });
  lines.on('close', () => {
    queue.then(() => process.exit(0));
  });
  print({ event: 'ready' });
}
