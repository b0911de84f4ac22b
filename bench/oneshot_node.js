'use strict'
// The Node one-shot of bench/oneshot.py: a Node jitpc client asking the warm (Python) daemon one
// thing and exiting, as a user's `node client.js` would. bench/oneshot.py runs it with NODE_PATH
// at the Node jitpc it installed and TMPDIR at the daemon's private directory.
//
//   node oneshot_node.js ID   requests echo {"a": 1}, prints the result as JSON, ends the client

const jitpc = require('jitpc')

async function main () {
  const client = jitpc.connect(process.argv[2])
  const result = await client.request('echo', { a: 1 })
  console.log(JSON.stringify(result))
  await client.end()
}

main().catch((err) => {
  process.stderr.write('oneshot_node.js: ' + (err && err.stack ? err.stack : err) + '\n')
  process.exit(1)
})
