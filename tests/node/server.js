'use strict'
// A Node jitpc 2.x server, for the interop tests.
//
//   node server.js ID [--go] [--spindown MS]
//
// Prints one line per event on stdout: `listening` or `busy` (another process serves ID), and
// `closed` when the server has closed. With --go it first prints `ready`, waits for a `go` line
// on stdin, prints `racing` and only then calls listen (so a test can race it). The server
// closes when stdin ends (or on spindown, after MS idle milliseconds; default: no spindown);
// the process then exits by itself. Find the package with NODE_PATH=<prefix>/node_modules.
//
// Methods: echo (params back), whoami ('node'), pid, boom (throws an Error with code 'E_BOOM'),
// throw_string (throws a string: the error object on the wire is {}), lone_surrogate (returns
// a string holding a lone surrogate, which JSON.stringify writes as \ud800), undef (returns
// undefined), nul (returns null), record (remembers params, answers nothing),
// recorded (everything recorded so far, in order), ask ({method, params}: requests that from
// the calling client and returns its result), tell ({method, params}: notifies the calling
// client, returns true), hang (never answers).
const fsp = require('fs/promises')
const os = require('os')
const path = require('path')
const readline = require('readline')
const jitpc = require('jitpc')

const args = process.argv.slice(2)
const id = args[0]
const waitForGo = args.includes('--go')
const spindownAt = args.indexOf('--spindown')
const spindownTimeout = spindownAt === -1 ? null : Number(args[spindownAt + 1])

const recorded = []
let server = null
let gone = false
let onGo = null

function out (line) {
  process.stdout.write(line + '\n')
}

function serve (rpc) {
  rpc.respond('echo', (params) => params)
  rpc.respond('whoami', () => 'node')
  rpc.respond('pid', () => process.pid)
  rpc.respond('boom', () => {
    const err = new Error('boom')
    err.code = 'E_BOOM'
    throw err
  })
  rpc.respond('throw_string', () => {
    throw 'not an Error' // eslint-disable-line no-throw-literal
  })
  rpc.respond('lone_surrogate', () => 'x\ud800y')
  rpc.respond('undef', () => undefined)
  rpc.respond('nul', () => null)
  rpc.respond('record', (params) => { recorded.push(params) })
  rpc.respond('recorded', () => recorded)
  rpc.respond('hang', () => new Promise(() => {}))
  rpc.respond('ask', (params) => rpc.request(params.method, params.params))
  rpc.respond('tell', (params) => {
    rpc.notify(params.method, params.params)
    return true
  })
}

const lines = readline.createInterface({ input: process.stdin })
lines.on('line', (line) => {
  if (line.trim() === 'go' && onGo) onGo()
})
lines.on('close', () => {
  gone = true
  if (server) server.close()
})

function stopReading () {
  lines.close()
  process.stdin.destroy()
}

async function main () {
  if (waitForGo) {
    // Warm up what listen() uses (libuv's thread pool starts on first use), for a closer race.
    await (await fsp.open(path.join(os.tmpdir(), id + '.warmup'), 'w')).close()
    out('ready')
    await new Promise((resolve) => { onGo = resolve })
    out('racing')
  }
  server = await jitpc.listen(id, {
    onclient: serve,
    spindown: spindownTimeout === null ? false : undefined,
    spindownTimeout: spindownTimeout === null ? undefined : spindownTimeout
  })
  if (server === null) {
    out('busy')
    stopReading()
    return
  }
  server.on('error', (err) => { console.error('server error:', err) })
  server.on('close', () => {
    out('closed')
    stopReading()
  })
  out('listening')
  if (gone) server.close()
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
  stopReading()
})
