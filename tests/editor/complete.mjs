// Drives a real yaml-language-server over LSP, as an editor would, to prove
// that the imagefile schema gives completion and hover.
//
// Usage: node tests/editor/complete.mjs <yaml-language-server> [<imagefile written by `kiln init`>]
//
// Every case is an in-memory imagefile that starts with a
// `# yaml-language-server: $schema=<relative path>` modeline, as the ones
// `kiln init` writes do, and whose URI lies in this folder, so the server
// resolves `../../schema/imagefile.schema.json` against the document, as it
// would in a user's checkout. `<|>` marks the cursor. With a second argument,
// the `init-*` cases open that file, whose modeline names the
// `.kiln/imagefile.schema.json` copy `kiln init` wrote beside it.
//
// Prints one JSON object on stdout, {case name: [labels...]}; hover cases
// give [the hover text]. Exits non-zero on any failure. Uses only Node's
// standard library.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const OVERALL_TIMEOUT_MS = 60_000;
// How long to wait for a document's first diagnostics (the sign that the
// server has loaded its schema) before asking anyway.
const DIAGNOSTICS_WAIT_MS = 10_000;
const SHUTDOWN_WAIT_MS = 5_000;
const CURSOR = '<|>';

const here = dirname(fileURLToPath(import.meta.url));
const MODELINE = '# yaml-language-server: $schema=../../schema/imagefile.schema.json';

// kind: 'completion' or 'hover'. Each case is its own document.
const CASES = [
  {
    name: 'top-level',
    kind: 'completion',
    text: `${MODELINE}\n${CURSOR}\n`,
  },
  {
    name: 'top-level-after-name',
    kind: 'completion',
    text: `${MODELINE}\nname: demo\n${CURSOR}\n`,
  },
  {
    name: 'base-keys',
    kind: 'completion',
    text: `${MODELINE}\nname: demo\nbase:\n  ${CURSOR}\n`,
  },
  {
    name: 'base-keys-after-distro',
    kind: 'completion',
    text: `${MODELINE}\nname: demo\nbase:\n  distro: debian\n  ${CURSOR}\n`,
  },
  {
    name: 'partition-keys',
    kind: 'completion',
    text:
      `${MODELINE}\nname: demo\nbase:\n  distro: debian\n  release: bookworm\n` +
      `disk:\n  table: gpt\n  partitions:\n    - ${CURSOR}\n`,
  },
  {
    name: 'partition-keys-after-name',
    kind: 'completion',
    text:
      `${MODELINE}\nname: demo\nbase:\n  distro: debian\n  release: bookworm\n` +
      `disk:\n  table: gpt\n  partitions:\n    - name: root\n      ${CURSOR}\n`,
  },
  {
    name: 'distro-value',
    kind: 'completion',
    text: `${MODELINE}\nname: demo\nbase:\n  distro: ${CURSOR}\n`,
  },
  {
    name: 'arch-value',
    kind: 'completion',
    text: `${MODELINE}\nname: demo\nbase:\n  distro: debian\n  arch: ${CURSOR}\n`,
  },
  {
    name: 'table-value',
    kind: 'completion',
    text: `${MODELINE}\nname: demo\nbase:\n  distro: debian\ndisk:\n  table: ${CURSOR}\n`,
  },
  {
    name: 'filesystem-value',
    kind: 'completion',
    text:
      `${MODELINE}\nname: demo\nbase:\n  distro: debian\n` +
      `disk:\n  table: gpt\n  partitions:\n    - name: root\n      filesystem: ${CURSOR}\n`,
  },
  {
    name: 'partition-type-value',
    kind: 'completion',
    text:
      `${MODELINE}\nname: demo\nbase:\n  distro: debian\n` +
      `disk:\n  table: gpt\n  partitions:\n    - name: esp\n      type: ${CURSOR}\n`,
  },
  {
    name: 'outputs-item',
    kind: 'completion',
    text: `${MODELINE}\nname: demo\nbase:\n  distro: debian\noutputs:\n  - ${CURSOR}\n`,
  },
  {
    name: 'hover-mirror',
    kind: 'hover',
    text: `${MODELINE}\nname: demo\nbase:\n  distro: debian\n  mir${CURSOR}ror: http://archive.invalid/debian\n`,
  },
  {
    name: 'hover-source-date-epoch',
    kind: 'hover',
    text: `${MODELINE}\nname: demo\nsource_date${CURSOR}_epoch: 0\n`,
  },
  {
    // A control: the same document with a modeline naming a schema that does
    // not exist must complete none of kiln's keys, or the cases above would
    // prove nothing about the modeline.
    name: 'control-missing-schema',
    kind: 'completion',
    text: `# yaml-language-server: $schema=./no-such-dir/imagefile.schema.json\n${CURSOR}\n`,
  },
];

/** Cases built from an imagefile `kiln init` wrote, left in place on disk. */
function initCases(path) {
  const original = readFileSync(path, 'utf8');
  const uri = pathToFileURL(path).href;
  const distro = original.replace(/^( {2}distro: )\S+$/m, `$1${CURSOR}`);
  if (!distro.includes(CURSOR)) {
    throw new Error(`${path} has no "  distro:" line to complete`);
  }
  const name = original.replace(/^name:/m, `na${CURSOR}me:`);
  if (!name.includes(CURSOR)) {
    throw new Error(`${path} has no "name:" line to hover over`);
  }
  return [
    { name: 'init-top-level', kind: 'completion', uri, text: `${original}${CURSOR}\n` },
    { name: 'init-distro-value', kind: 'completion', uri, text: distro },
    // The hover names the schema file it came from: the `.kiln/` copy.
    { name: 'init-hover-name', kind: 'hover', uri, text: name },
  ];
}

/** Splits a case's text at the cursor marker into text and an LSP position. */
function placeCursor(marked) {
  const at = marked.indexOf(CURSOR);
  if (at < 0 || marked.indexOf(CURSOR, at + 1) >= 0) {
    throw new Error(`case text must hold exactly one ${CURSOR}: ${JSON.stringify(marked)}`);
  }
  const before = marked.slice(0, at);
  const lines = before.split('\n');
  return {
    text: before + marked.slice(at + CURSOR.length),
    // LSP characters are UTF-16 code units, which is what JS string length counts.
    position: { line: lines.length - 1, character: lines[lines.length - 1].length },
  };
}

/** A JSON-RPC connection to a child process over Content-Length framing. */
class Connection {
  constructor(child, onServerRequest) {
    this.child = child;
    this.onServerRequest = onServerRequest;
    this.nextId = 1;
    this.pending = new Map();
    this.buffer = Buffer.alloc(0);
    this.notificationWaiters = [];
    this.closed = false;
    child.stdout.on('data', (chunk) => this.receive(chunk));
    // A server that dies makes writes fail with EPIPE; the 'exit' handler
    // below reports that, with the exit status, to whoever is waiting.
    child.stdin.on('error', () => {});
    child.on('exit', (code, signal) => {
      this.closed = true;
      const error = new Error(`yaml-language-server exited (code ${code}, signal ${signal})`);
      for (const { reject } of this.pending.values()) reject(error);
      this.pending.clear();
    });
  }

  write(message) {
    const body = Buffer.from(JSON.stringify({ jsonrpc: '2.0', ...message }), 'utf8');
    this.child.stdin.write(`Content-Length: ${body.length}\r\n\r\n`);
    this.child.stdin.write(body);
  }

  request(method, params) {
    if (this.closed) return Promise.reject(new Error(`server gone before ${method}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.write({ id, method, params });
    });
  }

  notify(method, params) {
    this.write({ method, params });
  }

  /** Resolves with the params of the first notification `accept` takes, or null on timeout. */
  waitForNotification(accept, timeoutMs) {
    return new Promise((resolve) => {
      const waiter = { accept, resolve };
      const timer = setTimeout(() => {
        this.notificationWaiters = this.notificationWaiters.filter((w) => w !== waiter);
        resolve(null);
      }, timeoutMs);
      waiter.resolve = (params) => {
        clearTimeout(timer);
        resolve(params);
      };
      this.notificationWaiters.push(waiter);
    });
  }

  receive(chunk) {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const headerEnd = this.buffer.indexOf('\r\n\r\n');
      if (headerEnd < 0) return;
      const header = this.buffer.subarray(0, headerEnd).toString('ascii');
      const match = /Content-Length: *(\d+)/i.exec(header);
      if (!match) throw new Error(`LSP header without Content-Length: ${header}`);
      const length = Number(match[1]);
      const start = headerEnd + 4;
      if (this.buffer.length < start + length) return;
      const body = this.buffer.subarray(start, start + length).toString('utf8');
      this.buffer = this.buffer.subarray(start + length);
      this.dispatch(JSON.parse(body));
    }
  }

  dispatch(message) {
    if (message.id !== undefined && message.method === undefined) {
      const waiting = this.pending.get(message.id);
      if (!waiting) return;
      this.pending.delete(message.id);
      if (message.error) {
        waiting.reject(new Error(`${waiting.method} failed: ${JSON.stringify(message.error)}`));
      } else {
        waiting.resolve(message.result);
      }
    } else if (message.id !== undefined) {
      let result = null;
      try {
        result = this.onServerRequest(message.method, message.params);
      } catch (error) {
        this.write({ id: message.id, error: { code: -32603, message: String(error) } });
        return;
      }
      this.write({ id: message.id, result });
    } else {
      const taken = this.notificationWaiters.find((w) => w.accept(message.method, message.params));
      if (taken) {
        this.notificationWaiters = this.notificationWaiters.filter((w) => w !== taken);
        taken.resolve(message.params);
      }
    }
  }
}

// What a user's editor would hand the server. The modeline alone picks the
// schema, so `schemas` stays empty; the schema store is off because the test
// runs without internet access and must not depend on it.
const YAML_SETTINGS = {
  validate: true,
  completion: true,
  hover: true,
  schemas: {},
  schemaStore: { enable: false },
  kubernetesCRDStore: { enable: false },
};

function answerServerRequest(method, params, state) {
  switch (method) {
    case 'workspace/configuration':
      state.configured = true;
      return params.items.map((item) => {
        if (item.section === 'yaml') return YAML_SETTINGS;
        if (item.section === 'http') return { proxy: '', proxyStrictSSL: false };
        return {};
      });
    case 'client/registerCapability':
    case 'client/unregisterCapability':
    case 'window/workDoneProgress/create':
      return null;
    case 'workspace/workspaceFolders':
      return [{ uri: pathToFileURL(here).href, name: 'editor' }];
    default:
      return null;
  }
}

function labelsOf(result) {
  const items = Array.isArray(result) ? result : (result?.items ?? []);
  return items.map((item) => item.label);
}

function hoverText(result) {
  if (!result) return [];
  const flatten = (contents) => {
    if (typeof contents === 'string') return contents;
    if (Array.isArray(contents)) return contents.map(flatten).join('\n');
    return contents?.value ?? '';
  };
  return [flatten(result.contents)];
}

// The running server, so the overall timeout can kill it rather than leave
// it orphaned.
let server = null;

async function run(serverPath, initImagefile) {
  const cases = CASES.map((c, i) => ({
    ...c,
    uri: pathToFileURL(join(here, `case-${i}-${c.name}.imagefile.yaml`)).href,
  }));
  if (initImagefile) cases.push(...initCases(initImagefile));

  const child = spawn(serverPath, ['--stdio'], { stdio: ['pipe', 'pipe', 'pipe'] });
  server = child;
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const spawned = new Promise((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (error) => reject(new Error(`cannot start ${serverPath}: ${error.message}`)));
  });
  await spawned;

  const state = { configured: false };
  const connection = new Connection(child, (method, params) =>
    answerServerRequest(method, params, state),
  );

  try {
    await connection.request('initialize', {
      processId: process.pid,
      clientInfo: { name: 'kiln-editor-test' },
      rootUri: pathToFileURL(here).href,
      workspaceFolders: [{ uri: pathToFileURL(here).href, name: 'editor' }],
      capabilities: {
        workspace: { configuration: true, didChangeConfiguration: { dynamicRegistration: true } },
        textDocument: {
          synchronization: { dynamicRegistration: false },
          completion: {
            dynamicRegistration: false,
            completionItem: { snippetSupport: true, documentationFormat: ['markdown', 'plaintext'] },
          },
          hover: { dynamicRegistration: false, contentFormat: ['markdown', 'plaintext'] },
          publishDiagnostics: {},
        },
      },
    });
    connection.notify('initialized', {});
    // The server pulls its settings right after `initialized`; give it a moment.
    const settleUntil = Date.now() + 5_000;
    while (!state.configured && Date.now() < settleUntil) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    if (!state.configured) {
      connection.notify('workspace/didChangeConfiguration', { settings: { yaml: YAML_SETTINGS } });
    }

    const results = {};
    for (const round of rounds(cases.map((c) => ({ ...c, ...placeCursor(c.text) })))) {
      await runRound(connection, round, results);
    }

    await shutDown(connection, child);
    return results;
  } catch (error) {
    child.kill('SIGKILL');
    if (stderr.trim()) error.message += `\nserver stderr:\n${stderr.trim()}`;
    throw error;
  }
}

/**
 * Splits cases into rounds in which no two share a URI (the `init-*` cases
 * all open the one file), keeping their order.
 */
function rounds(cases) {
  const result = [];
  for (const c of cases) {
    const round = result.find((r) => !r.some((other) => other.uri === c.uri));
    if (round) round.push(c);
    else result.push([c]);
  }
  return result;
}

/**
 * Opens a round's documents, waits until the server has validated them, asks
 * for completion or hover at each cursor, and closes them again.
 */
async function runRound(connection, round, results) {
  // The server validates a document a moment after it opens, and the first
  // diagnostics for it mean its schema is loaded. Opening the whole round
  // at once pays that delay once rather than per case.
  const validated = round.map((c) => diagnosticsFor(connection, c.uri));
  for (const c of round) {
    connection.notify('textDocument/didOpen', {
      textDocument: { uri: c.uri, languageId: 'yaml', version: 1, text: c.text },
    });
  }
  const silent = (await Promise.all(validated)).filter((d) => d === null).length;
  if (silent > 0) {
    console.error(
      `complete.mjs: no diagnostics for ${silent} document(s) within ${DIAGNOSTICS_WAIT_MS} ms; asking anyway`,
    );
  }
  for (const c of round) {
    const params = { textDocument: { uri: c.uri }, position: c.position };
    if (c.kind === 'completion') {
      results[c.name] = labelsOf(await connection.request('textDocument/completion', params));
    } else {
      results[c.name] = hoverText(await connection.request('textDocument/hover', params));
    }
  }
  // On close the server clears the document's diagnostics. Wait for that, so
  // it is not taken for the next round's "validated" signal.
  const cleared = round.map((c) => diagnosticsFor(connection, c.uri));
  for (const c of round) {
    connection.notify('textDocument/didClose', { textDocument: { uri: c.uri } });
  }
  await Promise.all(cleared);
}

/** The next diagnostics published for `uri`, or null after a while. */
function diagnosticsFor(connection, uri) {
  return connection.waitForNotification(
    (method, params) => method === 'textDocument/publishDiagnostics' && params.uri === uri,
    DIAGNOSTICS_WAIT_MS,
  );
}

/** Resolves with `promise`'s value, or with `fallback` after `ms`. */
function within(promise, ms, fallback) {
  let timer;
  const late = new Promise((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** LSP's orderly stop (shutdown, then exit); SIGKILL if the server lingers. */
async function shutDown(connection, child) {
  const exited = new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', resolve);
  });
  const answered = await within(
    connection.request('shutdown', null).then(() => true),
    SHUTDOWN_WAIT_MS,
    false,
  );
  if (answered) {
    connection.notify('exit', null);
    child.stdin.end();
  }
  if (!answered || !(await within(exited.then(() => true), SHUTDOWN_WAIT_MS, false))) {
    child.kill('SIGKILL');
    await exited;
  }
}

const [serverPath, initImagefile] = process.argv.slice(2);
if (!serverPath) {
  console.error('usage: node complete.mjs <yaml-language-server> [<imagefile written by kiln init>]');
  process.exit(2);
}
// A garbled message from the server throws inside a stream callback; fail
// the run the same way as any other error.
process.on('uncaughtException', (error) => {
  console.error(`complete.mjs: ${error.stack ?? error}`);
  server?.kill('SIGKILL');
  process.exit(1);
});
const overall = setTimeout(() => {
  console.error(`complete.mjs: gave up after ${OVERALL_TIMEOUT_MS / 1000} s`);
  server?.kill('SIGKILL');
  process.exit(1);
}, OVERALL_TIMEOUT_MS);
try {
  const results = await run(serverPath, initImagefile);
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  clearTimeout(overall);
} catch (error) {
  console.error(`complete.mjs: ${error.message}`);
  process.exit(1);
}
