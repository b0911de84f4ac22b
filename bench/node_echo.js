'use strict'
// The Node side of bench/echo.py: a Node jitpc echo server, or a Node jitpc client that runs the
// benchmark workloads it is sent. Not meant to be run by hand; bench/echo.py starts it with
// NODE_PATH pointing at the Node jitpc it installed and TMPDIR at its private directory.
//
//   node node_echo.js server ID   prints {"ready":true}, serves "echo" until stdin ends
//   node node_echo.js client ID   connects, prints {"ready":true}, then for each JSON command
//                                 line on stdin ({"workload", "seconds", "requests"}) runs the
//                                 workload once and prints one JSON result line; exits when
//                                 stdin ends
//
// The workload loop mirrors measure() in bench/echo.py line for line, so that the two languages
// are timed the same way.

const { performance } = require('perf_hooks')
const readline = require('readline')
const jitpc = require('jitpc')

const [role, id] = process.argv.slice(2)

function send (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function makeParams (spec) {
  if (spec.blob_bytes > 0) {
    const blob = 'x'.repeat(spec.blob_bytes)
    return [() => ({ key: 'my-counter', blob }), (r) => r !== null && typeof r === 'object' && r.blob.length === spec.blob_bytes]
  }
  return [(n) => ({ key: 'my-counter', n }), (r, n) => r !== null && typeof r === 'object' && r.n === n]
}

// Runs spec.concurrency workers over one connection until `seconds` have passed (or `requests`
// have been sent); returns the per-request latencies in microseconds and the elapsed seconds
// from the start to the last response.
async function measure (client, spec, seconds, requests) {
  const [make, check] = makeParams(spec)
  const lat = []
  const limit = requests ?? Infinity
  let i = 0
  const start = performance.now()
  const deadline = seconds != null ? start + seconds * 1000 : Infinity
  let last = start
  async function worker () {
    let now = start
    while (i < limit && now < deadline) {
      const n = i++
      const params = make(n)
      const t0 = performance.now()
      const result = await client.request('echo', params)
      now = performance.now()
      lat.push((now - t0) * 1000)
      if (!check(result, n)) throw new Error('wrong echo for request ' + n)
    }
    if (now > last) last = now
  }
  const workers = []
  for (let w = 0; w < spec.concurrency; w++) workers.push(worker())
  await Promise.all(workers)
  return { lat, elapsed: (last - start) / 1000 }
}

function percentile (sorted, q) {
  if (sorted.length === 0) return null
  const k = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[k]
}

async function runClient () {
  const client = jitpc.connect(id)
  await client.open()
  send({ ready: true })
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  for await (const line of rl) {
    if (!line.trim()) continue
    const cmd = JSON.parse(line)
    const cpu = process.cpuUsage()
    const { lat, elapsed } = await measure(client, cmd.workload, cmd.seconds, cmd.requests)
    const { user, system } = process.cpuUsage(cpu)
    lat.sort((a, b) => a - b)
    send({
      count: lat.length,
      elapsed_s: elapsed,
      p50_us: percentile(lat, 0.5),
      p99_us: percentile(lat, 0.99),
      cpu_s: (user + system) / 1e6
    })
  }
  process.exit(0)
}

async function runServer () {
  const server = await jitpc.listen(id, {
    spindown: false,
    onclient (client) {
      client.respond('echo', (params) => params)
    }
  })
  if (server === null) {
    send({ error: 'id ' + id + ' is already served' })
    process.exit(3)
  }
  // The driver holds our stdin open; when it goes away (even killed), so do we.
  process.stdin.on('end', () => process.exit(0))
  process.stdin.resume()
  send({ ready: true })
}

const main = role === 'server' ? runServer : role === 'client' ? runClient : null
if (main === null || !id) {
  process.stderr.write('usage: node node_echo.js server|client ID\n')
  process.exit(2)
}
main().catch((err) => {
  process.stderr.write('node_echo.js ' + role + ': ' + (err && err.stack ? err.stack : err) + '\n')
  process.exit(1)
})
