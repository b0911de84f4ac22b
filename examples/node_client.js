// A Node program that uses the Python notes daemon (notes_daemon.py), as notes_cli.py does.
//
//   npm install jitpc@2.2.7          # where Node finds it: here, or NODE_PATH=<prefix>/node_modules
//   node examples/node_client.js a note from Node
//   python examples/notes_cli.py list   # the same daemon, the same notes
//
// Start order does not matter: whichever client comes first starts the daemon (this one with
// its spinup hook), and both then share it. PYTHON names the interpreter that has jitpc
// (default: python3); NOTES_FILE is the notes file, as for notes_cli.py.
'use strict'
const { spawn } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const jitpc = require('jitpc')

const notesFile = process.env.NOTES_FILE || path.join(os.homedir(), '.notes.json')

function spinup () {
  // Detached, its output in <tmpdir>/notes.log as with jitpc.spawn; Node's connect then retries
  // for about 7 s while the daemon starts.
  const log = fs.openSync(path.join(os.tmpdir(), 'notes.log'), 'a')
  const daemon = path.join(__dirname, 'notes_daemon.py')
  spawn(process.env.PYTHON || 'python3', [daemon, notesFile], {
    detached: true,
    stdio: ['ignore', log, log]
  }).unref()
  fs.closeSync(log)
}

async function main () {
  const notes = jitpc.connect('notes', { spinup })
  const text = process.argv.slice(2).join(' ') || 'hello from Node'
  // Typed methods are plain JSON-RPC on the wire: params in, the result model's JSON out.
  console.log('added', JSON.stringify(await notes.request('add', { text })))
  for (const note of await notes.request('list', {})) console.log(`${note.id}: ${note.text}`)
  // Errors arrive as JavaScript Errors with the JSON-RPC code and message.
  for (const params of [{ id: 'one' }, { id: 999 }]) {
    try {
      await notes.request('remove', params)
    } catch (err) {
      console.log(`remove ${JSON.stringify(params)}: error ${err.code}: ${err.message}`)
    }
  }
  notes.end()
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
