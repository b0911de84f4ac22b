'use strict'
// A Node jitpc 2.x client, for the interop tests.
//
//   node client.js ID < steps.json
//
// Reads a JSON array of steps from stdin, runs them in order against the server ID and prints
// one JSON line per step on stdout, then ends the connection and exits:
//
//   {"op":"request","method":M,"params":P} -> {"ok":RESULT} ({} when RESULT is undefined) or
//                                            {"error":{"message","code","isError","stack"}}
//                                            (code left out when undefined; stack: its typeof)
//   {"op":"notify","method":M,"params":P}  -> {"sent":M}
//   {"op":"wait","method":M}               -> {"got":PARAMS}: the next call of M the server
//                                            made to this client (waits for it)
//
// The client answers the server's calls: add ([a, b] -> a + b), note (a notification: only
// recorded), fail (throws an Error with code 'E_NODE_CLIENT'). Every call is recorded for
// "wait". Find the package with NODE_PATH=<prefix>/node_modules.
const jitpc = require('jitpc')

const id = process.argv[2]
const inbox = new Map() // method -> params received and not yet waited for
const waiting = new Map() // method -> resolve of a pending "wait"

function out (value) {
  process.stdout.write(JSON.stringify(value) + '\n')
}

function record (method, params) {
  const resolve = waiting.get(method)
  if (resolve) {
    waiting.delete(method)
    resolve(params)
    return
  }
  if (!inbox.has(method)) inbox.set(method, [])
  inbox.get(method).push(params)
}

function next (method) {
  const queued = inbox.get(method)
  if (queued && queued.length > 0) return Promise.resolve(queued.shift())
  return new Promise((resolve) => { waiting.set(method, resolve) })
}

async function readStdin () {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString('utf-8'))
}

async function main () {
  const steps = await readStdin()
  const rpc = jitpc.connect(id)
  rpc.on('error', (err) => {
    console.error('client error:', err)
    process.exitCode = 1
  })
  rpc.respond('add', (params) => {
    record('add', params)
    return params[0] + params[1]
  })
  rpc.respond('note', (params) => { record('note', params) })
  rpc.respond('fail', (params) => {
    record('fail', params)
    const err = new Error('client says no')
    err.code = 'E_NODE_CLIENT'
    throw err
  })

  for (const step of steps) {
    if (step.op === 'request') {
      try {
        out({ ok: await rpc.request(step.method, step.params) })
      } catch (err) {
        out({
          error: {
            message: err.message,
            code: err.code,
            isError: err instanceof Error,
            stack: typeof err.stack
          }
        })
      }
    } else if (step.op === 'notify') {
      rpc.notify(step.method, step.params)
      out({ sent: step.method })
    } else if (step.op === 'wait') {
      out({ got: await next(step.method) })
    } else {
      throw new Error('unknown step: ' + JSON.stringify(step))
    }
  }
  rpc.end()
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
  process.exit()
})
